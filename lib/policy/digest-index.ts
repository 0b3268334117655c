// A snapshot's index, measurement → entry, over the compiled files' packed digests and the
// keyed hashes compiled with them (see digestHash): an open-addressing table of measurement
// numbers (one Int32Array), and entries made on first read. Measurements are numbered in file
// order, binary by binary, as the files are sorted; a snapshot exists only when no
// measurement repeats, so its numbers run 0..size-1 (what iteration relies on).
import { decodeMeasurement, DIGEST_STRIDE, digestHash, encodeMeasurement, STATUS_OF_CODE, versionAt, type CompiledBinary } from './compiled.js';
import type { PolicyEntry } from './types.js';

const refuse = (): never => {
  throw new TypeError('Cannot change a frozen policy map or set');
};

function sameDigest(a: Uint8Array, at: number, b: Uint8Array, bt: number): boolean {
  for (let i = 0; i < DIGEST_STRIDE; i++) if (a[at + i] !== b[bt + i]) return false;
  return true;
}

/** Where a lookup's measurement is decoded (lookups are synchronous and never re-entered). */
const QUERY = new Uint8Array(DIGEST_STRIDE);

/** The measurements of a snapshot's binaries, in a hash table. */
export class DigestTable {
  /** Measurement number + 1 per slot; 0 is an empty slot. */
  private readonly slots: Int32Array;
  /**
   * The keyed hash of each slot's measurement: a probe compares digests only when the hashes
   * are equal (one 32-bit compare instead of finding the measurement's bytes, most probes).
   */
  private readonly hashes: Int32Array;
  private readonly shift: number;
  private readonly mask: number;
  /** Per measurement number: the index of its binary. */
  readonly binaryOf: Int32Array;
  /** Per binary: the number of its first measurement. */
  readonly measurementBase: Int32Array;
  /** Measurements in the table (a repeat is not added). */
  readonly size: number;

  /**
   * Numbers and adds every measurement of `binaries`, in order. A measurement seen before is
   * left out and reported with `onRepeat(binary, measurement, firstBinary, firstMeasurement)`
   * (local measurement indexes): the first listing stays.
   */
  constructor(private readonly binaries: readonly CompiledBinary[], onRepeat: (b: number, j: number, firstB: number, firstJ: number) => void) {
    let total = 0;
    this.measurementBase = new Int32Array(binaries.length);
    for (let b = 0; b < binaries.length; b++) {
      this.measurementBase[b] = total;
      total += binaries[b]!.measurementCount;
    }
    let bits = 4;
    while (1 << bits < 2 * total) bits++;
    this.slots = new Int32Array(1 << bits);
    this.hashes = new Int32Array(1 << bits);
    this.shift = 32 - bits;
    this.mask = (1 << bits) - 1;
    this.binaryOf = new Int32Array(total);
    const { slots, hashes: slotHashes, shift, mask } = this;
    let size = 0;
    for (let b = 0; b < binaries.length; b++) {
      const { digests, digestsAt, measurementCount, ints, intsAt, count } = binaries[b]!;
      const base = this.measurementBase[b]!;
      const hashes = intsAt + 5 * count + 1 + measurementCount;
      for (let j = 0; j < measurementCount; j++) {
        const at = digestsAt + j * DIGEST_STRIDE;
        this.binaryOf[base + j] = b;
        const h = ints[hashes + j]!;
        let s = h >>> shift;
        let found = -1;
        for (let k = slots[s]!; k !== 0; k = slots[s]!) {
          if (slotHashes[s] === h && this.sameAs(k - 1, digests, at)) {
            found = k - 1;
            break;
          }
          s = (s + 1) & mask;
        }
        if (found < 0) {
          slots[s] = base + j + 1;
          slotHashes[s] = h;
          size++;
        } else {
          const fb = this.binaryOf[found]!;
          onRepeat(b, j, fb, found - this.measurementBase[fb]!);
        }
      }
    }
    this.size = size;
  }

  private sameAs(k: number, bytes: Uint8Array, at: number): boolean {
    const b = this.binaryOf[k]!;
    const bin = this.binaries[b]!;
    return sameDigest(bin.digests, bin.digestsAt + (k - this.measurementBase[b]!) * DIGEST_STRIDE, bytes, at);
  }

  /** The number of `measurement` (a policy's spelling: lowercase hex), or -1 when it is not in the table. */
  find(measurement: string): number {
    if (!encodeMeasurement(measurement, QUERY, 0)) return -1;
    const { slots, hashes, mask } = this;
    const h = digestHash(QUERY, 0);
    for (let s = h >>> this.shift, k = slots[s]!; k !== 0; s = (s + 1) & mask, k = slots[s]!) {
      if (hashes[s] === h && this.sameAs(k - 1, QUERY, 0)) return k - 1;
    }
    return -1;
  }

  /** The text of measurement number `k`. */
  measurement(k: number): string {
    const b = this.binaryOf[k]!;
    const bin = this.binaries[b]!;
    return decodeMeasurement(bin.digests, bin.digestsAt + (k - this.measurementBase[b]!) * DIGEST_STRIDE);
  }
}

/** What every entry of one binary shares, resolved for one snapshot. */
export type BinaryShared = Pick<PolicyEntry, 'name' | 'file' | 'limits' | 'interpreter' | 'scope'>;

