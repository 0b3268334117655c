// Produce the canonical byte stream of a plan, chunk by chunk, reading only the kept ranges.
// Used for hashing and for writing the canonical file in the same single pass.
import { MalformedBinaryError, hex } from '../errors.js';
import type { ByteReader, CanonicalPlan } from './types.js';

/**
 * Call `sink` with consecutive chunks of the canonical bytes. `scratch` is reused for every
 * chunk read from the input (a large, page-aligned buffer makes reads fast); a chunk is only
 * valid during its call. Returns the number of bytes produced.
 */
export function streamCanonical(
  plan: CanonicalPlan,
  reader: ByteReader,
  scratch: Uint8Array,
  sink: (chunk: Uint8Array) => void,
): number {
  let produced = 0;
  let zeros: Uint8Array | undefined;
  for (const piece of plan.pieces) {
    if (piece.kind === 'bytes') {
      sink(piece.data);
      produced += piece.data.length;
    } else if (piece.kind === 'zero') {
      zeros ??= new Uint8Array(Math.min(scratch.length, 1 << 20));
      for (let left = piece.length; left > 0; ) {
        const n = Math.min(left, zeros.length);
        sink(zeros.subarray(0, n));
        left -= n;
        produced += n;
      }
    } else {
      const end = piece.offset + piece.length;
      for (let pos = piece.offset; pos < end; ) {
        const want = Math.min(end - pos, scratch.length);
        const n = reader.read(scratch.subarray(0, want), pos);
        if (n <= 0) {
          throw new MalformedBinaryError(plan.format, `input ended early at ${hex(pos)} while reading kept bytes (file changed while being measured?)`, pos);
        }
        sink(scratch.subarray(0, n));
        pos += n;
        produced += n;
      }
    }
  }
  return produced;
}
