// Rebuilding a snapshot after a change to a few files: every file whose text (or, when the
// loader knows it, git blob id) is the same as at the last build keeps its compiled form, so
// only changed files are parsed again. What spans files (groups, scopes, repeats of a
// measurement across files) is checked from scratch on every build, exactly as buildSnapshot
// does: the result is the snapshot (or the errors) buildSnapshot gives for the same files.
import type { CompiledFile } from './compiled.js';
import { assembleSnapshot, compileFile, compileSources, type SnapshotResult } from './snapshot.js';
import type { PolicySource, SnapshotMeta } from './types.js';

interface Cached {
  /** The blob id the source had, if any; else its text (kept only to compare). */
  readonly id: string | undefined;
  readonly text: string | undefined;
  readonly compiled: CompiledFile;
}

/** Whether `hit` was compiled from what `source` holds: same id when it has one, else same text. */
function same(hit: Cached, source: PolicySource): boolean {
  return source.id !== undefined ? hit.id === source.id : hit.id === undefined && hit.text === source.text;
}

/** Statistics of the last build, for logs and tests. */
export interface IncrementalStats {
  readonly files: number;
  /** Files parsed and compiled by this build (new or changed). */
  readonly compiled: number;
  /** Files whose compiled form was reused. */
  readonly reused: number;
}

/**
 * Builds snapshots like buildSnapshot, remembering each file's compiled form between builds.
 * One per policy repository (paths are its keys). Holds the texts of files given without an
 * id, to compare them (the size of the repository's text).
 */
export class IncrementalSnapshots {
  private cache = new Map<string, Cached>();
  /** Files compiled since the cache was last emptied. */
  private compiledSinceReset = 0;
  private last: IncrementalStats = { files: 0, compiled: 0, reused: 0 };

  /** The snapshot of `files` (or every error), as buildSnapshot(files, meta) gives it. */
  build(files: readonly PolicySource[], meta: SnapshotMeta = {}): SnapshotResult {
    // Compiled files share large slabs; a slab lives while any file in it does. Once as many
    // files were recompiled as the repository has, start afresh, so the slabs kept alive by
    // a few unchanged files stay within a constant factor of the live data (amortized: one
    // full compile per `files.length` recompiles).
    if (this.compiledSinceReset > files.length) {
      this.cache = new Map();
      this.compiledSinceReset = 0;
    }
    const previous = this.cache;
    const next = new Map<string, Cached>();
    let compiled = 0;
    const list = compileSources(files, (source) => {
      const hit = previous.get(source.path);
      if (hit !== undefined && same(hit, source)) {
        next.set(source.path, hit);
        return hit.compiled;
      }
      compiled++;
      const c = compileFile(source.path, source.text);
      next.set(source.path, source.id !== undefined ? { id: source.id, text: undefined, compiled: c } : { id: undefined, text: source.text, compiled: c });
      return c;
    });
    this.cache = next;
    // A build that reused nothing compiled everything afresh: the budget counts from there.
    this.compiledSinceReset = compiled === list.length ? 0 : this.compiledSinceReset + compiled;
    this.last = { files: list.length, compiled, reused: list.length - compiled };
    return assembleSnapshot(list, meta);
  }

  /** What the last build did. */
  get stats(): IncrementalStats {
    return this.last;
  }

  /** Forget every file (the next build compiles all). */
  clear(): void {
    this.cache = new Map();
    this.compiledSinceReset = 0;
  }
}
