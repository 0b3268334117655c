// A ByteReader over a regular file, reading with positional reads (no whole-file loads).
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { FileAccessError } from '../errors.js';
import type { ByteReader } from '../measure/index.js';

export interface FileReader extends ByteReader {
  readonly path: string;
  /** Permission bits of the file when it was opened. */
  readonly mode: number;
  close(): void;
}

/** Open `path` for measuring. Refuses anything but a regular file (devices, FIFOs, directories). */
export function openFileReader(path: string): FileReader {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not hang waiting for a writer; we refuse it right after.
    // O_NOFOLLOW is not used: measuring through a symlink is what a user asking for a path expects.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw fileError(path, 'cannot open', err);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw new FileAccessError(path, `cannot measure ${path}: not a regular file`);
    }
    const size = st.size;
    return {
      path,
      size,
      mode: st.mode & 0o7777,
      read(dst, position) {
        if (position >= size) return 0;
        const want = Math.min(dst.length, size - position);
        let done = 0;
        try {
          while (done < want) {
            const n = readSync(fd, dst, done, want - done, position + done);
            if (n === 0) break;
            done += n;
          }
        } catch (err) {
          throw fileError(path, 'cannot read', err);
        }
        return done;
      },
      close() {
        closeSync(fd);
      },
    };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** Turn a Node system error into a FileAccessError that names the path and the errno code. */
export function fileError(path: string, action: string, err: unknown): FileAccessError {
  if (err instanceof FileAccessError) return err;
  const e = err as NodeJS.ErrnoException;
  const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EISDIR' ? 'is a directory' : (e.message ?? String(err));
  return new FileAccessError(path, `${action} ${path}: ${why}${e.code ? ` (${e.code})` : ''}`, { cause: err, ...(e.code ? { syscallCode: e.code } : {}) });
}
