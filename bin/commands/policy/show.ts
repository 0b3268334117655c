// `virt-offload policy show NAME`: everything the policy says about one binary: where it is
// defined, interpreter, limits, VMs (as written and expanded), every version with its
// status and all its measurements.
import { formatInterpreter, formatLimitValue, LIMIT_KEY_ORDER, limitValue, type BinaryPolicy, type Limits, type PolicySnapshot, type VmScope } from '../../../lib/policy/index.js';
import { EXIT } from '../../exit.js';
import { entryJson, loadForReading, printable, statusText } from './list.js';

export async function runPolicyShow(name: string, opts: Record<string, unknown>): Promise<number> {
  const repo = typeof opts.repo === 'string' ? opts.repo : '.';
  const snapshot = loadForReading(repo);
  if (typeof snapshot === 'number') return snapshot;
  const b = snapshot.binaries.get(name);
  if (b === undefined) {
    const close = closeNames(name, [...snapshot.binaries.keys()]);
    process.stderr.write(`virt-offload: no binary named '${printable(name)}' in the policy${close.length > 0 ? `; did you mean: ${close.join(', ')}?` : snapshot.binaries.size === 0 ? ' (it lists no binaries)' : ''}\n`);
    return EXIT.failed;
  }
  process.stdout.write(opts.json === true ? `${JSON.stringify(showJson(b, snapshot))}\n` : showText(b, snapshot));
  return EXIT.ok;
}

function limitsText(limits: Limits): string {
  return LIMIT_KEY_ORDER.map((k) => `${k}=${formatLimitValue(k, limitValue(limits, k))}`).join(' ');
}

function scopeItems(scope: VmScope): string[] {
  if (scope.allVms) return ['all'];
  return [...[...scope.names].sort().map((n) => `vm:${n}`), ...[...scope.uuids].sort().map((u) => `uuid:${u}`)];
}

function showText(b: BinaryPolicy, s: PolicySnapshot): string {
  const vms = b.vms.length === 0 ? 'none (no VM may run it)' : b.vms.join(' ');
  const expanded = scopeItems(b.scope);
  const lines = [
    `binary ${b.name}  (${b.file}:${b.line}${s.commit === undefined ? '' : `, commit ${s.commit.slice(0, 12)}`})`,
    `interpreter ${formatInterpreter(b.interpreter)}`,
    `limits ${limitsText(b.limits)}`,
    `vms ${vms}`,
  ];
  if (b.vms.some((v) => v.startsWith('group:'))) lines.push(`  which is: ${expanded.length === 0 ? 'no VM' : expanded.join(' ')}`);
  lines.push(`versions (${b.versions.size}):`);
  for (const v of b.versions.values()) {
    const end = v.status === 'superseded' ? (v.replacement === undefined ? ' (no approved replacement)' : v.replacement !== v.supersededBy ? ` (now ${v.replacement})` : '') : '';
    lines.push(`  ${v.version}  ${statusText(v)}${end}  (line ${v.line})`);
    for (const m of v.measurements) lines.push(`    ${m}`);
  }
  return `${lines.join('\n')}\n`;
}

function showJson(b: BinaryPolicy, s: PolicySnapshot): Record<string, unknown> {
  const limits: Record<string, string> = {};
  for (const k of LIMIT_KEY_ORDER) limits[k] = formatLimitValue(k, limitValue(b.limits, k));
  return {
    name: b.name,
    file: b.file,
    line: b.line,
    commit: s.commit ?? null,
    interpreter: formatInterpreter(b.interpreter),
    limits,
    vms: b.vms,
    scope: scopeItems(b.scope),
    versions: [...b.versions.values()].map(entryJson),
  };
}

/** Names within a small edit distance of `name`, or sharing a prefix/substring, best first (at most 5). */
export function closeNames(name: string, names: readonly string[]): string[] {
  const scored = names
    .map((n) => ({ n, d: n.includes(name) || name.includes(n) ? 0.5 : distance(name, n) }))
    .filter(({ n, d }) => d <= Math.max(2, Math.floor(Math.min(name.length, n.length) / 3)))
    .sort((a, b) => a.d - b.d || (a.n < b.n ? -1 : 1));
  return scored.slice(0, 5).map((x) => x.n);
}

/** Levenshtein distance (names are at most 64 characters; the CLI's argument is capped below). */
function distance(a: string, b: string): number {
  if (a.length > 256 || b.length > 256) return Infinity;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}
