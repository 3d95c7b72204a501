// A map derived from another by a few changes, without copying it: the endpoint fast path
// derives each snapshot's indexes (60,000 workloads by key, by address, …) from the previous
// snapshot's, and copying them whole for every pull-out cost more than the change itself.
// Both maps stay valid and immutable once built; the changes are flattened into a plain map
// when they grow past an eighth of the base, so lookups never walk more than one layer.

const DELETED: unique symbol = Symbol('deleted');

export class OverlayMap<K, V> implements ReadonlyMap<K, V> {
  private readonly base: ReadonlyMap<K, V>;
  private readonly changes: Map<K, V | typeof DELETED>;
  private count: number;

  private constructor(base: ReadonlyMap<K, V>, changes: Map<K, V | typeof DELETED>, count: number) {
    this.base = base;
    this.changes = changes;
    this.count = count;
  }

  /** A builder for a map equal to `from`; call set/delete, then done(). `from` is not changed. */
  static derive<K, V>(from: ReadonlyMap<K, V>): OverlayMap<K, V> {
    if (from instanceof OverlayMap) return new OverlayMap<K, V>(from.base, new Map(from.changes), from.count);
    return new OverlayMap<K, V>(from, new Map(), from.size);
  }

  set(key: K, value: V): this {
    if (!this.has(key)) this.count++;
    this.changes.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    if (!this.has(key)) return false;
    this.count--;
    if (this.base.has(key)) this.changes.set(key, DELETED);
    else this.changes.delete(key);
    return true;
  }

  /** The finished map: this overlay, or a plain copy once the changes are a large share of the base. */
  done(): ReadonlyMap<K, V> {
    return this.changes.size > Math.max(1024, this.base.size / 8) ? new Map(this) : this;
  }

  get(key: K): V | undefined {
    const c = this.changes.get(key);
    if (c === undefined) return this.changes.has(key) ? undefined : this.base.get(key);
    return c === DELETED ? undefined : c;
  }

  has(key: K): boolean {
    const c = this.changes.get(key);
    if (c === undefined && !this.changes.has(key)) return this.base.has(key);
    return c !== DELETED;
  }

  get size(): number {
    return this.count;
  }

  *entries(): MapIterator<[K, V]> {
    for (const [k, v] of this.base) if (!this.changes.has(k)) yield [k, v];
    for (const [k, v] of this.changes) if (v !== DELETED) yield [k, v];
  }

  *keys(): MapIterator<K> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  forEach(fn: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
  }
}
