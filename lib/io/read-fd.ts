// Read a small file that is already open and checked (fstat) into memory.
import { readSync } from 'node:fs';

/**
 * Read up to `length` bytes from the start of `fd`. Returns the bytes actually read: fewer
 * than `length` only if the file shrank after it was checked, which callers treat as an error.
 */
export function readOpenFile(fd: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, bytes, done, length - done, done);
    if (n === 0) break;
    done += n;
  }
  return done === length ? bytes : bytes.subarray(0, done);
}
