// Types shared by the canonicalizers. Everything here is plain data: the pure core
// describes WHAT the canonical bytes are; digest.ts and the adapters do the reading.
import type { BinaryFormat } from '../errors.js';

export type { BinaryFormat };

/** Measurement profiles. `v1` is what the allowlist uses; `authenticode` cross-checks PE signatures. */
export type Profile = 'v1' | 'authenticode';
export const PROFILES: readonly Profile[] = ['v1', 'authenticode'];

/**
 * Random access to the bytes being measured. The pure core never opens files: the caller
 * hands in a reader over a file, a buffer, or an upload.
 */
export interface ByteReader {
  /** Total number of bytes. */
  readonly size: number;
  /**
   * Copy bytes starting at `position` into `dst` (as many as fit); return how many were
   * copied. Fewer than `dst.length` only when the end of the input is reached.
   */
  read(dst: Uint8Array, position: number): number;
}

/**
 * What happens to one byte range of the input in the canonical image:
 * kept (copied as is), zeroed (present, but as zero bytes), dropped (absent),
 * rewritten (replaced by bytes the canonicalizer computed, e.g. a re-encoded size).
 */
export type Disposition = 'kept' | 'zeroed' | 'dropped' | 'rewritten';

/** One range of the input file and what the canonicalizer did with it, for `--explain`. */
export interface ExplainedRange {
  readonly start: number;
  readonly end: number;
  readonly disposition: Disposition;
  readonly reason: string;
}

/** One piece of the canonical byte stream, in output order. */
export type Piece =
  | { readonly kind: 'file'; readonly offset: number; readonly length: number }
  | { readonly kind: 'zero'; readonly length: number }
  | { readonly kind: 'bytes'; readonly data: Uint8Array };

/**
 * The canonical image of one binary: the pieces that make up its bytes, and an explanation
 * whose ranges tile the input exactly once, in order, from 0 to fileSize.
 */
export interface CanonicalPlan {
  readonly format: BinaryFormat;
  readonly profile: Profile;
  readonly fileSize: number;
  readonly canonicalSize: number;
  readonly pieces: readonly Piece[];
  readonly ranges: readonly ExplainedRange[];
  /** Format facts worth printing (ELF class, machine, PE magic, WASM section count…). */
  readonly details: Readonly<Record<string, string | number>>;
}
