// `virt-offload policy list`: one line per version of every binary (name, version, status
// with by= or reason, first measurement), or one JSON object per version with --json.
import { PolicyError, type PolicyEntry, type PolicySnapshot } from '../../../lib/policy/index.js';
import { loadPolicySnapshot } from '../../../lib/policy/loader.js';
import { EXIT, reportFailure } from '../../exit.js';

export async function runPolicyList(opts: Record<string, unknown>): Promise<number> {
  const repo = typeof opts.repo === 'string' ? opts.repo : '.';
  const snapshot = loadForReading(repo);
  if (typeof snapshot === 'number') return snapshot;
  const rows: string[][] = [];
  for (const b of snapshot.binaries.values()) {
    for (const v of b.versions.values()) {
      if (opts.json === true) process.stdout.write(`${JSON.stringify(entryJson(v))}\n`);
      else rows.push([v.name, v.version, statusText(v), v.measurements[0]! + (v.measurements.length > 1 ? ` (+${v.measurements.length - 1})` : '')]);
    }
  }
  if (opts.json !== true) process.stdout.write(columns(rows));
  return EXIT.ok;
}

/** Load the work tree's snapshot, or print its errors and return the exit code. */
export function loadForReading(repo: string): PolicySnapshot | number {
  try {
    return loadPolicySnapshot(repo);
  } catch (err) {
    if (err instanceof PolicyError && err.errors.length > 0) {
      for (const e of err.errors) process.stderr.write(`${e.message}\n`);
      process.stderr.write(`virt-offload: ${err.summary} (run \`virt-offload policy check\`)\n`);
      return EXIT.failed;
    }
    return reportFailure(err);
  }
}

/** `approved`, `superseded by=1.3`, `revoked reason="…"` (the file's own spelling). */
export function statusText(v: PolicyEntry): string {
  if (v.status === 'superseded') return `superseded by=${v.supersededBy ?? '?'}`;
  if (v.status === 'revoked') return `revoked reason=${JSON.stringify(v.reason ?? '')}`;
  return 'approved';
}

export function entryJson(v: PolicyEntry): Record<string, unknown> {
  return {
    name: v.name,
    version: v.version,
    status: v.status,
    ...(v.supersededBy === undefined ? {} : { supersededBy: v.supersededBy, replacement: v.replacement ?? null }),
    ...(v.reason === undefined ? {} : { reason: v.reason }),
    measurements: v.measurements,
    file: v.file,
    line: v.line,
  };
}

/** Text from the command line or the files, made safe to print on one terminal line. */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function columns(rows: readonly string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((r) => `${r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')}\n`).join('');
}
