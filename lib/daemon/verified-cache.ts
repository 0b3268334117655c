// The measured images of installed binaries the daemon ran lately, kept in memory.
//
// run() executes only bytes it holds after measuring them (lib/exec/verified.ts): either the
// store file read and hashed at that moment, or a VerifiedBinary the caller measured in its own
// memory. A repeated `submit --measurement` of the same binary re-read and re-hashed the same
// store file every time (0.3–0.8 ms of a ~5 ms run here). This cache keeps the canonical
// chunks that were hashed, keyed by their measurement: content-addressed, so an entry can
// never be wrong for its key, and whatever happens to the store file afterwards (rewritten,
// removed, reinstalled) has no effect on what an entry runs. Whether the binary may run, and
// whether it is still installed, is decided per request before the cache is asked (the policy
// decision, then locate() in the store), so an uninstalled binary is never run from here.
// Bounded by the bytes it holds; the least recently used entries go first.
import { loadInstalled, type ExecConfig, type VerifiedBinary } from '../exec/index.js';

/** Default bound on the bytes the cache holds. */
export const DEFAULT_VERIFIED_CACHE_BYTES = 32 * 1024 * 1024;

export class VerifiedCache {
  readonly maxBytes: number;
  readonly #entries = new Map<string, VerifiedBinary>();
  #bytes = 0;
  hits = 0;
  misses = 0;

  constructor(maxBytes = DEFAULT_VERIFIED_CACHE_BYTES) {
    this.maxBytes = maxBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * The measured image of the installed file at `path` whose measurement must be
   * `measurement`: from the cache, or read and measured now as run() would (loadInstalled:
   * refused when the file does not match). The result names `path`.
   */
  async load(path: string, measurement: string, config: ExecConfig = {}): Promise<VerifiedBinary> {
    const cached = this.#entries.get(measurement);
    if (cached !== undefined) {
      this.hits++;
      // Most recently used last: Map keeps insertion order.
      this.#entries.delete(measurement);
      this.#entries.set(measurement, cached);
      return cached.path === path ? cached : { ...cached, path };
    }
    this.misses++;
    const verified = await loadInstalled(path, measurement, config);
    this.remember(verified);
    return verified;
  }

  /** Keep an image measured elsewhere (an upload the daemon just hashed). */
  remember(verified: VerifiedBinary): void {
    if (held(verified) > this.maxBytes) return;
    // Re-inserted, so it is the most recently used.
    this.forget(verified.measurement);
    this.#entries.set(verified.measurement, verified);
    this.#bytes += held(verified);
    for (const [key, entry] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#entries.delete(key);
      this.#bytes -= held(entry);
    }
  }

  /** Forget one binary (uninstalled) or, without an argument, all. */
  forget(measurement?: string): void {
    if (measurement === undefined) {
      this.#entries.clear();
      this.#bytes = 0;
      return;
    }
    const old = this.#entries.get(measurement);
    if (old === undefined) return;
    this.#entries.delete(measurement);
    this.#bytes -= held(old);
  }
}

/** The memory an entry keeps alive: the buffers behind its chunks (their slack included), each once. */
function held(verified: VerifiedBinary): number {
  const buffers = new Set<ArrayBufferLike>();
  for (const chunk of verified.chunks) buffers.add(chunk.buffer);
  let bytes = 0;
  for (const buffer of buffers) bytes += buffer.byteLength;
  return Math.max(bytes, verified.size);
}
