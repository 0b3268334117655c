// Read-only Map and Set for the snapshot. Object.freeze does not stop Map#set, so these
// subclasses refuse every mutation with a TypeError, as a frozen object does in strict mode.
// They stay real Maps and Sets (instanceof, iteration, structural equality in tests).

const refuse = (): never => {
  throw new TypeError('Cannot change a frozen policy map or set');
};

export class FrozenMap<K, V> extends Map<K, V> {
  #open = false;
  /** For a lazy map: what fills it on first read (then undefined). */
  #pending: ((source: unknown, index: number) => Iterable<readonly [K, V]>) | undefined;

  constructor(entries: Iterable<readonly [K, V]> = []) {
    super();
    for (const [k, v] of entries) super.set(k, v);
    Object.freeze(this);
  }

  /**
   * A map still being filled (with put) until seal(). Lets a builder fill a 100k-entry index
   * in place instead of copying a finished Map.
   */
  static open<K, V>(): FrozenMap<K, V> {
    const map = new FrozenMap<K, V>();
    map.#open = true;
    return map;
  }

  /**
   * A map whose entries `fill` gives on its first read: a snapshot holds a map per binary that
   * the daemon never reads (it decides through the index), so most are never made. Reads see
   * the same entries, in the same order, as if it had been filled at once.
   */
  static lazy<K, V>(fill: () => Iterable<readonly [K, V]>): FrozenMap<K, V> {
    const map = new FrozenMap<K, V>();
    map.#pending = fill;
    return map;
  }

  /**
   * lazy(() => fill(source, index)) without a closure per map (a snapshot makes one map per
   * binary: 10k closures and their contexts were kept for nothing).
   */
  static lazyFrom<K, V, S>(fill: (source: S, index: number) => Iterable<readonly [K, V]>, source: S, index: number): FrozenMap<K, V> {
    const map = new FrozenMap<K, V>();
    map.#pending = fill as (source: unknown, index: number) => Iterable<readonly [K, V]>;
    map.#source = source;
    map.#index = index;
    return map;
  }

  #source: unknown;
  #index = 0;

  #fill(): void {
    const fill = this.#pending;
    if (fill === undefined) return;
    this.#pending = undefined;
    const source = this.#source;
    this.#source = undefined;
    for (const [k, v] of fill(source, this.#index)) super.set(k, v);
  }

  put(key: K, value: V): void {
    if (!this.#open) refuse();
    super.set(key, value);
  }

  seal(): this {
    this.#open = false;
    return this;
  }

  override get(key: K): V | undefined {
    if (this.#pending !== undefined) this.#fill();
    return super.get(key);
  }
  override has(key: K): boolean {
    if (this.#pending !== undefined) this.#fill();
    return super.has(key);
  }
  override get size(): number {
    if (this.#pending !== undefined) this.#fill();
    return super.size;
  }
  override keys(): MapIterator<K> {
    if (this.#pending !== undefined) this.#fill();
    return super.keys();
  }
  override values(): MapIterator<V> {
    if (this.#pending !== undefined) this.#fill();
    return super.values();
  }
  override entries(): MapIterator<[K, V]> {
    if (this.#pending !== undefined) this.#fill();
    return super.entries();
  }
  override [Symbol.iterator](): MapIterator<[K, V]> {
    if (this.#pending !== undefined) this.#fill();
    return super[Symbol.iterator]();
  }
  override forEach(callback: (value: V, key: K, map: Map<K, V>) => void, thisArg?: unknown): void {
    if (this.#pending !== undefined) this.#fill();
    super.forEach(callback, thisArg);
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
  /** JSON.stringify writes a Map as {}; write its entries as an object instead. */
  toJSON(): Record<string, V> {
    return Object.fromEntries([...this].map(([k, v]) => [String(k), v]));
  }
}

export class FrozenSet<T> extends Set<T> {
  #open = false;

  constructor(values: Iterable<T> = []) {
    super();
    for (const v of values) super.add(v);
    Object.freeze(this);
  }

  /** A set still being filled (with put) until seal(), like FrozenMap.open. */
  static open<T>(): FrozenSet<T> {
    const set = new FrozenSet<T>();
    set.#open = true;
    return set;
  }

  put(value: T): void {
    if (!this.#open) refuse();
    super.add(value);
  }

  seal(): this {
    this.#open = false;
    return this;
  }
  override add(): never {
    return refuse();
  }
  override delete(): never {
    return refuse();
  }
  override clear(): never {
    return refuse();
  }
  toJSON(): T[] {
    return [...this];
  }
}
