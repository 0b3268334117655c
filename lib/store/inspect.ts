// Reading the store: list what is installed, verify every object against its name, open one
// object for execution (only after re-hashing it) or locate it for a caller that re-measures
// it anyway, and recover after a crash.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileError, fsyncDir } from '../io/index.js';
import { alignedScratch, ALGORITHMS, tryParseMeasurement, type Algorithm, type Measurement } from '../measure/index.js';
import { StoreError } from './errors.js';
import { checkObjectFile, closeQuietly, removeAtomically } from './files.js';
import { lstatOrUndefined, manifestDir, manifestPath, OBJECT_MODE, objectDir, objectPath, octal, parseStoreMeasurement, TEMP_PREFIX, unlinkIfPresent, type Store } from './layout.js';
import { readManifest, type Manifest } from './manifest.js';

export interface ListedObject {
  readonly measurement: string;
  /** Undefined when there is no manifest or it could not be read (see manifestError). */
  readonly manifest: Manifest | undefined;
  readonly manifestError: string | undefined;
  /** Size of the object file; undefined when there is no object. */
  readonly objectSize: number | undefined;
}

/** Names in one store directory, sorted: measurements of objects/manifests, temp files, anything else. */
interface DirListing {
  readonly dir: string;
  readonly hexes: Set<string>;
  readonly temps: string[];
  readonly strays: string[];
}

function listDir(dir: string, algo: Algorithm, suffix: string): DirListing {
  const listing: DirListing = { dir, hexes: new Set(), temps: [], strays: [] };
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return listing;
    throw fileError(dir, 'cannot list store directory', err);
  }
  for (const name of names) {
    if (name.startsWith(TEMP_PREFIX)) listing.temps.push(name);
    else if (name.endsWith(suffix) && tryParseMeasurement(`${algo}:${name.slice(0, name.length - suffix.length)}`) !== undefined) {
      listing.hexes.add(name.slice(0, name.length - suffix.length));
    } else listing.strays.push(name);
  }
  return listing;
}

function listAlgo(store: Store, algo: Algorithm): { objects: DirListing; manifests: DirListing } {
  return { objects: listDir(objectDir(store, algo), algo, ''), manifests: listDir(manifestDir(store, algo), algo, '.json') };
}

/** Every measurement with an object or a manifest, sorted. Cheap: nothing is hashed. */
export function list(store: Store): ListedObject[] {
  const result: ListedObject[] = [];
  for (const algo of ALGORITHMS) {
    const { objects, manifests } = listAlgo(store, algo);
    for (const hex of [...new Set([...objects.hexes, ...manifests.hexes])].sort()) {
      const m: Measurement = { algo, hex };
      let manifest: Manifest | undefined;
      let manifestError: string | undefined;
      try {
        manifest = readManifest(manifestPath(store, m), m);
      } catch (err) {
        if (!(err instanceof StoreError)) throw err;
        manifestError = err.message;
      }
      const st = objects.hexes.has(hex) ? lstatOrUndefined(objectPath(store, m)) : undefined;
      result.push({ measurement: `${algo}:${hex}`, manifest, manifestError, objectSize: st?.size });
    }
  }
  return result;
}

/**
 * ok; differs: the object's bytes do not hash to its name; bad-file: not a read-only (0444)
 * regular file owned by root or the store's user; missing-manifest / missing-object: half an
 * install (recover() removes it); bad-manifest: unreadable or inconsistent manifest;
 * stray-temp: an interrupted write (recover() removes it); stray: a name the store never writes.
 */
export type VerifyStatus = 'ok' | 'differs' | 'bad-file' | 'missing-manifest' | 'missing-object' | 'bad-manifest' | 'stray-temp' | 'stray';

export interface VerifyItem {
  readonly status: VerifyStatus;
  readonly path: string;
  readonly measurement?: string;
  readonly name?: string;
  readonly version?: string;
  readonly detail: string;
}

export interface VerifyReport {
  /** True when every item is ok. */
  readonly ok: boolean;
  readonly items: readonly VerifyItem[];
}

