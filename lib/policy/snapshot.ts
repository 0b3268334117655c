// Builds the immutable snapshot the daemon decides with, from every policy file of a
// repository: parse each file, apply the rules that span files, then index every measurement.
// Nothing is built unless every file parses and every rule holds (fail closed).
import type { BinaryDecl, VersionDecl } from './ast.js';
import { compareStrings, PolicyError, PolicySyntaxError, sortErrors } from './errors.js';
import { FrozenMap } from './frozen.js';
import { DEFAULT_LIMITS, resolveLimits } from './limits.js';
import { formatMember, type Interpreter, type Member } from './names.js';
import { parseForSnapshot, type SupersedeLinks } from './parse.js';
import { PendingScopes, ScopeResolver, type LocatedGroup } from './scope.js';
import type { BinaryPolicy, GroupPolicy, PolicyEntry, PolicySnapshot, PolicySource, SnapshotMeta } from './types.js';

export type SnapshotResult = { readonly ok: true; readonly snapshot: PolicySnapshot } | { readonly ok: false; readonly errors: readonly PolicySyntaxError[] };

const NO_INTERPRETER: Interpreter = Object.freeze({ kind: 'none' });

interface LocatedBinary {
  readonly decl: BinaryDecl;
  readonly file: string;
  /** Undefined when the file has errors (then no snapshot is made). */
  readonly links: SupersedeLinks | undefined;
}

/** A `group:` named on a vms line, checked once every file's groups are known. */
interface GroupReference {
  readonly file: string;
  readonly line: number;
  readonly member: Member;
}

/** What a build collects while it reads the files, file by file. */
interface Collected {
  readonly scopes: PendingScopes;
  readonly groupRefs: GroupReference[];
  /** Every entry, in file order (the index is filled from it). */
  readonly entries: PolicyEntry[];
  /** vms lists as written, one frozen list per distinct text. */
  readonly vmsLists: Map<string, readonly string[]>;
}

/**
 * Build a snapshot, or return every error (sorted by file and line) when the files do not
 * make one. Each file's binary is made into its entries as soon as the file is parsed, so the
 * file's parse is garbage before the next one is read (with 100k versions, keeping every
 * parse to the end took the live heap to ~79 MB for a ~45 MB snapshot, and the collector
 * copied it all); the scopes, which need every file's groups, are filled in afterwards,
 * before anything is returned.
 */
export function buildSnapshot(files: readonly PolicySource[], meta: SnapshotMeta = {}): SnapshotResult {
  const errors: PolicySyntaxError[] = [];
  const sources = [...files].sort((a, b) => compareStrings(a.path, b.path));
  const paths: string[] = [];
  const groups: LocatedGroup[] = [];
  const built: BinaryPolicy[] = [];
  const groupSeen = new Map<string, LocatedGroup>();
  const binarySeen = new Map<string, { readonly file: string; readonly line: number }>();
  const collected: Collected = { scopes: new PendingScopes(), groupRefs: [], entries: [], vmsLists: new Map() };
  for (const source of sources) {
    if (paths[paths.length - 1] === source.path) {
      errors.push(new PolicySyntaxError(source.path, 0, 'file is given twice'));
      continue;
    }
    paths.push(source.path);
    const parsed = parseForSnapshot(source.path, source.text);
    errors.push(...parsed.errors);
    for (const decl of parsed.ast.groups) {
      const located = { decl, file: source.path };
      const first = groupSeen.get(decl.name);
      if (first === undefined) {
        groupSeen.set(decl.name, located);
        groups.push(located);
      } else if (first.file !== source.path) {
        errors.push(new PolicySyntaxError(source.path, decl.line, `group ${decl.name} is already defined at ${first.file}:${first.decl.line}`));
      }
    }
    const decl = parsed.ast.binary;
    if (decl === undefined) continue;
    const first = binarySeen.get(decl.name);
    if (first !== undefined) {
      errors.push(new PolicySyntaxError(source.path, decl.line, `binary ${decl.name} is already defined at ${first.file}:${first.line}`));
      continue;
    }
    binarySeen.set(decl.name, { file: source.path, line: decl.line });
    built.push(buildBinary({ decl, file: source.path, links: parsed.links }, collected));
  }

  const resolver = new ScopeResolver(groups, errors);
  const groupScopes = resolver.resolveAll();
  for (const ref of collected.groupRefs) {
    if (!resolver.has(ref.member.value)) errors.push(new PolicySyntaxError(ref.file, ref.line, `vms: ${formatMember(ref.member)} is not defined`));
  }
  collected.scopes.fill(resolver);
  const index = buildIndex(collected.entries, errors);
  if (errors.length > 0) return { ok: false, errors: sortErrors(errors) };

  const groupPolicies = groups
    .map((g): GroupPolicy => Object.freeze({ name: g.decl.name, file: g.file, line: g.decl.line, members: g.decl.members, scope: groupScopes.get(g.decl.name)! }))
    .sort((a, b) => compareStrings(a.name, b.name));
  const snapshot: PolicySnapshot = Object.freeze({
    commit: meta.commit,
    loadedAt: meta.loadedAt,
    files: Object.freeze(paths),
    groups: new FrozenMap(groupPolicies.map((g) => [g.name, g] as const)),
    binaries: new FrozenMap([...built].sort((a, b) => compareStrings(a.name, b.name)).map((b) => [b.name, b] as const)),
    index,
  });
  return { ok: true, snapshot };
}

