// Make the store match a policy snapshot: install approved versions whose bytes are at hand,
// then remove every installed measurement the snapshot does not approve for some VM.
// Installs come first, so an old version is removed only after its successor is in place
// (and can serve as the base a patch is applied to while the successor is built); a
// superseded version whose successor could not be installed stays until it is.
import { VirtOffloadError } from '../errors.js';
import type { ByteReader } from '../measure/index.js';
import type { PolicyEntry, PolicySnapshot } from '../policy/index.js';
import { list, type ListedObject } from './inspect.js';
import { install, uninstall } from './install.js';
import type { Store } from './layout.js';

/** One change (or failed change) to the store, for the audit log. Plain JSON data. */
export interface ReconcileRecord {
  readonly action: 'install' | 'uninstall' | 'install-failed' | 'uninstall-failed';
  readonly measurement: string;
  /** From the policy entry, else the manifest; absent for an object nobody named. */
  readonly name?: string;
  readonly version?: string;
  readonly reason: string;
  /** The snapshot's commit, when known. */
  readonly commit?: string;
}

/** A reader of the bytes of `measurement` (any form that measures to it), or undefined when none is at hand. */
export type ByteSource = (measurement: string, entry: PolicyEntry) => ByteReader | undefined | Promise<ByteReader | undefined>;

export interface ReconcileOptions {
  /** Receives every change as it happens (the daemon appends it to the audit log). */
  readonly log: (record: ReconcileRecord) => void;
  /** Where bytes of approved, not yet installed versions come from. Readers with a close() are closed after use. */
  readonly sources?: ByteSource;
  /** Recorded in new manifests; default now. */
  readonly installedAt?: string;
  /**
   * Keep a superseded version while the approved version that replaces it is not installed
   * (default true): it is never run (the policy denies it), but it is the base a patch to
   * its successor applies to. `store gc` passes false: remove everything not approved.
   */
  readonly keepUntilSuccessor?: boolean;
}

export interface ReconcileSummary {
  readonly installed: string[];
  readonly removed: string[];
  /** Approved and already installed. */
  readonly kept: string[];
  /** Approved, not installed, and no bytes at hand. */
  readonly unavailable: string[];
  /** Superseded, kept because its successor is not installed yet. */
  readonly retained: string[];
  readonly failed: Array<{ readonly measurement: string; readonly action: 'install' | 'uninstall'; readonly error: string }>;
}

/** Whether the snapshot lets some VM run this entry. */
function runnable(entry: PolicyEntry): boolean {
  return entry.status === 'approved' && (entry.scope.allVms || entry.scope.names.size > 0 || entry.scope.uuids.size > 0);
}

/** Why an installed measurement has to go, or undefined when the snapshot approves it. */
function removalReason(entry: PolicyEntry | undefined): string | undefined {
  if (entry === undefined) return 'not in the policy';
  if (entry.status === 'superseded') {
    const end = entry.replacement !== undefined && entry.replacement !== entry.supersededBy ? ` (now ${entry.replacement})` : '';
    return `superseded by ${entry.supersededBy ?? '?'}${end}`;
  }
  if (entry.status === 'revoked') return `revoked: ${entry.reason ?? ''}`;
  if (!runnable(entry)) return 'approved for no VM';
  return undefined;
}

export async function reconcile(store: Store, snapshot: PolicySnapshot, options: ReconcileOptions): Promise<ReconcileSummary> {
  const { log, sources } = options;
  const commit = snapshot.commit === undefined ? {} : { commit: snapshot.commit };
  const summary: ReconcileSummary = { installed: [], removed: [], kept: [], unavailable: [], retained: [], failed: [] };
  const before = new Map<string, ListedObject>(list(store).map((o) => [o.measurement, o]));

  // 1. Install what is approved and missing (or recorded under another name/version).
  for (const binary of snapshot.binaries.values()) {
    for (const entry of binary.versions.values()) {
      if (!runnable(entry)) continue;
      for (const measurement of entry.measurements) {
        const present = before.get(measurement);
        const complete = present?.manifest !== undefined && present.objectSize !== undefined;
        const relabel = complete && (present.manifest!.name !== entry.name || present.manifest!.version !== entry.version);
        if (complete && !relabel) {
          summary.kept.push(measurement);
          continue;
        }
        const spec = { measurement, name: entry.name, version: entry.version, ...(options.installedAt === undefined ? {} : { installedAt: options.installedAt }) };
        let reader: ByteReader | undefined;
        try {
          // An object whose manifest only needs rewriting does not need the bytes: install()
          // verifies the object and rewrites the manifest without reading the source.
          reader = complete ? undefined : await sources?.(measurement, entry);
          if (reader === undefined && !complete) {
            summary.unavailable.push(measurement);
            continue;
          }
          const result = await install(store, spec, reader ?? EMPTY);
          if (result.action === 'unchanged') summary.kept.push(measurement);
          else {
            summary.installed.push(measurement);
            log({ action: 'install', measurement, name: entry.name, version: entry.version, reason: `approved (${result.action})`, ...commit });
          }
        } catch (err) {
          if (!(err instanceof VirtOffloadError)) throw err;
          summary.failed.push({ measurement, action: 'install', error: err.message });
          log({ action: 'install-failed', measurement, name: entry.name, version: entry.version, reason: err.message, ...commit });
        } finally {
          (reader as { close?: () => void } | undefined)?.close?.();
        }
      }
    }
  }

  // 2. Remove what the snapshot does not approve, now that successors are in place.
  const installedNow = new Set(list(store).filter((o) => o.manifest !== undefined && o.objectSize !== undefined).map((o) => o.measurement));
  for (const [measurement, present] of before) {
    const entry = snapshot.index.get(measurement);
    const reason = removalReason(entry);
    if (reason === undefined) continue;
    if (options.keepUntilSuccessor !== false && entry !== undefined && successorPending(snapshot, entry, installedNow)) {
      summary.retained.push(measurement);
      continue;
    }
    const who = entry !== undefined ? { name: entry.name, version: entry.version } : present.manifest !== undefined ? { name: present.manifest.name, version: present.manifest.version } : {};
    try {
      uninstall(store, measurement);
      summary.removed.push(measurement);
      log({ action: 'uninstall', measurement, ...who, reason, ...commit });
    } catch (err) {
      if (!(err instanceof VirtOffloadError)) throw err;
      summary.failed.push({ measurement, action: 'uninstall', error: err.message });
      log({ action: 'uninstall-failed', measurement, ...who, reason: `${reason}; ${err.message}`, ...commit });
    }
  }
  return summary;
}

/** A superseded entry whose approved, runnable replacement has none of its measurements installed. */
function successorPending(snapshot: PolicySnapshot, entry: PolicyEntry, installed: ReadonlySet<string>): boolean {
  if (entry.status !== 'superseded' || entry.replacement === undefined) return false;
  const successor = snapshot.binaries.get(entry.name)?.versions.get(entry.replacement);
  if (successor === undefined || !runnable(successor)) return false;
  return !successor.measurements.some((m) => installed.has(m));
}

/** Stands in for a source when only a manifest is rewritten (never read: the object verifies). */
const EMPTY: ByteReader = { size: 0, read: () => 0 };
