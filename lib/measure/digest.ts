// The one file of the measurement core that touches Node: SHA-256 comes from node:crypto
// (SHA-NI, ~10x hash-wasm here), BLAKE3 from hash-wasm, loaded only when asked for.
import { createHash } from 'node:crypto';
import { planCanonical } from './canonical.js';
import { formatMeasurement, type Algorithm } from './measurement.js';
import { streamCanonical } from './stream.js';
import type { BinaryFormat, ByteReader, CanonicalPlan, ExplainedRange, Profile } from './types.js';

export interface Hasher {
  update(chunk: Uint8Array): void;
  digestHex(): string;
}

export async function createHasher(algo: Algorithm): Promise<Hasher> {
  if (algo === 'sha256') {
    const hash = createHash('sha256');
    return { update: (chunk) => void hash.update(chunk), digestHex: () => hash.digest('hex') };
  }
  const { createBLAKE3 } = await import('hash-wasm');
  const hash = await createBLAKE3();
  hash.init();
  return { update: (chunk) => void hash.update(chunk), digestHex: () => hash.digest('hex') };
}

/** Bytes per read. 1 MiB reached ~95% of the read+hash ceiling here (research/platform.md). */
export const SCRATCH_BYTES = 1 << 20;

/**
 * A reusable read buffer that starts on a page boundary. Node's own large Buffers start 16
 * bytes past one, which makes page-cache reads 4-6x slower; WebAssembly memory is page-aligned.
 */
export function alignedScratch(bytes = SCRATCH_BYTES): Uint8Array {
  const pages = Math.ceil(bytes / 65536);
  return new Uint8Array(new WasmMemory({ initial: pages, maximum: pages }).buffer, 0, bytes);
}

let shared: Uint8Array | undefined;

/**
 * The module's one scratch buffer, for callers that bring none. Each WebAssembly.Memory
 * reserves ~10 GiB of address space (guard regions) until a collection finds it dead: one per
 * measure() took a daemon's VmSize to hundreds of GB and added a mapping per call, which each
 * fork(2) of bwrap copies. Sharing it is safe: it is only used synchronously (no await between
 * a read into it and the onChunk calls that see it), and a chunk was never valid after its
 * onChunk call anyway, since the next read overwrites the scratch.
 */
export function sharedScratch(): Uint8Array {
  return (shared ??= alignedScratch());
}

// TypeScript's ES lib has no WebAssembly namespace (it lives in the DOM lib); Node has it.
const WasmMemory = (globalThis as unknown as {
  WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number }) => { buffer: ArrayBuffer } };
}).WebAssembly.Memory;

export interface MeasureOptions {
  algo?: Algorithm;
  profile?: Profile;
  /** Reused read buffer; the module's shared one when absent. */
  scratch?: Uint8Array;
  /** Receives every canonical chunk after it is hashed (e.g. to write the canonical file); valid only during the call: copy what is kept. */
  onChunk?: (chunk: Uint8Array) => void;
}

export interface MeasureResult {
  readonly measurement: string;
  readonly algo: Algorithm;
  readonly profile: Profile;
  readonly format: BinaryFormat;
  /** Size of the input. */
  readonly size: number;
  /** Bytes fed to the hash: the canonical image's size. */
  readonly hashedBytes: number;
  readonly ranges: readonly ExplainedRange[];
  readonly details: Readonly<Record<string, string | number>>;
}

/** Canonicalize and hash one input. The canonical bytes are exactly the hashed bytes. */
export async function measure(reader: ByteReader, options: MeasureOptions = {}): Promise<MeasureResult> {
  const { algo = 'sha256', profile = 'v1', scratch = sharedScratch(), onChunk } = options;
  const plan = planCanonical(reader, profile);
  const hasher = await createHasher(algo);
  return hashPlan(plan, reader, hasher, algo, scratch, onChunk);
}

export function hashPlan(
  plan: CanonicalPlan,
  reader: ByteReader,
  hasher: Hasher,
  algo: Algorithm,
  scratch: Uint8Array,
  onChunk?: (chunk: Uint8Array) => void,
): MeasureResult {
  const hashedBytes = streamCanonical(plan, reader, scratch, (chunk) => {
    hasher.update(chunk);
    onChunk?.(chunk);
  });
  return {
    measurement: formatMeasurement(algo, hasher.digestHex()),
    algo,
    profile: plan.profile,
    format: plan.format,
    size: plan.fileSize,
    hashedBytes,
    ranges: plan.ranges,
    details: plan.details,
  };
}
