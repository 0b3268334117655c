// What a policy change does, for review: the list a pull-request comment shows ("approves
// hello 1.2, supersedes 1.1, lets group build run it"). Compares resolved snapshots, so a
// group edit shows up on every binary whose VMs it changes. Order is deterministic: groups by
// name, then binaries by name; in a binary, its own settings, then versions in file order.
import { compareStrings } from './errors.js';
import { formatLimitValue, LIMIT_KEY_ORDER, limitValue } from './limits.js';
import { formatInterpreter, formatMember } from './names.js';
import type { BinaryPolicy, GroupPolicy, PolicySnapshot, PolicyEntry, VmScope } from './types.js';

export type ChangeKind =
  | 'group-added'
  | 'group-removed'
  | 'group-changed'
  | 'binary-added'
  | 'binary-removed'
  | 'interpreter-changed'
  | 'limits-changed'
  | 're-scoped'
  | 'approved'
  | 'version-added'
  | 'superseded'
  | 'revoked'
  | 'reinstated'
  | 'measurements-changed'
  | 'version-removed';

export interface PolicyChange {
  readonly kind: ChangeKind;
  readonly subject: 'group' | 'binary';
  /** Group or binary name. */
  readonly name: string;
  readonly version?: string;
  /** One English line, e.g. "hello 1.2 superseded by 1.3 (was approved)". */
  readonly description: string;
  /** What was added / removed: VMs (vm:…, uuid:…, or all), group members, or measurements. */
  readonly added?: readonly string[];
  readonly removed?: readonly string[];
  /** Where to look in the new policy (or the old one, for removals). */
  readonly file: string;
  readonly line: number;
}

/** The changes from `before` (undefined: an empty policy) to `after`. */
export function diffSnapshots(before: PolicySnapshot | undefined, after: PolicySnapshot): PolicyChange[] {
  const changes: PolicyChange[] = [];
  const groupNames = sortedUnion(before?.groups.keys() ?? [], after.groups.keys());
  for (const name of groupNames) diffGroup(before?.groups.get(name), after.groups.get(name), changes);
  const binaryNames = sortedUnion(before?.binaries.keys() ?? [], after.binaries.keys());
  for (const name of binaryNames) diffBinary(before?.binaries.get(name), after.binaries.get(name), changes);
  return changes;
}

function diffGroup(old: GroupPolicy | undefined, now: GroupPolicy | undefined, out: PolicyChange[]): void {
  const at = (g: GroupPolicy) => ({ subject: 'group' as const, file: g.file, line: g.line });
  if (old === undefined && now !== undefined) {
    const members = now.members.map(formatMember);
    out.push({ kind: 'group-added', name: now.name, ...at(now), added: members, description: `new group ${now.name}: ${members.join(', ')}` });
  } else if (old !== undefined && now === undefined) {
    out.push({ kind: 'group-removed', name: old.name, ...at(old), removed: old.members.map(formatMember), description: `group ${old.name} removed` });
  } else if (old !== undefined && now !== undefined) {
    const { added, removed } = setDiff(old.members.map(formatMember), now.members.map(formatMember));
    if (added.length + removed.length === 0) return;
    out.push({ kind: 'group-changed', name: now.name, ...at(now), added, removed, description: `group ${now.name}: ${addedRemoved(added, removed)}` });
  }
}

function diffBinary(old: BinaryPolicy | undefined, now: BinaryPolicy | undefined, out: PolicyChange[]): void {
  if (now === undefined) {
    if (old === undefined) return;
    const n = old.versions.size;
    out.push({ kind: 'binary-removed', subject: 'binary', name: old.name, file: old.file, line: old.line, description: `binary ${old.name} removed with its ${n} version${n === 1 ? '' : 's'} (their history is lost)` });
    return;
  }
  const at = { subject: 'binary' as const, name: now.name, file: now.file };
  if (old === undefined) {
    const vms = now.vms.length === 0 ? 'no VM yet' : now.vms.join(', ');
    out.push({ kind: 'binary-added', ...at, line: now.line, description: `new binary ${now.name} in ${now.file}, for ${vms}; ${describeSettings(now)}` });
  } else {
    diffSettings(old, now, out);
  }
  for (const v of now.versions.values()) diffVersion(now, old?.versions.get(v.version), v, out);
  if (old === undefined) return;
  for (const v of old.versions.values()) {
    if (now.versions.has(v.version)) continue;
    out.push({ kind: 'version-removed', ...at, line: now.line, version: v.version, removed: v.measurements, description: `${now.name} ${v.version} removed from the policy (its history is lost)` });
  }
}

