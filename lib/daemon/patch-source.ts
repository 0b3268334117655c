// Where the store reconciliation gets the bytes of a newly approved version it does not hold:
// a VCDIFF delta in the patch directory, applied to an installed version of the same binary
// (the design: "a patch (VCDIFF against an installed version) that yields an approved newer
// version installs it"). The installed bytes are canonical images (what `measure --canonical`
// writes), so a delta for the host is made between canonical images:
//   xdelta3 -e -A -S none -n -s OLD.canonical NEW.canonical DELTA
// and approved with `policy update NAME --version NEW --patch DELTA --from OLD --base OLD.canonical`.
//
// Nothing in the directory is trusted: every candidate is checked in full by lib/patch before
// it is decoded, bounded in size, and its output is used only when it measures exactly to the
// approved measurement (the store measures it once more while installing it).
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readOpenFile } from '../io/index.js';
import { bufferReader, measure, tryParseMeasurement } from '../measure/index.js';
import { applyVcdiff, PatchError } from '../patch/index.js';
import type { PolicyEntry } from '../policy/index.js';
import { list, open, type ByteSource, type Store } from '../store/index.js';
import type { DaemonLog } from './log.js';

/** Deltas looked at per reconciliation (a directory of thousands is a mistake, not a wish). */
export const MAX_PATCH_FILES = 256;
/** Bytes decoded per call, over all attempts, in units of the largest patched result. */
export const DECODE_BUDGET_RESULTS = 4;
/** (delta, base) pairs remembered as not giving the approved version. */
const MAX_REMEMBERED_FAILURES = 65536;

export interface PatchSourceOptions {
  readonly dir: string;
  readonly store: Store;
  readonly log: DaemonLog;
  /** Largest delta file and largest patched result (bytes). */
  readonly maxBytes: number;
}

interface DeltaFile {
  readonly path: string;
  readonly name: string;
  /** Size and mtime: a rewritten file is another candidate. */
  readonly stamp: string;
}

/**
 * A ByteSource that builds `entry` from a delta in `dir` and an installed version of the same
 * binary. The directory is not trusted: each delta is read when it is tried (one at a time,
 * never all at once), a delta named after the wanted measurement (`<hex>.vcdiff`) is tried
 * first, a pair (delta, base) that did not give the approved version is not tried again until
 * the delta file changes, the bytes decoded per call are bounded (DECODE_BUDGET_RESULTS ×
 * maxBytes: a directory of tiny deltas that each expand to the limit is a bomb), and the
 * event loop gets a turn between attempts so that VMs are served meanwhile.
 */
