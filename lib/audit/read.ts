// Reading the audit log back for `virt-offload audit`: every complete line that parses as a
// JSON object is a record; anything else (a line torn by a crash, an edit by hand) is
// reported with its line number instead of being silently skipped.
import { readFileSync } from 'node:fs';
import { fileError } from '../io/index.js';

export interface ReadAuditResult {
  readonly records: readonly Record<string, unknown>[];
  /** Lines that are not JSON objects: 1-based line number and why. */
  readonly bad: readonly { line: number; problem: string }[];
}

export function readAuditLog(path: string): ReadAuditResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw fileError(path, 'cannot read the audit log', err);
  }
  const records: Record<string, unknown>[] = [];
  const bad: { line: number; problem: string }[] = [];
  const lines = text.split('\n');
  // A final empty string after the last newline is not a line.
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, i) => {
    if (raw === '') return;
    try {
      const value: unknown = JSON.parse(raw);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) bad.push({ line: i + 1, problem: 'not a JSON object' });
      else records.push(value as Record<string, unknown>);
    } catch {
      bad.push({ line: i + 1, problem: 'not valid JSON (torn by a crash?)' });
    }
  });
  return { records, bad };
}

export interface AuditFilter {
  decision?: string;
  measurement?: string;
  vm?: string;
  action?: string;
  /** ISO time: records at or after it. */
  since?: string;
}

/** Records matching every given field (exact match; `since` compares ISO times). */
export function filterAudit(records: readonly Record<string, unknown>[], filter: AuditFilter): Record<string, unknown>[] {
  return records.filter(
    (r) =>
      (filter.decision === undefined || r.decision === filter.decision) &&
      (filter.measurement === undefined || r.measurement === filter.measurement) &&
      (filter.vm === undefined || r.vm === filter.vm) &&
      (filter.action === undefined || r.action === filter.action) &&
      (filter.since === undefined || (typeof r.time === 'string' && r.time >= filter.since)),
  );
}
