// Human-readable `--explain` listing: every range of the input and what became of it.
import { hex } from '../errors.js';
import type { ExplainedRange } from './types.js';

const WORD: Record<ExplainedRange['disposition'], string> = {
  kept: 'keep   ',
  zeroed: 'zero   ',
  dropped: 'exclude',
  rewritten: 'rewrite',
};

/** One line per range: `keep    0x0-0x40      (64 bytes)  ELF header`. */
export function formatExplanation(ranges: readonly ExplainedRange[]): string[] {
  // A loop, not Math.max(...spread): a hostile file may have 100 000s of ranges.
  let width = 0;
  for (const r of ranges) width = Math.max(width, `${hex(r.start)}-${hex(r.end)}`.length);
  return ranges.map((r) => {
    const span = `${hex(r.start)}-${hex(r.end)}`.padEnd(width);
    const bytes = `(${r.end - r.start} bytes)`.padEnd(18);
    return `  ${WORD[r.disposition]} ${span}  ${bytes} ${r.reason}`;
  });
}