/** Re-hash every object and check every manifest and directory entry. */
export async function verify(store: Store): Promise<VerifyReport> {
  const items: VerifyItem[] = [];
  const scratch = alignedScratch();
  for (const algo of ALGORITHMS) {
    const { objects, manifests } = listAlgo(store, algo);
    for (const listing of [objects, manifests]) {
      for (const t of listing.temps) items.push({ status: 'stray-temp', path: join(listing.dir, t), detail: 'temp file of an interrupted write (recover removes it)' });
      for (const s of listing.strays) items.push({ status: 'stray', path: join(listing.dir, s), detail: 'not a name the store writes' });
    }
    for (const hex of objects.hexes) items.push(await verifyObject(store, { algo, hex }, scratch));
    for (const hex of manifests.hexes) {
      if (!objects.hexes.has(hex)) {
        items.push({ status: 'missing-object', path: manifestPath(store, { algo, hex }), measurement: `${algo}:${hex}`, detail: 'manifest without its object (recover removes it)' });
      }
    }
  }
  items.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { ok: items.every((i) => i.status === 'ok'), items };
}

async function verifyObject(store: Store, m: Measurement, scratch: Uint8Array): Promise<VerifyItem> {
  const measurement = `${m.algo}:${m.hex}`;
  const path = objectPath(store, m);
  const check = await checkObjectFile(path, m, scratch);
  if (check === undefined) return { status: 'missing-object', path, measurement, detail: 'object vanished while verifying' };
  closeQuietly(check.fd);
  let manifest: Manifest | undefined;
  try {
    manifest = readManifest(manifestPath(store, m), m);
  } catch (err) {
    if (!(err instanceof StoreError)) throw err;
    return { status: 'bad-manifest', path, measurement, detail: err.message };
  }
  const who = manifest === undefined ? {} : { name: manifest.name, version: manifest.version };
  if (check.stat === undefined || !check.stat.isFile()) return { status: 'bad-file', path, measurement, ...who, detail: `object ${check.problem ?? 'is not a regular file'}` };
  if (check.digest !== measurement) return { status: 'differs', path, measurement, ...who, detail: `object's bytes hash to ${check.digest}, not its name` };
  if (check.problem !== undefined) return { status: 'bad-file', path, measurement, ...who, detail: `object ${check.problem}` };
  if (manifest === undefined) return { status: 'missing-manifest', path, measurement, detail: 'object without manifest (recover removes it)' };
  if (manifest.size !== check.size) return { status: 'bad-manifest', path, measurement, ...who, detail: `manifest says ${manifest.size} bytes, object has ${check.size}` };
  return { status: 'ok', path, measurement, ...who, detail: 'ok' };
}

/** An installed object, opened and verified. Close it when done. */
export interface VerifiedObject {
  readonly measurement: string;
  readonly path: string;
  /** Read-only fd of the object; the bytes it reads were hashed and matched the measurement. */
  readonly fd: number;
  readonly size: number;
  readonly manifest: Manifest;
  close(): void;
}

/**
 * Open an installed object for execution, after re-hashing every byte through the returned
 * fd. Refuses (StoreError) an object that is not installed, differs from its name, is not a
 * 0444 regular file, or disagrees with its manifest.
 *
 * For the exec helper: this proves the file's content at the time of the check. Whoever runs
 * it must still run exactly what was hashed, e.g. copy the bytes from `fd` into a sealed memfd
 * while hashing them again and exec that, so a file changed between open() and exec never runs.
 */
export async function open(store: Store, measurement: string): Promise<VerifiedObject> {
  const m = parseStoreMeasurement(measurement);
  const path = objectPath(store, m);
  const manifest = readManifest(manifestPath(store, m), m);
  if (manifest === undefined) throw new StoreError('missing', `${measurement} is not installed in ${store.root}`, { path, measurement });
  const check = await checkObjectFile(path, m);
  if (check === undefined) throw new StoreError('missing', `${measurement} is not installed in ${store.root} (no object ${path})`, { path, measurement });
  const refuse = (why: string, actual?: string): never => {
    closeQuietly(check.fd);
    throw new StoreError('corrupt', `refusing to use store object ${path}: ${why}`, { path, measurement, ...(actual === undefined ? {} : { actual }) });
  };
  if (check.digest !== measurement) refuse(`its bytes hash to ${check.digest}, not ${measurement}`, check.digest);
  if (check.problem !== undefined) refuse(`it ${check.problem}`);
  if (check.size !== manifest.size) refuse(`it has ${check.size} bytes, its manifest says ${manifest.size}`);
  return { measurement, path, fd: check.fd, size: check.size, manifest, close: () => closeQuietly(check.fd) };
}