export function patchSource(options: PatchSourceOptions): ByteSource {
  const { dir, store, log, maxBytes } = options;
  const failed = new Set<string>();
  return async (measurement: string, entry: PolicyEntry) => {
    const parsed = tryParseMeasurement(measurement);
    if (parsed === undefined) return undefined;
    const { algo: wanted, hex } = parsed;
    // The delta named after the wanted measurement first, looked up whatever the listing's cut.
    const deltas = deltaFiles(dir, maxBytes, log, `${hex}.vcdiff`);
    if (deltas.length === 0) return undefined;
    const bases = list(store).filter((o) => o.manifest?.name === entry.name && o.objectSize !== undefined && o.measurement !== measurement);
    let budget = DECODE_BUDGET_RESULTS * maxBytes;
    for (const base of bases) {
      /** What is remembered of a (delta, base, target) that did not give the approved version. */
      const failureKey = (d: DeltaFile): string => `${d.path}\0${d.stamp}\0${base.measurement}\0${measurement}`;
      const untried = deltas.filter((d) => !failed.has(failureKey(d)));
      if (untried.length === 0) continue;
      let baseBytes: Uint8Array;
      try {
        const object = await open(store, base.measurement);
        try {
          if (object.size > maxBytes) continue;
          baseBytes = readOpenFile(object.fd, object.size);
          if (baseBytes.length !== object.size) continue;
        } finally {
          object.close();
        }
      } catch (err) {
        log.warn(`patch source: cannot read installed ${base.measurement}: ${err instanceof Error ? err.message : String(err)}`, { measurement: base.measurement });
        continue;
      }
      for (const delta of untried) {
        if (budget < maxBytes) {
          log.warn(`patch source: ${DECODE_BUDGET_RESULTS * maxBytes} bytes decoded for ${entry.name} ${entry.version} without a match; the other deltas wait for the next reconciliation`, { measurement });
          return undefined;
        }
        // A turn for the event loop: decoding and measuring are synchronous.
        await new Promise((done) => setImmediate(done));
        const key = failureKey(delta);
        const deltaBytes = readDelta(delta, maxBytes, log);
        if (deltaBytes === undefined) continue;
        let bytes: Uint8Array;
        try {
          bytes = applyVcdiff(baseBytes, deltaBytes, { maxTargetBytes: maxBytes });
        } catch (err) {
          // Most deltas in the directory are for other bases: refused quietly.
          if (!(err instanceof PatchError)) throw err;
          remember(failed, key);
          continue;
        }
        budget -= bytes.length;
        const got = (await measure(bufferReader(bytes), { algo: wanted, profile: 'v1' }).catch(() => undefined))?.measurement;
        if (got !== measurement) {
          remember(failed, key);
          continue;
        }
        log.info(`store: built ${entry.name} ${entry.version} (${measurement}) from ${delta.path} against installed ${base.manifest?.version ?? '?'} (${base.measurement})`, { measurement });
        return bufferReader(bytes);
      }
    }
    return undefined;
  };
}

function remember(failed: Set<string>, key: string): void {
  if (failed.size >= MAX_REMEMBERED_FAILURES) failed.clear();
  failed.add(key);
}

/** The `*.vcdiff` files of `dir` that are regular files of at most maxBytes (not read yet); a missing directory has none. */
function deltaFiles(dir: string, maxBytes: number, log: DaemonLog, first: string): DeltaFile[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.vcdiff')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn(`patch directory ${dir}: ${(err as Error).message}`);
    return [];
  }
  const named = names.includes(first);
  names = names.filter((n) => n !== first);
  if (names.length > MAX_PATCH_FILES) {
    log.warn(`patch directory ${dir} holds ${names.length} deltas; only the first ${MAX_PATCH_FILES} (by name) are tried`);
    names = names.slice(0, MAX_PATCH_FILES);
  }
  if (named) names.unshift(first);
  const out: DeltaFile[] = [];
  for (const name of names) {
    const path = join(dir, name);
    try {
      const st = lstatSync(path);
      if (!st.isFile()) continue;
      if (st.size > maxBytes) {
        log.warn(`patch ${path}: ${st.size} bytes, more than ${maxBytes}; ignored`);
        continue;
      }
      // What a copy keeping times (cp -p, rsync -t) cannot keep: the inode and its change time.
      out.push({ path, name, stamp: `${st.size}:${st.mtimeMs}:${st.ino}:${st.ctimeMs}` });
    } catch (err) {
      log.warn(`patch ${path}: ${err instanceof Error ? err.message : String(err)}; ignored`);
    }
  }
  return out;
}

/**
 * A delta's bytes, or undefined. Opened without following a symlink and without waiting (a
 * FIFO swapped in after the listing would block the daemon for ever), and read only if it is
 * still a regular file of at most maxBytes.
 */
function readDelta(delta: DeltaFile, maxBytes: number, log: DaemonLog): Uint8Array | undefined {
  let fd: number;
  try {
    fd = openSync(delta.path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    log.warn(`patch ${delta.path}: ${err instanceof Error ? err.message : String(err)}; ignored`);
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > maxBytes) return undefined;
    const bytes = readOpenFile(fd, st.size);
    return bytes.length === st.size ? bytes : undefined;
  } catch (err) {
    log.warn(`patch ${delta.path}: ${err instanceof Error ? err.message : String(err)}; ignored`);
    return undefined;
  } finally {
    closeSync(fd);
  }
}
