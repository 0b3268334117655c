// Bounded reads for the canonicalizers: every header or table is read through here, so an
// offset or size taken from the input can never make us read outside the file or allocate
// an absurd buffer. Errors name the structure, the offset and the file size.
import { MalformedBinaryError, hex, type BinaryFormat } from '../errors.js';
import type { ByteReader } from './types.js';

/** The largest single header/table read a canonicalizer may ask for (segment data is streamed). */
export const MAX_STRUCTURE_READ = 16 * 1024 * 1024;

/** A ByteReader over bytes already in memory (uploads, tests). */
export function bufferReader(bytes: Uint8Array): ByteReader {
  return {
    size: bytes.length,
    read(dst, position) {
      if (position >= bytes.length) return 0;
      const n = Math.min(dst.length, bytes.length - position);
      dst.set(bytes.subarray(position, position + n));
      return n;
    },
  };
}

/**
 * A ByteReader over `chunks` read as one byte sequence: an upload as its frames arrived,
 * measured and installed without first joining it into one more copy.
 */
export function chunksReader(chunks: readonly Uint8Array[]): ByteReader {
  const starts: number[] = [];
  let size = 0;
  for (const c of chunks) {
    starts.push(size);
    size += c.length;
  }
  // Reads are nearly always sequential: start the search at the chunk the last read ended in.
  let hint = 0;
  const chunkAt = (position: number): number => {
    if (hint < chunks.length && starts[hint]! <= position && position < starts[hint]! + chunks[hint]!.length) return hint;
    let lo = 0;
    let hi = chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= position) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  return {
    size,
    read(dst, position) {
      if (position >= size || dst.length === 0) return 0;
      let i = chunkAt(position);
      let done = 0;
      while (done < dst.length && i < chunks.length) {
        const chunk = chunks[i]!;
        const from = position + done - starts[i]!;
        const n = Math.min(dst.length - done, chunk.length - from);
        if (n > 0) {
          dst.set(chunk.subarray(from, from + n), done);
          done += n;
        }
        if (from + n >= chunk.length) i++;
      }
      hint = Math.min(i, chunks.length - 1);
      return done;
    },
  };
}

/** Throw unless [offset, offset+length) lies within a file of `size` bytes. */
export function checkRange(
  format: BinaryFormat,
  what: string,
  offset: number,
  length: number,
  size: number,
): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new MalformedBinaryError(format, `${what} has an out-of-range offset or size (offset ${offset}, size ${length})`);
  }
  if (offset > size || length > size - offset) {
    throw new MalformedBinaryError(
      format,
      `${what} extends past end of file (offset ${hex(offset)} + size ${hex(length)} > file size ${hex(size)})`,
      offset,
    );
  }
}

/** Read exactly `length` bytes at `offset`, or throw a MalformedBinaryError naming `what`. */
export function readExact(
  reader: ByteReader,
  format: BinaryFormat,
  what: string,
  offset: number,
  length: number,
): Uint8Array {
  checkRange(format, what, offset, length, reader.size);
  if (length > MAX_STRUCTURE_READ) {
    throw new MalformedBinaryError(
      format,
      `${what} is ${length} bytes, larger than the ${MAX_STRUCTURE_READ}-byte limit for one header or table`,
      offset,
    );
  }
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = reader.read(out.subarray(done), offset + done);
    if (n <= 0) {
      throw new MalformedBinaryError(format, `${what}: input ended early at ${hex(offset + done)} (it changed while being read?)`, offset + done);
    }
    done += n;
  }
  return out;
}

/** Convert a 64-bit field to a Number, refusing values a file offset or size can never have. */
export function safeNumber(format: BinaryFormat, what: string, value: bigint, offset?: number): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new MalformedBinaryError(format, `${what} is ${hex64(value)}, too large to be a file offset or size`, offset);
  }
  return Number(value);
}

function hex64(value: bigint): string {
  return `0x${value.toString(16)}`;
}
