// Builds a CanonicalPlan while walking the input front to back, so that the explanation
// always tiles the file exactly once and the pieces can never disagree with it.
import { InternalError, type BinaryFormat } from '../errors.js';
import type { CanonicalPlan, Disposition, ExplainedRange, Piece, Profile } from './types.js';

export class PlanBuilder {
  private cursor = 0;
  private canonicalSize = 0;
  private readonly pieces: Piece[] = [];
  private readonly ranges: ExplainedRange[] = [];
  readonly details: Record<string, string | number> = {};

  constructor(
    readonly format: BinaryFormat,
    readonly profile: Profile,
    readonly fileSize: number,
  ) {}

  /** Where the next range starts. */
  get position(): number {
    return this.cursor;
  }

  /** Copy input bytes [position, end) into the canonical image unchanged. */
  keep(end: number, reason: string): this {
    const start = this.advance(end, 'kept', reason);
    this.pushFile(start, end - start);
    return this;
  }

  /** Put (end - position) zero bytes in place of input bytes [position, end). */
  zero(end: number, reason: string): this {
    const start = this.advance(end, 'zeroed', reason);
    this.pushZero(end - start);
    return this;
  }

  /** Leave input bytes [position, end) out of the canonical image. */
  drop(end: number, reason: string): this {
    this.advance(end, 'dropped', reason);
    return this;
  }

  /** Replace input bytes [position, end) by `data` (which may differ in length). */
  rewrite(end: number, data: Uint8Array, reason: string): this {
    this.advance(end, 'rewritten', reason);
    if (data.length > 0) {
      this.pieces.push({ kind: 'bytes', data });
      this.canonicalSize += data.length;
    }
    return this;
  }

  finish(): CanonicalPlan {
    if (this.cursor !== this.fileSize) {
      throw new InternalError(`${this.format} plan covers ${this.cursor} of ${this.fileSize} bytes`);
    }
    return {
      format: this.format,
      profile: this.profile,
      fileSize: this.fileSize,
      canonicalSize: this.canonicalSize,
      pieces: this.pieces,
      ranges: this.ranges,
      details: this.details,
    };
  }

  private advance(end: number, disposition: Disposition, reason: string): number {
    const start = this.cursor;
    if (!Number.isSafeInteger(end) || end < start || end > this.fileSize) {
      throw new InternalError(`${this.format} plan: range ${start}..${end} out of order or past ${this.fileSize}`);
    }
    if (end === start) return start;
    const last = this.ranges[this.ranges.length - 1];
    if (last !== undefined && last.disposition === disposition && last.reason === reason && disposition !== 'rewritten') {
      this.ranges[this.ranges.length - 1] = { ...last, end };
    } else {
      this.ranges.push({ start, end, disposition, reason });
    }
    this.cursor = end;
    return start;
  }

  private pushFile(offset: number, length: number): void {
    if (length === 0) return;
    const last = this.pieces[this.pieces.length - 1];
    if (last?.kind === 'file' && last.offset + last.length === offset) {
      this.pieces[this.pieces.length - 1] = { kind: 'file', offset: last.offset, length: last.length + length };
    } else {
      this.pieces.push({ kind: 'file', offset, length });
    }
    this.canonicalSize += length;
  }

  private pushZero(length: number): void {
    if (length === 0) return;
    const last = this.pieces[this.pieces.length - 1];
    if (last?.kind === 'zero') {
      this.pieces[this.pieces.length - 1] = { kind: 'zero', length: last.length + length };
    } else {
      this.pieces.push({ kind: 'zero', length });
    }
    this.canonicalSize += length;
  }
}

/** A labelled byte range [start, end) of the input. */
export interface LabeledRange {
  readonly start: number;
  readonly end: number;
  readonly label: string;
}

/**
 * The shape ELF and PE share: a prefix of the file [0, prefixEnd) is the canonical image.
 * Inside it, bytes under a `zeroed` range become zero, bytes under a `covered` range are
 * kept, and bytes under neither become zero (`gapReason`). Everything from prefixEnd on is
 * dropped (`tailReason`). Ranges may overlap; the labels of all covering ranges explain a byte.
 */
export function sweepPrefixLayout(
  builder: PlanBuilder,
  layout: {
    prefixEnd: number;
    covered: readonly LabeledRange[];
    zeroed: readonly LabeledRange[];
    gapReason: string;
    tailReason: string;
  },
): void {
  const { prefixEnd } = layout;
  type Event = { at: number; open: boolean; zero: boolean; id: number; label: string };
  const events: Event[] = [];
  const add = (ranges: readonly LabeledRange[], zero: boolean, base: number) =>
    ranges.forEach((r, i) => {
      const start = Math.min(r.start, prefixEnd);
      const end = Math.min(r.end, prefixEnd);
      if (end <= start) return;
      events.push({ at: start, open: true, zero, id: base + i, label: r.label });
      events.push({ at: end, open: false, zero, id: base + i, label: r.label });
    });
  add(layout.covered, false, 0);
  add(layout.zeroed, true, layout.covered.length);
  events.sort((a, b) => a.at - b.at);

  const activeCovered = new Map<number, string>();
  const activeZeroed = new Map<number, string>();
  let i = 0;
  let pos = 0;
  while (pos < prefixEnd) {
    while (i < events.length && events[i]!.at <= pos) {
      const e = events[i++]!;
      const set = e.zero ? activeZeroed : activeCovered;
      if (e.open) set.set(e.id, e.label);
      else set.delete(e.id);
    }
    const next = i < events.length ? Math.min(events[i]!.at, prefixEnd) : prefixEnd;
    if (activeZeroed.size > 0) builder.zero(next, joinLabels(activeZeroed));
    else if (activeCovered.size > 0) builder.keep(next, joinLabels(activeCovered));
    else builder.zero(next, layout.gapReason);
    pos = next;
  }
  builder.drop(builder.fileSize, layout.tailReason);
}

// A hostile file can stack thousands of ranges on one byte: name a few, count the rest.
function joinLabels(active: Map<number, string>): string {
  const names: string[] = [];
  for (const label of active.values()) {
    if (names.length === 3) break;
    names.push(label);
  }
  const more = active.size - names.length;
  return more > 0 ? `${names.join(', ')} and ${more} more` : names.join(', ');
}
