// Write a file so that a reader (or a crash) sees the old file or the complete new one, never
// a part: a temp file beside the target (O_EXCL, 0600 while incomplete), fsync, chmod, rename,
// fsync of the directory. Shared by the store, `measure --canonical` and the policy writer.
import { closeSync, constants, fchmodSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileError } from './file-reader.js';

export interface AtomicFile {
  readonly tempPath: string;
  /** Append bytes to the temp file. */
  write(chunk: Uint8Array): void;
  /** Make the content durable and move it to the target. The temp file is removed on failure. */
  commit(): void;
  /** Give up: close and remove the temp file (safe to call more than once, or after commit). */
  abort(): void;
}

export interface AtomicFileOptions {
  /** Permission bits the target gets once complete. */
  mode: number;
  /** The temp file's path; it must be in the target's directory (rename is atomic only there). */
  tempPath: string;
  /** What is written, for error messages ("store file", "canonical bytes"…). */
  what: string;
}

export function createAtomicFile(target: string, options: AtomicFileOptions): AtomicFile {
  const { mode, tempPath, what } = options;
  let fd: number;
  try {
    fd = openSync(tempPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw fileError(tempPath, `cannot create the temp file for ${what}`, err);
  }
  let open = true;
  let done = false;
  const close = (): void => {
    if (open) closeSync(fd);
    open = false;
  };
  const removeTemp = (): void => {
    try {
      unlinkSync(tempPath);
    } catch {
      /* renamed already, or never written */
    }
  };
  return {
    tempPath,
    write(chunk) {
      try {
        for (let at = 0; at < chunk.length; ) at += writeSync(fd, chunk, at, chunk.length - at);
      } catch (err) {
        throw fileError(tempPath, `cannot write ${what} to`, err);
      }
    },
    commit() {
      try {
        fchmodSync(fd, mode);
        fsyncSync(fd);
        close();
        renameSync(tempPath, target);
        done = true;
        fsyncDir(dirname(target));
      } catch (err) {
        close();
        if (!done) removeTemp();
        throw fileError(target, `cannot write ${what} to`, err);
      }
    },
    abort() {
      close();
      if (!done) removeTemp();
    },
  };
}

/** Make a rename or unlink in `dir` durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
