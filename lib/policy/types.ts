// The shape of a policy snapshot: what the daemon decides with. Everything in it is frozen
// (objects with Object.freeze, maps and sets with FrozenMap/FrozenSet).
import type { VersionStatus } from './ast.js';
import type { Limits } from './limits.js';
import type { Interpreter, Member } from './names.js';

/** Which VMs may run a binary, with groups expanded. */
export interface VmScope {
  /** `vms all`. */
  readonly allVms: boolean;
  /** libvirt domain names (case-sensitive). */
  readonly names: ReadonlySet<string>;
  /** VM UUIDs, lowercase. */
  readonly uuids: ReadonlySet<string>;
}

/**
 * One version of one binary, with everything needed to decide on it. The same frozen object
 * is `binaries.get(name).versions.get(version)` and `index.get(m)` for each of its measurements.
 */
export interface PolicyEntry {
  readonly name: string;
  readonly version: string;
  readonly status: VersionStatus;
  /** For superseded versions: the version named by `by=`. */
  readonly supersededBy?: string;
  /** For superseded versions: the approved version at the end of the by= chain, if the chain ends in one. */
  readonly replacement?: string;
  /** For revoked versions: why. */
  readonly reason?: string;
  /** Every measurement listed for this version (each is a key of the index). */
  readonly measurements: readonly string[];
  readonly limits: Limits;
  readonly interpreter: Interpreter;
  readonly scope: VmScope;
  readonly file: string;
  readonly line: number;
}

export interface BinaryPolicy {
  readonly name: string;
  readonly file: string;
  readonly line: number;
  readonly limits: Limits;
  readonly interpreter: Interpreter;
  /** The `vms` lines as written: ['all'] or members like 'vm:web1', 'group:build'. Empty: no VM. */
  readonly vms: readonly string[];
  readonly scope: VmScope;
  /** In file order. */
  readonly versions: ReadonlyMap<string, PolicyEntry>;
}

export interface GroupPolicy {
  readonly name: string;
  readonly file: string;
  readonly line: number;
  readonly members: readonly Member[];
  /** Members with nested groups expanded. */
  readonly scope: VmScope;
}

export interface PolicySnapshot {
  /** The git commit the files came from, when the loader knows it. */
  readonly commit: string | undefined;
  /** When the snapshot was loaded (ISO 8601), as the loader says; the core has no clock. */
  readonly loadedAt: string | undefined;
  /** Paths of the files it was built from, sorted. */
  readonly files: readonly string[];
  /** By name, sorted. */
  readonly groups: ReadonlyMap<string, GroupPolicy>;
  /** By name, sorted. */
  readonly binaries: ReadonlyMap<string, BinaryPolicy>;
  /** measurement string → entry, for every version whatever its status. */
  readonly index: ReadonlyMap<string, PolicyEntry>;
}

export interface PolicySource {
  /** Repository-relative path, e.g. `binaries/hello.policy`. */
  readonly path: string;
  readonly text: string;
  /**
   * What identifies this text, when the loader knows it (the git blob id at a revision): an
   * IncrementalSnapshots build reuses a file whose id is unchanged without comparing texts.
   */
  readonly id?: string;
}

export interface SnapshotMeta {
  readonly commit?: string;
  readonly loadedAt?: string;
}
