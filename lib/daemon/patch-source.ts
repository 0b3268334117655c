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
import { closeSync, lstatSync, openSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readOpenFile } from '../io/index.js';
import { bufferReader, measure } from '../measure/index.js';
import { applyVcdiff, PatchError } from '../patch/index.js';
import type { PolicyEntry } from '../policy/index.js';
import { list, open, type ByteSource, type Store } from '../store/index.js';
import type { DaemonLog } from './log.js';

/** Deltas looked at per reconciliation (a directory of thousands is a mistake, not a wish). */
export const MAX_PATCH_FILES = 256;

export interface PatchSourceOptions {
  readonly dir: string;
  readonly store: Store;
  readonly log: DaemonLog;
  /** Largest delta file and largest patched result (bytes). */
  readonly maxBytes: number;
}

/** A ByteSource that builds `entry` from a delta in `dir` and an installed version of the same binary. */
export function patchSource(options: PatchSourceOptions): ByteSource {
  const { dir, store, log, maxBytes } = options;
  return async (measurement: string, entry: PolicyEntry) => {
    const deltas = deltaFiles(dir, maxBytes, log);
    if (deltas.length === 0) return undefined;
    const bases = list(store).filter((o) => o.manifest?.name === entry.name && o.objectSize !== undefined && o.measurement !== measurement);
    for (const base of bases) {
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
      for (const delta of deltas) {
        let bytes: Uint8Array;
        try {
          bytes = applyVcdiff(baseBytes, delta.bytes, { maxTargetBytes: maxBytes });
        } catch (err) {
          // Most deltas in the directory are for other bases: refused quietly.
          if (err instanceof PatchError) continue;
          throw err;
        }
        const got = (await measure(bufferReader(bytes), { algo: 'sha256', profile: 'v1' }).catch(() => undefined))?.measurement;
        if (got !== measurement) continue;
        log.info(`store: built ${entry.name} ${entry.version} (${measurement}) from ${delta.path} against installed ${base.manifest?.version ?? '?'} (${base.measurement})`, { measurement });
        return bufferReader(bytes);
      }
    }
    return undefined;
  };
}

/** The regular files `*.vcdiff` in `dir`, at most maxBytes each; a missing directory has none. */
function deltaFiles(dir: string, maxBytes: number, log: DaemonLog): Array<{ path: string; bytes: Uint8Array }> {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.vcdiff')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn(`patch directory ${dir}: ${(err as Error).message}`);
    return [];
  }
  if (names.length > MAX_PATCH_FILES) {
    log.warn(`patch directory ${dir} holds ${names.length} deltas; only the first ${MAX_PATCH_FILES} (by name) are tried`);
    names = names.slice(0, MAX_PATCH_FILES);
  }
  const out: Array<{ path: string; bytes: Uint8Array }> = [];
  for (const name of names) {
    const path = join(dir, name);
    try {
      const st = lstatSync(path);
      if (!st.isFile()) continue;
      if (st.size > maxBytes) {
        log.warn(`patch ${path}: ${st.size} bytes, more than ${maxBytes}; ignored`);
        continue;
      }
      const fd = openSync(path, 'r');
      try {
        const bytes = readOpenFile(fd, st.size);
        if (bytes.length === st.size) out.push({ path, bytes });
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      log.warn(`patch ${path}: ${err instanceof Error ? err.message : String(err)}; ignored`);
    }
  }
  return out;
}