/** Like buildSnapshot, but throws a PolicyError listing every problem. */
export function buildSnapshotOrThrow(files: readonly PolicySource[], meta: SnapshotMeta = {}): PolicySnapshot {
  const result = buildSnapshot(files, meta);
  if (!result.ok) throw new PolicyError(`the policy has ${result.errors.length} error${result.errors.length === 1 ? '' : 's'}`, result.errors);
  return result.snapshot;
}

/** Like buildSnapshot, but undefined when the files do not make a snapshot. */
export function tryBuildSnapshot(files: readonly PolicySource[], meta: SnapshotMeta = {}): PolicySnapshot | undefined {
  const result = buildSnapshot(files, meta);
  return result.ok ? result.snapshot : undefined;
}

/** The binary's policy; its entries are also appended to `entries` (in order, for the index). */
function buildBinary({ decl, file, links }: LocatedBinary, { scopes, groupRefs, entries, vmsLists }: Collected): BinaryPolicy {
  const all = decl.vms.some((v) => v.all);
  const members = decl.vms.length === 1 ? decl.vms[0]!.members : decl.vms.flatMap((v) => v.members);
  for (const v of decl.vms) {
    for (const m of v.members) if (m.kind === 'group') groupRefs.push({ file, line: v.line, member: m });
  }
  const written = all ? ['all'] : members.map(formatMember);
  // Binaries that write the same vms share one frozen list (most name one group).
  const listKey = written.join(' ');
  let vms = vmsLists.get(listKey);
  if (vms === undefined) {
    vms = Object.freeze(written);
    vmsLists.set(listKey, vms);
  }
  const shared: Shared = {
    name: decl.name,
    file,
    limits: decl.limits === undefined ? DEFAULT_LIMITS : resolveLimits(decl.limits.values),
    interpreter: decl.interpreter?.value ?? NO_INTERPRETER,
    scope: scopes.scopeOf(all, members, written),
  };
  const decls = decl.versions;
  const start = entries.length;
  for (let i = 0; i < decls.length; i++) {
    const v = decls[i]!;
    // by= and the replacement are the target versions' own strings (one copy per version).
    const by = links === undefined || v.status !== 'superseded' ? undefined : decls[links.by[i]!]?.version;
    const end = links === undefined || v.status !== 'superseded' ? undefined : decls[links.end[i]!]?.version;
    entries.push(entry(v, shared, by, end));
  }
  // Made on first read (the daemon reads the index, not these): version → the same entry objects.
  const versions = lazyVersions(entries, start, decls.length);
  return Object.freeze({ name: decl.name, file, line: decl.line, limits: shared.limits, interpreter: shared.interpreter, vms, scope: shared.scope, versions });
}

