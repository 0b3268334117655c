// Shared by the policy tests: deterministic fake measurements and a strict snapshot builder.
import { buildSnapshot, type PolicySnapshot, type PolicySource } from '../../lib/policy/index.js';

/** A well-formed sha256 measurement made from a small number (not the digest of anything). */
export function m(n: number, algo: 'sha256' | 'blake3' = 'sha256'): string {
  return `${algo}:${n.toString(16).padStart(64, '0')}`;
}

/** Build a snapshot from `{path: text}` or fail the test with every error. */
export function snap(files: Record<string, string>, meta = {}): PolicySnapshot {
  const result = buildSnapshot(sources(files), meta);
  if (!result.ok) throw new Error(`expected a snapshot, got:\n${result.errors.map((e) => e.message).join('\n')}`);
  return result.snapshot;
}

export function sources(files: Record<string, string>): PolicySource[] {
  return Object.entries(files).map(([path, text]) => ({ path, text }));
}

/** Error messages of a failed build (file:line: detail). */
export function buildErrors(files: Record<string, string>): string[] {
  const result = buildSnapshot(sources(files));
  if (result.ok) throw new Error('expected errors, got a snapshot');
  return result.errors.map((e) => e.message);
}

export const lines = (...ls: string[]): string => `${ls.join('\n')}\n`;
