// Where things live in a store, and the checks that make a directory safe to be one.
//
//   <root>/objects/<algo>/<hex>               the canonical bytes, mode 0444
//   <root>/manifests/<algo>/<hex>.json        {measurement, name, version, format, profile, size, installedAt}
//   <root>/{objects,manifests}/<algo>/.tmp-*  work in progress; removed by recover()
//
// Every directory is 0755 and owned by root (or the user running the store): nobody else,
// in particular the sandbox's uid, may create, rename or replace anything in it.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileError, fsyncDir, lstatOrUndefined, octal, untrustedAncestorProblem, untrustedAncestorProblemBeforeMake, untrustedDirProblem } from '../io/index.js';

export { lstatOrUndefined, octal };
import { ALGORITHMS, tryParseMeasurement, type Algorithm, type Measurement } from '../measure/index.js';
import { StoreError } from './errors.js';

export const DEFAULT_STORE = '/var/lib/virt-offload/store';
export const TEMP_PREFIX = '.tmp-';
export const DIR_MODE = 0o755;
export const OBJECT_MODE = 0o444;
export const TEMP_MODE = 0o600;

/** An opened (checked) store. Obtain with openStore(). */
export interface Store {
  /** Absolute path of the store root. */
  readonly root: string;
}

export interface OpenStoreOptions {
  /** Create the root and its directories (0755) when missing. Default false: a missing store is an error. */
  readonly create?: boolean;
}

/**
 * Check (and with `create`, make) a store. Refuses a root that is a symlink, not a directory,
 * group/world-writable or owned by another user, any such store subdirectory, and an
 * ancestor directory that others could use to swap the store (writable without the sticky bit).
 */
export function openStore(root: string, options: OpenStoreOptions = {}): Store {
  const abs = resolve(root);
  if (options.create === true && lstatOrUndefined(abs) === undefined) {
    // Before the mkdir (which may make directories above it too): under a directory others
    // may write, what it makes could be swapped before the checks below. A store that exists
    // is left to them.
    const problem = untrustedAncestorProblemBeforeMake(abs, 'the store');
    if (problem !== undefined) throw new StoreError('unsafe', problem, { path: abs });
    let created: string | undefined;
    try {
      created = mkdirSync(abs, { recursive: true, mode: DIR_MODE });
    } catch (err) {
      throw fileError(abs, 'cannot create the store', err);
    }
    // mkdir's mode is filtered by the umask; the store's mode is not the umask's business.
    if (created !== undefined) chmodSync(abs, DIR_MODE);
  }
  // The store itself first: a missing store is said plainly before the directories above it
  // are looked at (they may be missing too). Both checks must pass either way.
  checkDir(abs, true);
  checkAncestors(abs);
  const store: Store = Object.freeze({ root: abs });
  for (const top of ['objects', 'manifests']) {
    const topDir = join(abs, top);
    ensureDir(topDir, options.create === true);
    for (const algo of ALGORITHMS) ensureDir(join(topDir, algo), options.create === true);
  }
  return store;
}

/** Create `dir` (0755, synced into its parent) if asked and missing; check it if present. */
function ensureDir(dir: string, create: boolean): void {
  if (create && lstatOrUndefined(dir) === undefined) {
    try {
      mkdirSync(dir, { mode: DIR_MODE });
      chmodSync(dir, DIR_MODE);
      fsyncDir(dirname(dir));
    } catch (err) {
      throw fileError(dir, 'cannot create store directory', err);
    }
  }
  checkDir(dir, false);
}

/** Refuse a directory that is a symlink, not a directory, or writable by anyone but its (trusted) owner. */
function checkDir(dir: string, required: boolean): void {
  const st = lstatOrUndefined(dir);
  if (st === undefined) {
    if (required) throw new StoreError('missing', `no store at ${dir} (create it with the daemon, or check --store)`, { path: dir });
    return;
  }
  const problem = untrustedDirProblem(dir, st, 'store directory');
  if (problem !== undefined) throw new StoreError('unsafe', problem, { path: dir });
}

/** Whoever can write a directory above the store can rename the store away and put another in its place. */
function checkAncestors(abs: string): void {
  const problem = untrustedAncestorProblem(abs, 'the store');
  if (problem !== undefined) throw new StoreError('unsafe', problem, { path: abs });
}

/** Parse a measurement or throw; the only way a measurement becomes a path (no traversal). */
export function parseStoreMeasurement(text: string): Measurement {
  const m = typeof text === 'string' ? tryParseMeasurement(text) : undefined;
  if (m === undefined) throw new StoreError('bad-measurement', `not a measurement: ${JSON.stringify(text)} (expected <algo>:<hex>, algo one of ${ALGORITHMS.join(', ')})`, { measurement: String(text) });
  return m;
}

export function objectDir(store: Store, algo: Algorithm): string {
  return join(store.root, 'objects', algo);
}
export function manifestDir(store: Store, algo: Algorithm): string {
  return join(store.root, 'manifests', algo);
}
export function objectPath(store: Store, m: Measurement): string {
  return join(objectDir(store, m.algo), m.hex);
}
export function manifestPath(store: Store, m: Measurement): string {
  return join(manifestDir(store, m.algo), `${m.hex}.json`);
}

export function tempName(): string {
  return `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`;
}


export function unlinkIfPresent(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw fileError(path, 'cannot remove', err);
  }
}
