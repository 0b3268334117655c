// Executed bytes == measured bytes.
//
// Node has no memfd API, so the helper cannot seal a copy. Instead the installed file is
// measured at exec time and the canonical chunks the hash consumes are kept in memory as they
// are hashed; when the measurement matches, exactly those in-memory bytes are written into a
// pipe that bubblewrap copies (`--file FD DEST`) into the sandbox's private tmpfs, from which
// the program is executed. Nothing re-reads the store file after it was hashed, so a file
// rewritten during or after the check (TOCTOU, santa#15, CVE-2019-5736) is either refused or
// has no effect, and bytes hidden in excluded regions (appended data, debug sections) never
// reach the sandbox even if someone put them into the store file. A store file that is not
// already its own canonical image (size differs from the hashed size) is refused as tampered:
// the store only ever writes canonical images.
//
// Cost: one copy of the binary in the daemon's memory for the run's start-up, bounded by
// `maxBytes`, and one in the sandbox's tmpfs while it runs.
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { fileError, openFileReader } from '../io/index.js';
import { bufferReader, chunksReader, measure, tryParseMeasurement, type Algorithm, type BinaryFormat, type MeasureResult, type Profile } from '../measure/index.js';
import { ExecError } from './errors.js';

export interface VerifiedBinary {
  readonly path: string;
  readonly measurement: string;
  readonly format: BinaryFormat;
  /** The canonical image, exactly the bytes that were hashed. */
  readonly chunks: readonly Uint8Array[];
  readonly size: number;
  readonly details: MeasureResult['details'];
}

/** Default ceiling on the size of a binary copied into a sandbox: 512 MiB. */
export const DEFAULT_MAX_BINARY_BYTES = 512 * 1024 * 1024;

export async function loadVerified(path: string, expected: string, options: { profile?: Profile; maxBytes?: number } = {}): Promise<VerifiedBinary> {
  const parsed = tryParseMeasurement(expected);
  if (parsed === undefined) throw new ExecError('bad-request', `'${expected}' is not a measurement (<algo>:<hex>)`, { path, measurement: expected });
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BINARY_BYTES;
  refuseNonRegular(path);
  const reader = openFileReader(path);
  try {
    if (reader.size > maxBytes) {
      throw new ExecError('too-large', `${path} is ${reader.size} bytes; the exec helper copies at most ${maxBytes} bytes into a sandbox`, { path, measurement: expected });
    }
    // A store object is its own canonical image: its size is what the hash will consume.
    const hashed = new HashedBytes(reader.size);
    const result = await measure(reader, { algo: parsed.algo, profile: options.profile ?? 'v1', onChunk: hashed.keep });
    const { chunks, size } = hashed;
    if (result.measurement !== expected) {
      throw new ExecError('tampered', `${path} measures ${result.measurement}, not ${expected}: the installed file changed; refusing to run it`, {
        path,
        measurement: expected,
        actual: result.measurement,
      });
    }
    if (size !== reader.size || result.hashedBytes !== size) {
      throw new ExecError('tampered', `${path} is ${reader.size} bytes but its canonical image is ${size}: the installed file is not the canonical image it was installed as; refusing to run it`, {
        path,
        measurement: expected,
        actual: result.measurement,
      });
    }
    return { path, measurement: expected, format: result.format, chunks, size, details: result.details };
  } finally {
    reader.close();
  }
}

/**
 * Measure bytes the caller holds in its own memory (an upload the daemon received) and keep
 * the canonical chunks that were hashed, as loadVerified() does for a file: run() can execute
 * exactly these without reading the store file back and hashing it again. `path` names where
 * the same image is installed (for messages and the audit record); nothing reads it. run()
 * applies its size ceiling (maxBinaryBytes) to these bytes as it does to a file.
 */
export async function verifyBytes(bytes: Uint8Array | readonly Uint8Array[], path: string, options: { algo?: Algorithm; profile?: Profile } = {}): Promise<VerifiedBinary> {
  const reader = bytes instanceof Uint8Array ? bufferReader(bytes) : chunksReader(bytes);
  // The canonical image is never larger than the input: one buffer of the input's size.
  const hashed = new HashedBytes(reader.size);
  const result = await measure(reader, { algo: options.algo ?? 'sha256', profile: options.profile ?? 'v1', onChunk: hashed.keep });
  return { path, measurement: result.measurement, format: result.format, chunks: hashed.chunks, size: hashed.size, details: result.details };
}

/**
 * A copy of exactly the bytes the hash consumed, in one buffer. The chunks the measurement
 * core hands over are views of its reused scratch buffer; a copy per chunk cost a hostile
 * module of 100 000 tiny sections 100 000s of small buffers (~150x the upload in memory).
 */
class HashedBytes {
  #buffer: Uint8Array;
  #size = 0;

  constructor(expectedSize: number) {
    this.#buffer = new Uint8Array(expectedSize);
  }

  readonly keep = (chunk: Uint8Array): void => {
    if (this.#size + chunk.length > this.#buffer.length) {
      // More than expected (not seen: a canonical image never outgrows its input): grow.
      const grown = new Uint8Array(Math.max(this.#buffer.length * 2, this.#size + chunk.length));
      grown.set(this.#buffer.subarray(0, this.#size));
      this.#buffer = grown;
    }
    this.#buffer.set(chunk, this.#size);
    this.#size += chunk.length;
  };

  get size(): number {
    return this.#size;
  }

  /** The bytes kept; a buffer much larger than them (dropped debug data) is given up for a fitting copy. */
  get chunks(): readonly Uint8Array[] {
    const waste = this.#buffer.length - this.#size;
    if (waste > Math.max(64 * 1024, this.#size / 8)) this.#buffer = this.#buffer.slice(0, this.#size);
    return this.#size === 0 ? [] : [this.#buffer.subarray(0, this.#size)];
  }
}

/** Refuse symlinks at the last component: the caller names the store object itself. */
function refuseNonRegular(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new ExecError('tampered', `${path} is a symbolic link, not an installed file`, { path });
    throw fileError(path, 'cannot open', err);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new ExecError('tampered', `${path} is not a regular file`, { path });
  } finally {
    closeSync(fd);
  }
}
