// Is a directory safe to keep trusted files in (the store, the daemon's run directory)? Whoever
// can write a directory, or one above it, can rename what is in it away and put something of
// their own in its place: a store object, a VM's socket, the control socket. These checks say
// why not, as text naming the path; the caller wraps that in its own error.
import { lstatSync, realpathSync, statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { fileError } from './file-reader.js';

const STICKY = 0o1000;

export function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}

/** lstat, or undefined when nothing is there (any other failure throws, naming the path). */
export function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fileError(path, 'cannot stat', err);
  }
}

/**
 * Why `dir` (lstat'ed as `st`) cannot hold trusted files, or undefined: a symlink, not a
 * directory, writable by group or others, or owned by someone other than root or us.
 * `what` names it in the message ("store directory", "run directory").
 */
export function untrustedDirProblem(dir: string, st: Stats, what: string): string | undefined {
  if (st.isSymbolicLink()) return `${what} ${dir} is a symbolic link; refusing it (give the real path)`;
  if (!st.isDirectory()) return `${what} ${dir} is not a directory`;
  const mode = st.mode & 0o7777;
  if ((mode & 0o022) !== 0) return `${what} ${dir} is group- or world-writable (mode ${octal(mode)}); it must be writable by its owner only (chmod go-w ${dir})`;
  return ownerProblem(dir, st, what);
}

/**
 * Why a directory above `abs` lets others replace it, or undefined. Allowed: not writable by
 * group/others, or sticky (like /tmp: entries can only be renamed by their owner), and owned
 * by root or the current user. `what` names `abs` ("the store", "the run directory").
 * `groupWritable`: a directory writable by its group passes when root owns it (the audit log:
 * Ubuntu's /var/log is root:syslog 0775, a group the distribution trusts); one of another owner,
 * or writable by others, still does not.
 */
export function untrustedAncestorProblem(abs: string, what: string, options: { readonly groupWritable?: boolean } = {}): string | undefined {
  let dir: string;
  try {
    dir = realpathSync(dirname(abs));
  } catch (err) {
    throw fileError(dirname(abs), `cannot resolve the directory above ${what}`, err);
  }
  for (;;) {
    let st: Stats;
    try {
      st = statSync(dir);
    } catch (err) {
      throw fileError(dir, `cannot check the directory above ${what}`, err);
    }
    const mode = st.mode & 0o7777;
    const exempt = options.groupWritable === true && st.uid === 0 ? 0o020 : 0;
    if ((mode & 0o022 & ~exempt) !== 0 && (mode & STICKY) === 0) {
      return `directory ${dir} above ${what} ${abs} is ${exempt !== 0 ? 'world' : 'group- or world'}-writable without the sticky bit (mode ${octal(mode)}): others could replace ${what}`;
    }
    const owner = ownerProblem(dir, st, `directory above ${what} ${abs},`);
    if (owner !== undefined) return owner;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * untrustedAncestorProblem for a directory about to be made with mkdir -p: neither it nor the
 * directories above it need exist yet, so the check starts at the nearest one that does (what
 * mkdir builds on). Called before the mkdir: under a directory others may write, what is made
 * could be swapped for a symlink before it is checked.
 */
export function untrustedAncestorProblemBeforeMake(abs: string, what: string, options: { readonly groupWritable?: boolean } = {}): string | undefined {
  let below = abs;
  while (dirname(below) !== below && lstatOrUndefined(dirname(below)) === undefined) below = dirname(below);
  return untrustedAncestorProblem(below, what, options);
}

function ownerProblem(path: string, st: Stats, what: string): string | undefined {
  const euid = process.geteuid?.() ?? 0;
  if (st.uid !== 0 && st.uid !== euid) return `${what} ${path} is owned by uid ${st.uid}, not root or the current user (uid ${euid})`;
  return undefined;
}