function describeSettings(b: BinaryPolicy): string {
  const limits = LIMIT_KEY_ORDER.map((k) => `${k}=${formatLimitValue(k, limitValue(b.limits, k))}`).join(' ');
  return `interpreter ${formatInterpreter(b.interpreter)}, limits ${limits}`;
}

function diffSettings(old: BinaryPolicy, now: BinaryPolicy, out: PolicyChange[]): void {
  const at = { subject: 'binary' as const, name: now.name, file: now.file, line: now.line };
  const oldInterp = formatInterpreter(old.interpreter);
  const newInterp = formatInterpreter(now.interpreter);
  if (oldInterp !== newInterp) out.push({ kind: 'interpreter-changed', ...at, description: `${now.name}: interpreter ${oldInterp} → ${newInterp}` });
  const limits = LIMIT_KEY_ORDER.filter((k) => limitValue(old.limits, k) !== limitValue(now.limits, k)).map(
    (k) => `${k} ${formatLimitValue(k, limitValue(old.limits, k))} → ${formatLimitValue(k, limitValue(now.limits, k))}`,
  );
  if (limits.length > 0) out.push({ kind: 'limits-changed', ...at, description: `${now.name}: limits ${limits.join(', ')}` });
  const { added, removed } = setDiff(scopeItems(old.scope), scopeItems(now.scope));
  if (added.length + removed.length > 0) out.push({ kind: 're-scoped', ...at, added, removed, description: describeRescope(now.name, old.scope, now.scope, added, removed) });
}

function describeRescope(name: string, old: VmScope, now: VmScope, added: string[], removed: string[]): string {
  if (now.allVms) return `${name} may now run on every VM`;
  const rest = scopeItems(now);
  if (old.allVms) return `${name} no longer runs on every VM; now only on ${rest.length === 0 ? 'no VM' : rest.join(', ')}`;
  const parts: string[] = [];
  if (added.length > 0) parts.push(`may now also run on ${added.join(', ')}`);
  if (removed.length > 0) parts.push(`no longer on ${removed.join(', ')}`);
  return `${name} ${parts.join('; ')}`;
}

function diffVersion(b: BinaryPolicy, old: PolicyEntry | undefined, now: PolicyEntry, out: PolicyChange[]): void {
  const what = `${b.name} ${now.version}`;
  const at = { subject: 'binary' as const, name: b.name, version: now.version, file: b.file, line: now.line };
  if (old === undefined) {
    if (now.status === 'approved') out.push({ kind: 'approved', ...at, added: now.measurements, description: `${what} approved: ${now.measurements.join(', ')}` });
    else out.push({ kind: 'version-added', ...at, added: now.measurements, description: `${what} recorded as ${describeStatus(now)} (not runnable)` });
    return;
  }
  const oldStatus = describeStatus(old);
  const newStatus = describeStatus(now);
  if (oldStatus !== newStatus) {
    if (now.status === 'approved') out.push({ kind: 'reinstated', ...at, description: `${what} approved again (was ${oldStatus})` });
    else if (now.status === 'superseded') out.push({ kind: 'superseded', ...at, description: `${what} ${newStatus} (was ${oldStatus})` });
    else out.push({ kind: 'revoked', ...at, description: `${what} ${newStatus} (was ${oldStatus})` });
  }
  const { added, removed } = setDiff(old.measurements, now.measurements);
  if (added.length + removed.length > 0) out.push({ kind: 'measurements-changed', ...at, added, removed, description: `${what} measurements: ${addedRemoved(added, removed)}` });
}

function describeStatus(v: PolicyEntry): string {
  if (v.status === 'superseded') return `superseded by ${v.supersededBy ?? '?'}`;
  if (v.status === 'revoked') return `revoked: ${v.reason ?? ''}`;
  return 'approved';
}

/** The VMs of a scope as sorted items: ['all'] or vm:… then uuid:… entries. */
function scopeItems(scope: VmScope): string[] {
  if (scope.allVms) return ['all'];
  return [...[...scope.names].map((n) => `vm:${n}`).sort(compareStrings), ...[...scope.uuids].map((u) => `uuid:${u}`).sort(compareStrings)];
}

function setDiff(old: readonly string[], now: readonly string[]): { added: string[]; removed: string[] } {
  const o = new Set(old);
  const n = new Set(now);
  return { added: now.filter((x) => !o.has(x)), removed: old.filter((x) => !n.has(x)) };
}

function addedRemoved(added: readonly string[], removed: readonly string[]): string {
  const parts: string[] = [];
  if (added.length > 0) parts.push(`added ${added.join(', ')}`);
  if (removed.length > 0) parts.push(`removed ${removed.join(', ')}`);
  return parts.join('; ');
}

function sortedUnion(a: Iterable<string>, b: Iterable<string>): string[] {
  return [...new Set([...a, ...b])].sort(compareStrings);
}
