// Apply a VCDIFF delta to a base held in memory. The structure is checked in full first
// (vcdiff-check.ts), so the decoder only ever sees a delta it decodes exactly; its own
// errors, should any remain, become PatchErrors too. The result stays in memory: the caller
// measures it before anything is written.
import { decode } from '@ably/vcdiff-decoder';
import { PatchError } from './errors.js';
import { inspectVcdiff } from './vcdiff-check.js';

/** Largest patched file accepted unless the caller sets a lower bound: 1 GiB. */
export const MAX_TARGET_BYTES = 1024 * 1024 * 1024;

export interface ApplyOptions {
  /** Refuse a delta whose output would be larger (default and ceiling: MAX_TARGET_BYTES). */
  readonly maxTargetBytes?: number;
}

export function applyVcdiff(base: Uint8Array, delta: Uint8Array, options: ApplyOptions = {}): Uint8Array {
  const max = Math.min(options.maxTargetBytes ?? MAX_TARGET_BYTES, MAX_TARGET_BYTES);
  const summary = inspectVcdiff(delta, base.length, max);
  // A delta with no window describes an empty file (the decoder would read a phantom window).
  if (summary.windows === 0) return new Uint8Array(0);
  let out: Uint8Array;
  try {
    out = decode(delta, base);
  } catch (err) {
    throw new PatchError('EMALFORMED', `the decoder refused the delta: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (out.length !== summary.targetBytes) {
    throw new PatchError('EMALFORMED', `the decoder produced ${out.length} bytes, but the delta's windows add up to ${summary.targetBytes}`);
  }
  return out;
}
