// Shared by the `store` subcommands: the --store option and plain columns.
import { DEFAULT_STORE, openStore, type Store } from '../../../lib/store/index.js';

export function storeOption(opts: Record<string, unknown>): string {
  return typeof opts.store === 'string' ? opts.store : DEFAULT_STORE;
}

/** Open the store for reading (never creates it: a missing store is reported, not made). */
export function openExistingStore(opts: Record<string, unknown>): Store {
  return openStore(storeOption(opts));
}

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function columns(rows: readonly string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((r) => `${r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')}\n`).join('');
}
