// Builds the immutable snapshot the daemon decides with, from every policy file of a
// repository: compile each file (the usual file read straight into its compiled form by
// fast-file.ts, any other parsed first), apply the rules that span files, then index every
// measurement. Nothing is built unless every file parses and every rule holds (fail closed).
import { compileBinary, decodeMeasurement, DIGEST_STRIDE, versionAt, type CompiledBinary, type CompiledFile } from './compiled.js';
import { DigestTable, PolicyIndex, SnapshotEntries, type BinaryShared } from './digest-index.js';
import { compareStrings, PolicyError, PolicySyntaxError, sortErrors } from './errors.js';
import { compileUsualFile } from './fast-file.js';
import { FrozenMap } from './frozen.js';
import { formatMember } from './names.js';
import { parseForSnapshot } from './parse.js';
import { PendingScopes, ScopeResolver, type LocatedGroup } from './scope.js';
import type { BinaryPolicy, GroupPolicy, PolicyEntry, PolicySnapshot, PolicySource, SnapshotMeta } from './types.js';

export type SnapshotResult = { readonly ok: true; readonly snapshot: PolicySnapshot } | { readonly ok: false; readonly errors: readonly PolicySyntaxError[] };

const NONE: readonly never[] = Object.freeze([]);

/** Parse one file and compile its binary: all a snapshot needs of it, whatever the other files say. */
export function compileFile(path: string, text: string): CompiledFile {
  // Most files take the short way; any other, and any file with a problem, the parser's.
  const usual = compileUsualFile(path, text);
  if (usual !== undefined) return Object.freeze({ path, groups: usual.groups.length === 0 ? NONE : usual.groups, binary: usual.binary, errors: NONE });
  const parsed = parseForSnapshot(path, text);
  const decl = parsed.ast.binary;
  const { groups } = parsed.ast;
  const errors = parsed.errors;
  return Object.freeze({
    path,
    // Most files have neither: one shared empty list instead of two arrays per file.
    groups: groups.length === 0 ? NONE : groups,
    binary: decl === undefined ? undefined : compileBinary(decl, path, parsed.links),
    errors: errors.length === 0 ? NONE : errors,
  });
}

/**
 * Build a snapshot, or return every error (sorted by file and line) when the files do not
 * make one. Each file is compiled as soon as it is parsed, so its parse is garbage before the
 * next one is read; what spans files (groups, scopes, repeats of a measurement) is worked out
 * once every file is compiled, before anything is returned.
 */
export function buildSnapshot(files: readonly PolicySource[], meta: SnapshotMeta = {}): SnapshotResult {
  return assembleSnapshot(compileSources(files, (s) => compileFile(s.path, s.text)), meta);
}

/**
 * The sources sorted by path, each compiled by `compile` (a cache may answer for a file it
 * has seen), with an error for a path given twice.
 */
export function compileSources(files: readonly PolicySource[], compile: (source: PolicySource) => CompiledFile): CompiledFile[] {
  const sources = [...files].sort((a, b) => compareStrings(a.path, b.path));
  const out: CompiledFile[] = [];
  let errors = 0;
  for (const [i, source] of sources.entries()) {
    if (errors >= MAX_ERRORS_TOTAL) {
      // Each error is an object with its message: a repository of broken files (1000 errors
      // each, the parser's own limit) would otherwise take gigabytes. The rest is not read.
      const rest = sources.length - i;
      out.push(Object.freeze({ path: source.path, groups: [], binary: undefined, errors: [new PolicySyntaxError(source.path, 0, `too many errors in the repository; stopped after ${errors}, ${rest} file${rest === 1 ? '' : 's'} from here on not checked`)] }));
      break;
    }
    if (out.length > 0 && out[out.length - 1]!.path === source.path) {
      out.push(Object.freeze({ path: source.path, groups: [], binary: undefined, errors: [new PolicySyntaxError(source.path, 0, 'file is given twice')] }));
      errors++;
      continue;
    }
    const compiled = compile(source);
    errors += compiled.errors.length;
    out.push(compiled);
  }
  return out;
}

/** Errors reported for a whole repository before the files after them are no longer read. */
export const MAX_ERRORS_TOTAL = 10_000;