/** An installed object found by its name, not read: see locate(). */
export interface LocatedObject {
  readonly measurement: string;
  readonly path: string;
  readonly size: number;
  readonly manifest: Manifest;
}

/**
 * Find an installed object without reading its bytes: its manifest, and an object that is a
 * 0444 regular file (not a symlink) owned by root or us, of the manifest's size. Refuses
 * (StoreError) like open() otherwise. For a caller that measures the bytes itself before it
 * uses them (the exec helper re-measures the file and runs only what it hashed), where open()'s
 * hash of every byte would be done twice.
 */
export function locate(store: Store, measurement: string): LocatedObject {
  const m = parseStoreMeasurement(measurement);
  const path = objectPath(store, m);
  const manifest = readManifest(manifestPath(store, m), m);
  if (manifest === undefined) throw new StoreError('missing', `${measurement} is not installed in ${store.root}`, { path, measurement });
  const st = lstatOrUndefined(path);
  if (st === undefined) throw new StoreError('missing', `${measurement} is not installed in ${store.root} (no object ${path})`, { path, measurement });
  const refuse = (why: string): never => {
    throw new StoreError('corrupt', `refusing to use store object ${path}: ${why}`, { path, measurement });
  };
  if (!st.isFile()) refuse(st.isSymbolicLink() ? 'it is a symbolic link' : 'it is not a regular file');
  const mode = st.mode & 0o7777;
  if (mode !== OBJECT_MODE) refuse(`it has mode ${octal(mode)}, not ${octal(OBJECT_MODE)}`);
  const euid = process.geteuid?.() ?? 0;
  if (st.uid !== 0 && st.uid !== euid) refuse(`it is owned by uid ${st.uid}`);
  if (st.size !== manifest.size) refuse(`it has ${st.size} bytes, its manifest says ${manifest.size}`);
  return { measurement, path, size: st.size, manifest };
}

export interface RecoverOptions {
  /**
   * Leave temp files and half-installed entries younger than this alone (ms, default 0). The
   * daemon recovers at start-up with 0; a `store gc` run beside a live daemon uses a margin so
   * it does not take an install in progress for a crashed one.
   */
  readonly minAgeMs?: number;
  readonly now?: number;
}

export interface RecoverReport {
  /** Paths removed, with why. */
  readonly removed: ReadonlyArray<{ readonly path: string; readonly why: 'temp' | 'object-without-manifest' | 'manifest-without-object' }>;
}

/**
 * Bring the store back to a state where every name is complete: remove temp files of
 * interrupted writes, objects whose manifest was never written (install interrupted) or
 * already removed (uninstall interrupted), and manifests without object.
 */
export function recover(store: Store, options: RecoverOptions = {}): RecoverReport {
  const minAge = options.minAgeMs ?? 0;
  const now = options.now ?? Date.now();
  const old = (path: string): boolean => {
    const st = lstatOrUndefined(path);
    return st !== undefined && (st.isFile() || st.isSymbolicLink()) && now - st.mtimeMs >= minAge;
  };
  const removed: Array<RecoverReport['removed'][number]> = [];
  for (const algo of ALGORITHMS) {
    const { objects, manifests } = listAlgo(store, algo);
    for (const listing of [objects, manifests]) {
      let any = false;
      for (const t of listing.temps) {
        const path = join(listing.dir, t);
        if (old(path) && unlinkIfPresent(path)) {
          removed.push({ path, why: 'temp' });
          any = true;
        }
      }
      if (any) fsyncDir(listing.dir);
    }
    for (const hex of objects.hexes) {
      const path = objectPath(store, { algo, hex });
      if (!manifests.hexes.has(hex) && old(path) && removeAtomically(objects.dir, hex)) removed.push({ path, why: 'object-without-manifest' });
    }
    for (const hex of manifests.hexes) {
      const path = manifestPath(store, { algo, hex });
      if (!objects.hexes.has(hex) && old(path) && removeAtomically(manifests.dir, `${hex}.json`)) removed.push({ path, why: 'manifest-without-object' });
    }
  }
  return { removed };
}
