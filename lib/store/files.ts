// File-level work of the store: hash an installed object through one file descriptor, and
// write a file atomically (temp file in the same directory, fsync, chmod 0444, rename, fsync
// the directory), so a reader sees either no file or the complete one.
import { closeSync, constants, fstatSync, openSync, readSync, renameSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { createAtomicFile, fileError, fsyncDir } from '../io/index.js';
import { createHasher, sharedScratch, type Measurement } from '../measure/index.js';
import { OBJECT_MODE, octal, tempName, unlinkIfPresent } from './layout.js';

/** What an installed object's bytes hash to, read through `fd`. */
export interface ObjectCheck {
  readonly fd: number;
  /** Undefined when the path could not be opened as a file (a symlink). */
  readonly stat: Stats | undefined;
  readonly size: number;
  /** `<algo>:<hex>` of the whole file's bytes. */
  readonly digest: string;
  /** Why the file may not be used even if the digest matches, or undefined. */
  readonly problem: string | undefined;
}

/**
 * Open `path` without following a symlink and hash all of it with the measurement's
 * algorithm. The object IS the canonical image, so its bytes must hash to its name. The fd
 * stays open (the caller closes it): what was hashed is what the fd reads, as long as no one
 * with write access (root) changes the file afterwards.
 * Returns undefined when the file does not exist.
 */
export async function checkObjectFile(path: string, m: Measurement, scratch?: Uint8Array): Promise<ObjectCheck | undefined> {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') return { fd: -1, stat: undefined, size: 0, digest: '', problem: 'is a symbolic link' };
    throw fileError(path, 'cannot open store object', err);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) {
      closeSync(fd);
      return { fd: -1, stat, size: 0, digest: '', problem: 'is not a regular file' };
    }
    const hasher = await createHasher(m.algo);
    const buf = scratch ?? sharedScratch();
    let pos = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      hasher.update(n === buf.length ? buf : buf.subarray(0, n));
      pos += n;
    }
    const digest = `${m.algo}:${hasher.digestHex()}`;
    return { fd, stat, size: pos, digest, problem: fileProblem(stat, pos) };
  } catch (err) {
    closeSync(fd);
    throw fileError(path, 'cannot read store object', err);
  }
}

/** An object must be a single read-only regular file, of the size it had when hashed. */
function fileProblem(stat: Stats, bytesRead: number): string | undefined {
  const mode = stat.mode & 0o7777;
  if (mode !== OBJECT_MODE) return `has mode ${octal(mode)}, not ${octal(OBJECT_MODE)}`;
  const euid = process.geteuid?.() ?? 0;
  if (stat.uid !== 0 && stat.uid !== euid) return `is owned by uid ${stat.uid}`;
  if (bytesRead !== stat.size) return `changed size while being read (${stat.size} → ${bytesRead} bytes)`;
  return undefined;
}

export function closeQuietly(fd: number): void {
  if (fd < 0) return;
  try {
    closeSync(fd);
  } catch {
    // Already closed: nothing to release.
  }
}

/**
 * Write `dir/name` atomically. `produce` writes the content through `write`; it may throw to
 * abandon the file (the temp file is removed). The temp file is created O_EXCL with mode 0600
 * (no one else can open it while it is incomplete), made 0444 after fsync, then renamed.
 */
export async function writeAtomically(dir: string, name: string, produce: (write: (chunk: Uint8Array) => void) => Promise<void> | void): Promise<void> {
  const file = createAtomicFile(join(dir, name), { mode: OBJECT_MODE, tempPath: join(dir, tempName()), what: 'store file' });
  try {
    await produce((chunk) => file.write(chunk));
    file.commit();
  } catch (err) {
    file.abort();
    throw err;
  }
}

/** Remove `dir/name` by renaming it to a temp name first (one atomic step), then unlinking it. */
export function removeAtomically(dir: string, name: string): boolean {
  const temp = join(dir, tempName());
  try {
    renameSync(join(dir, name), temp);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw fileError(join(dir, name), 'cannot remove', err);
  }
  unlinkIfPresent(temp);
  fsyncDir(dir);
  return true;
}