/** The cross-file half of buildSnapshot: `files` compiled, sorted by path. */
export function assembleSnapshot(files: readonly CompiledFile[], meta: SnapshotMeta): SnapshotResult {
  const errors: PolicySyntaxError[] = [];
  const paths: string[] = [];
  const groups: LocatedGroup[] = [];
  const binaries: CompiledBinary[] = [];
  const groupSeen = new Map<string, LocatedGroup>();
  const binarySeen = new Map<string, CompiledBinary>();
  for (const file of files) {
    for (const e of file.errors) errors.push(e);
    // A second copy of a path (its error is above) adds nothing else.
    if (paths[paths.length - 1] === file.path) continue;
    paths.push(file.path);
    for (const decl of file.groups) {
      const located = { decl, file: file.path };
      const first = groupSeen.get(decl.name);
      if (first === undefined) {
        groupSeen.set(decl.name, located);
        groups.push(located);
      } else if (first.file !== file.path) {
        errors.push(new PolicySyntaxError(file.path, decl.line, `group ${decl.name} is already defined at ${first.file}:${first.decl.line}`));
      }
    }
    const bin = file.binary;
    if (bin === undefined) continue;
    const first = binarySeen.get(bin.name);
    if (first !== undefined) {
      errors.push(new PolicySyntaxError(file.path, bin.line, `binary ${bin.name} is already defined at ${first.file}:${first.line}`));
      continue;
    }
    binarySeen.set(bin.name, bin);
    binaries.push(bin);
  }

  const scopes = new PendingScopes();
  const shared = binaries.map((bin): BinaryShared => ({ name: bin.name, file: bin.file, limits: bin.limits, interpreter: bin.interpreter, scope: scopes.scopeOf(bin.vmsAll, bin.vmsMembers, bin.scopeKey) }));
  const table = new DigestTable(binaries, (b, j, fb, fj) => {
    // A repeat inside one file is the parser's error; across files it is reported here, against the first listing.
    if (fb === b) return;
    const at = binaries[b]!;
    const first = binaries[fb]!;
    const i = at.ints[at.intsAt + 5 * at.count + 1 + j]!;
    const fi = first.ints[first.intsAt + 5 * first.count + 1 + fj]!;
    const measurement = decodeMeasurement(at.digests, at.digestsAt + j * DIGEST_STRIDE);
    const line = at.ints[at.intsAt + 4 * i]!;
    const firstLine = first.ints[first.intsAt + 4 * fi]!;
    errors.push(new PolicySyntaxError(at.file, line, `version ${versionAt(at, i)}: ${measurement} is already listed for ${first.name} ${versionAt(first, fi)} at ${first.file}:${firstLine}`));
  });

  const resolver = new ScopeResolver(groups, errors);
  const groupScopes = resolver.resolveAll();
  for (const bin of binaries) {
    for (const v of bin.vms) {
      for (const m of v.members) if (m.kind === 'group' && !resolver.has(m.value)) errors.push(new PolicySyntaxError(bin.file, v.line, `vms: ${formatMember(m)} is not defined`));
    }
  }
  scopes.fill(resolver);
  if (errors.length > 0) return { ok: false, errors: sortErrors(errors) };

  const entries = new SnapshotEntries(binaries, shared, table);
  const built = binaries.map((bin, b): BinaryPolicy => {
    const versions = FrozenMap.lazyFrom(versionsOf, entries, b);
    return Object.freeze({ name: bin.name, file: bin.file, line: bin.line, limits: bin.limits, interpreter: bin.interpreter, vms: bin.vmsWritten, scope: shared[b]!.scope, versions });
  });
  const groupPolicies = groups
    .map((g): GroupPolicy => Object.freeze({ name: g.decl.name, file: g.file, line: g.decl.line, members: g.decl.members, scope: groupScopes.get(g.decl.name)! }))
    .sort((a, b) => compareStrings(a.name, b.name));
  const snapshot: PolicySnapshot = Object.freeze({
    commit: meta.commit,
    loadedAt: meta.loadedAt,
    files: Object.freeze(paths),
    groups: new FrozenMap(groupPolicies.map((g) => [g.name, g] as const)),
    binaries: binariesByName(built),
    index: new PolicyIndex(entries),
  });
  return { ok: true, snapshot };
}

/** Version → entry pairs of binary `b` (what a binary's versions map holds once read). */
const versionsOf = (entries: SnapshotEntries, b: number): [string, PolicyEntry][] => entries.versionsOf(b);

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

/** The binaries by name, sorted (filled in place: no pair per binary). */
function binariesByName(built: BinaryPolicy[]): FrozenMap<string, BinaryPolicy> {
  const map = FrozenMap.open<string, BinaryPolicy>();
  for (const b of built.sort((x, y) => compareStrings(x.name, y.name))) map.put(b.name, b);
  return map.seal();
}
