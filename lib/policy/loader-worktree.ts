// Reads the *.policy files of a directory on disk (a git work tree or a plain folder).
// Hostile trees are expected: symbolic links may point anywhere, files may be huge or not
// files at all, directories may nest without end. Every one of those is bounded or refused.
import { closeSync, constants, fstatSync, openSync, readdirSync, readSync, realpathSync, statSync } from 'node:fs';
import { relative, sep } from 'node:path';
import { FileAccessError } from '../errors.js';
import { fileError } from '../io/index.js';
import { compareStrings, PolicySyntaxError } from './errors.js';
import { decodePolicyFile, hasHiddenComponent, LOADER_LIMITS, pathProblem, TotalBudget, tooLarge, type PolicyFileSet } from './loader-files.js';
import type { PolicySource } from './types.js';

/** The real path of `dir`, which must be a directory. */
export function realDirectory(dir: string): string {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch (err) {
    throw fileError(dir, 'cannot read the policy repository', err);
  }
  if (!statSync(real).isDirectory()) throw new FileAccessError(dir, `cannot read the policy repository ${dir}: not a directory`);
  return real;
}

/**
 * Every `*.policy` file below `dir`, with paths relative to `dir` joined by '/'. Hidden
 * entries (`.git`, `.github`, dot-files) are skipped. A `*.policy` symbolic link is followed
 * only to a regular file inside the tree and outside hidden directories; other symbolic links
 * (to directories included) are not followed, as git does not follow them either.
 */
export function scanWorkTree(dir: string): PolicyFileSet {
  const root = realDirectory(dir);
  const files: PolicySource[] = [];
  const errors: PolicySyntaxError[] = [];
  const budget = new TotalBudget();
  let entries = 0;
  const stack: { abs: string; rel: string; depth: number }[] = [{ abs: root, rel: '', depth: 0 }];
  while (stack.length > 0) {
    const { abs, rel, depth } = stack.pop()!;
    let list;
    try {
      list = readdirSync(abs, { withFileTypes: true });
    } catch (err) {
      errors.push(new PolicySyntaxError(rel === '' ? '.' : rel, 0, `cannot list this directory: ${fileError(abs, 'cannot list', err).message}`));
      continue;
    }
    entries += list.length;
    if (entries > LOADER_LIMITS.maxEntries) throw new FileAccessError(dir, `the policy repository ${dir} has more than ${LOADER_LIMITS.maxEntries} files and directories; refusing to read it`);
    for (const entry of list) {
      const name = entry.name;
      if (name.startsWith('.')) continue;
      const path = rel === '' ? name : `${rel}/${name}`;
      // Concatenated, not path.join: `abs` is a real path (no '.', '..' or doubled '/') and
      // `name` one entry, so there is nothing to normalize, and join cost ~1 µs a file.
      const absPath = abs === '/' ? `/${name}` : `${abs}/${name}`;
      if (entry.isDirectory()) {
        if (depth + 1 > LOADER_LIMITS.maxDepth) errors.push(new PolicySyntaxError(path, 0, `directory is nested more than ${LOADER_LIMITS.maxDepth} levels deep`));
        else stack.push({ abs: absPath, rel: path, depth: depth + 1 });
        continue;
      }
      if (!name.endsWith('.policy')) continue;
      const badName = pathProblem(path);
      if (badName !== undefined) {
        errors.push(badName);
        continue;
      }
      let target = absPath;
      if (entry.isSymbolicLink()) {
        const resolved = resolveLink(root, absPath, path);
        if ('error' in resolved) {
          errors.push(resolved.error);
          continue;
        }
        target = resolved.abs;
      } else if (!entry.isFile()) {
        errors.push(new PolicySyntaxError(path, 0, 'is not a regular file'));
        continue;
      }
      const read = readPolicyBytes(target, path, entry.isSymbolicLink());
      if ('error' in read) {
        errors.push(read.error);
        continue;
      }
      const over = budget.add(read.bytes.length);
      if (over !== undefined) throw new FileAccessError(dir, `the policy repository ${dir} has ${over}; refusing to read it`);
      const decoded = decodePolicyFile(path, read.bytes);
      if ('error' in decoded) errors.push(decoded.error);
      else files.push({ path, text: decoded.text });
    }
  }
  files.sort((a, b) => compareStrings(a.path, b.path));
  return { files, errors };
}

