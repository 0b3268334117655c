// `virt-offload audit`: read the audit log, filter, print as a table or JSON lines.
import { UsageError } from '../../lib/errors.js';
import { filterAudit, readAuditLog, type AuditFilter } from '../../lib/audit/index.js';
import { EXIT, reportFailure } from '../exit.js';

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

export async function runAudit(opts: Record<string, unknown>): Promise<number> {
  try {
    const path = str(opts.auditLog)!;
    const filter: AuditFilter = {};
    for (const key of ['decision', 'action', 'measurement', 'vm', 'since'] as const) {
      const value = str(opts[key]);
      if (value !== undefined) filter[key] = value;
    }
    // A value no record can have would print nothing and look like "no such records".
    const choices = { decision: ['allow', 'deny', 'error'], action: ['install', 'uninstall', 'install-failed', 'uninstall-failed', 'recover'] } as const;
    for (const key of ['decision', 'action'] as const) {
      const value = filter[key];
      if (value !== undefined && !(choices[key] as readonly string[]).includes(value)) throw new UsageError(`--${key} ${value}: expected ${choices[key].join(', ')}`, `--${key}`);
    }
    if (filter.since !== undefined && Number.isNaN(Date.parse(filter.since))) {
      throw new UsageError(`--since ${filter.since}: not an ISO time (e.g. 2026-11-23T00:00:00Z)`, '--since');
    }
    if (filter.since !== undefined) filter.since = new Date(filter.since).toISOString();
    let last: number | undefined;
    if (opts.last !== undefined) {
      last = Number(opts.last);
      if (!Number.isSafeInteger(last) || last <= 0) throw new UsageError(`--last ${String(opts.last)}: expected a positive whole number`, '--last');
    }
    const { records, bad } = readAuditLog(path);
    for (const b of bad) process.stderr.write(`virt-offload: ${path}:${b.line}: ${b.problem}\n`);
    let shown = filterAudit(records, filter);
    if (last !== undefined) shown = shown.slice(-last);
    for (const r of shown) process.stdout.write(opts.json === true ? `${JSON.stringify(r)}\n` : `${describe(r)}\n`);
    return bad.length > 0 ? EXIT.failed : EXIT.ok;
  } catch (err) {
    return reportFailure(err);
  }
}

// One line a record: time, then what happened, then the remaining fields as key=value.
function describe(r: Record<string, unknown>): string {
  const { time, decision, action, ...rest } = r;
  const what = decision ?? action ?? '-';
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v)}`);
  return [String(time ?? '-'), String(what), ...fields].join(' ');
}