/**
 * The entries of a snapshot, each made (and frozen) the first time it is read and the same
 * object on every read after that: a daemon reads a handful of the 100k a repository holds.
 */
export class SnapshotEntries {
  private cache: (PolicyEntry | undefined)[] | undefined;
  private readonly entryBase: Int32Array;

  constructor(
    private readonly binaries: readonly CompiledBinary[],
    private readonly shared: readonly BinaryShared[],
    readonly table: DigestTable,
  ) {
    this.entryBase = new Int32Array(binaries.length + 1);
    for (let b = 0; b < binaries.length; b++) this.entryBase[b + 1] = this.entryBase[b]! + binaries[b]!.count;
  }

  /** The entry of measurement number `k`. */
  ofMeasurement(k: number): PolicyEntry {
    const b = this.table.binaryOf[k]!;
    const bin = this.binaries[b]!;
    return this.entry(b, bin.ints[bin.intsAt + 5 * bin.count + 1 + (k - this.table.measurementBase[b]!)]!);
  }

  /** Version `i` of binary `b`. */
  entry(b: number, i: number): PolicyEntry {
    const cache = (this.cache ??= new Array<PolicyEntry | undefined>(this.entryBase[this.binaries.length]!));
    const e = this.entryBase[b]! + i;
    return (cache[e] ??= makeEntry(this.binaries[b]!, this.shared[b]!, i));
  }

  /** Version → entry pairs of binary `b`, in file order. */
  versionsOf(b: number): [string, PolicyEntry][] {
    const bin = this.binaries[b]!;
    const pairs: [string, PolicyEntry][] = [];
    for (let i = 0; i < bin.count; i++) {
      const e = this.entry(b, i);
      pairs.push([e.version, e]);
    }
    return pairs;
  }
}

/** The frozen entry of version i. Built field by field, in the order the fields always had. */
function makeEntry(bin: CompiledBinary, s: BinaryShared, i: number): PolicyEntry {
  const { name, file, limits, interpreter, scope } = s;
  const { ints, intsAt, count } = bin;
  const version = versionAt(bin, i);
  const o = intsAt + 4 * i;
  const line = ints[o]!;
  const status = STATUS_OF_CODE[ints[o + 1]!]!;
  const list: string[] = [];
  for (let j = ints[intsAt + 4 * count + i]!; j < ints[intsAt + 4 * count + i + 1]!; j++) list.push(decodeMeasurement(bin.digests, bin.digestsAt + j * DIGEST_STRIDE));
  const measurements = Object.freeze(list);
  if (status === 'approved') return Object.freeze({ name, version, status, measurements, limits, interpreter, scope, file, line });
  if (status === 'revoked') return Object.freeze({ name, version, status, reason: bin.reasons?.[i], measurements, limits, interpreter, scope, file, line });
  const by = ints[o + 2]!;
  const end = ints[o + 3]!;
  const supersededBy = by < 0 ? undefined : versionAt(bin, by);
  if (end < 0) return Object.freeze({ name, version, status, supersededBy, measurements, limits, interpreter, scope, file, line });
  return Object.freeze({ name, version, status, supersededBy, replacement: versionAt(bin, end), measurements, limits, interpreter, scope, file, line });
}

/**
 * measurement → entry. A Map (instanceof, iteration in measurement order, JSON like the
 * other maps), read-only like FrozenMap; get/has/size answer from the table, and iteration
 * makes each key's text as it goes.
 */
export class PolicyIndex extends Map<string, PolicyEntry> {
  readonly #entries: SnapshotEntries;

  constructor(entries: SnapshotEntries) {
    super();
    this.#entries = entries;
    Object.freeze(this);
  }

  override get(key: string): PolicyEntry | undefined {
    if (typeof key !== 'string') return undefined;
    const k = this.#entries.table.find(key);
    return k < 0 ? undefined : this.#entries.ofMeasurement(k);
  }
  override has(key: string): boolean {
    return typeof key === 'string' && this.#entries.table.find(key) >= 0;
  }
  override get size(): number {
    return this.#entries.table.size;
  }
  override *entries(): MapIterator<[string, PolicyEntry]> {
    const n = this.#entries.table.size;
    for (let k = 0; k < n; k++) yield [this.#entries.table.measurement(k), this.#entries.ofMeasurement(k)];
    return undefined;
  }
  override *keys(): MapIterator<string> {
    const n = this.#entries.table.size;
    for (let k = 0; k < n; k++) yield this.#entries.table.measurement(k);
    return undefined;
  }
  override *values(): MapIterator<PolicyEntry> {
    const n = this.#entries.table.size;
    for (let k = 0; k < n; k++) yield this.#entries.ofMeasurement(k);
    return undefined;
  }
  override [Symbol.iterator](): MapIterator<[string, PolicyEntry]> {
    return this.entries();
  }
  override forEach(callback: (value: PolicyEntry, key: string, map: Map<string, PolicyEntry>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) callback.call(thisArg, v, k, this);
  }
  override set(): never {
    return refuse();
  }
  override delete(): never {
    return refuse();
  }
  override clear(): never {
    return refuse();
  }
  put(): never {
    return refuse();
  }
  /** JSON.stringify writes a Map as {}; write its entries as an object instead. */
  toJSON(): Record<string, PolicyEntry> {
    return Object.fromEntries(this.entries());
  }
}