/** Version → entry for entries[start..start+count), made on first read. Captures no AST (it is garbage after the build). */
function lazyVersions(entries: readonly PolicyEntry[], start: number, count: number): FrozenMap<string, PolicyEntry> {
  return FrozenMap.lazy<string, PolicyEntry>(() => {
    const pairs: [string, PolicyEntry][] = [];
    for (let i = 0; i < count; i++) {
      const e = entries[start + i]!;
      pairs.push([e.version, e]);
    }
    return pairs;
  });
}

type Shared = Pick<PolicyEntry, 'name' | 'file' | 'limits' | 'interpreter' | 'scope'>;

/** The frozen entry of one version. Built field by field: object spread is slow on this path. */
function entry(v: VersionDecl, s: Shared, by: string | undefined, replacement: string | undefined): PolicyEntry {
  const { name, file, limits, interpreter, scope } = s;
  const { version, measurements, line } = v;
  if (v.status === 'approved') return Object.freeze({ name, version, status: v.status, measurements, limits, interpreter, scope, file, line });
  if (v.status === 'revoked') return Object.freeze({ name, version, status: v.status, reason: v.reason, measurements, limits, interpreter, scope, file, line });
  const supersededBy = by ?? v.by;
  if (replacement === undefined) return Object.freeze({ name, version, status: v.status, supersededBy, measurements, limits, interpreter, scope, file, line });
  return Object.freeze({ name, version, status: v.status, supersededBy, replacement, measurements, limits, interpreter, scope, file, line });
}

/** measurement → entry; a measurement listed in two files is an error (same-file repeats are the parser's). */
function buildIndex(entries: readonly PolicyEntry[], errors: PolicySyntaxError[]): FrozenMap<string, PolicyEntry> {
  const index = FrozenMap.open<string, PolicyEntry>();
  // Measurements are new to the index until a repeat is seen: put each straight in (one hash
  // lookup, not two). The first repeat shows as a size that did not grow; its first entry is
  // put back (found by one scan of what came before), and from there on each key is looked
  // up first. Linear either way.
  let i = 0;
  for (; i < entries.length; i++) {
    const e = entries[i]!;
    const measurements = e.measurements;
    let j = 0;
    for (; j < measurements.length; j++) {
      const before = index.size;
      index.put(measurements[j]!, e);
      if (index.size === before) break;
    }
    if (j === measurements.length) continue;
    const first = firstListing(entries, i, j);
    index.put(measurements[j]!, first);
    checkedIndex(index, entries, i, j, errors);
    break;
  }
  return index.seal();
}

/** The entry before entries[i]'s measurement j that lists the same measurement. */
function firstListing(entries: readonly PolicyEntry[], i: number, j: number): PolicyEntry {
  const measurement = entries[i]!.measurements[j]!;
  for (let k = 0; k <= i; k++) {
    const e = entries[k]!;
    const upTo = k === i ? j : e.measurements.length;
    for (let l = 0; l < upTo; l++) if (e.measurements[l] === measurement) return e;
  }
  throw new Error(`internal: no earlier listing of ${measurement}`);
}

/** The rest of buildIndex from entries[i]'s measurement j on, looking each key up first. */
function checkedIndex(index: FrozenMap<string, PolicyEntry>, entries: readonly PolicyEntry[], i0: number, j0: number, errors: PolicySyntaxError[]): void {
  for (let i = i0; i < entries.length; i++) {
    const e = entries[i]!;
    const measurements = e.measurements;
    for (let j = i === i0 ? j0 : 0; j < measurements.length; j++) {
      const measurement = measurements[j]!;
      const first = index.get(measurement);
      if (first === undefined) index.put(measurement, e);
      else if (first.file !== e.file) {
        errors.push(new PolicySyntaxError(e.file, e.line, `version ${e.version}: ${measurement} is already listed for ${first.name} ${first.version} at ${first.file}:${first.line}`));
      }
    }
  }
}