/** Where a `*.policy` symbolic link leads, if it stays a regular file inside the tree. */
function resolveLink(root: string, absPath: string, path: string): { abs: string } | { error: PolicySyntaxError } {
  let real: string;
  try {
    real = realpathSync(absPath);
  } catch (err) {
    return { error: new PolicySyntaxError(path, 0, `is a symbolic link that does not resolve (${(err as NodeJS.ErrnoException).code ?? 'error'})`) };
  }
  if (!real.startsWith(root + sep)) return { error: new PolicySyntaxError(path, 0, 'is a symbolic link that points outside the policy repository') };
  const inside = relative(root, real).split(sep).join('/');
  if (hasHiddenComponent(inside)) return { error: new PolicySyntaxError(path, 0, `is a symbolic link into a hidden directory or file (${inside})`) };
  return { abs: real };
}

/**
 * Where files are read: one buffer for every small file (a new array per file was an off-heap
 * allocation each, 10k of them per load). Larger files get their own.
 */
const SCRATCH = new Uint8Array(256 * 1024);

/** Up to `size` bytes from the start of `fd`, in SCRATCH when they fit: valid until the next call. */
function readInto(fd: number, size: number): Uint8Array {
  const buffer = size <= SCRATCH.length ? SCRATCH : new Uint8Array(size);
  let done = 0;
  while (done < size) {
    const n = readSync(fd, buffer, done, size - done, done);
    if (n === 0) break;
    done += n;
  }
  return buffer.subarray(0, done);
}

/**
 * The whole of a small file: one positioned read that returns more than nothing and less
 * than SCRATCH holds, then one that returns nothing (the end of the file: a short first read
 * alone proves nothing on every file system). Undefined, or an error thrown, for anything
 * else, which is then read the careful way (fstat first, as before): an empty or large file,
 * one still growing, and whatever was swapped in after the listing said "regular file" (a
 * FIFO refuses a positioned read, a device gives nothing, a full buffer or an error). No
 * fstat for the usual file: its Stats object and four Dates were a fifth of the cost of
 * reading a 10k-file repository.
 */
function readSmallOrUndefined(fd: number): Uint8Array | undefined {
  try {
    return readSmall(fd);
  } catch {
    // Whatever it is (a FIFO or a directory swapped in: ESPIPE, EISDIR), the careful way says it as before.
    return undefined;
  }
}

function readSmall(fd: number): Uint8Array | undefined {
  const n = readSync(fd, SCRATCH, 0, SCRATCH.length, 0);
  if (n === 0 || n === SCRATCH.length) return undefined;
  if (readSync(fd, SCRATCH, n, SCRATCH.length - n, n) !== 0) return undefined;
  return SCRATCH.subarray(0, n);
}

/**
 * The bytes of one file, refusing anything but a regular file of bounded size. The bytes may
 * be SCRATCH's: use them before reading the next file.
 */
function readPolicyBytes(abs: string, path: string, viaLink: boolean): { bytes: Uint8Array } | { error: PolicySyntaxError } {
  let fd: number;
  try {
    // O_NOFOLLOW: a file swapped for a link after the directory was listed is not followed.
    // O_NONBLOCK: a FIFO swapped in cannot block the open.
    fd = openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { error: new PolicySyntaxError(path, 0, code === 'ELOOP' && !viaLink ? 'became a symbolic link while being read' : `cannot be read (${code ?? String(err)})`) };
  }
  try {
    const small = readSmallOrUndefined(fd);
    if (small !== undefined) return { bytes: small };
    const st = fstatSync(fd);
    if (!st.isFile()) return { error: new PolicySyntaxError(path, 0, 'is not a regular file') };
    if (st.size > LOADER_LIMITS.maxFileBytes) return { error: tooLarge(path, st.size) };
    const bytes = readInto(fd, st.size);
    // A file that shrank while read is read again by the next load, not half-used now.
    if (bytes.length !== st.size) return { error: new PolicySyntaxError(path, 0, 'changed size while being read') };
    return { bytes };
  } catch (err) {
    return { error: new PolicySyntaxError(path, 0, `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`) };
  } finally {
    closeSync(fd);
  }
}
