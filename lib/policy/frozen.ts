// Read-only Map and Set for the snapshot. Object.freeze does not stop Map#set, so these
// subclasses refuse every mutation with a TypeError, as a frozen object does in strict mode.
// They stay real Maps and Sets (instanceof, iteration, structural equality in tests).

const refuse = (): never => {
  throw new TypeError('Cannot change a frozen policy map or set');
};

export class FrozenMap<K, V> extends Map<K, V> {
  #open = false;

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

  put(key: K, value: V): void {
    if (!this.#open) refuse();
    super.set(key, value);
  }

  seal(): this {
    this.#open = false;
    return this;
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
  constructor(values: Iterable<T> = []) {
    super();
    for (const v of values) super.add(v);
    Object.freeze(this);
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
