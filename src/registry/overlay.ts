// A map derived from another by a few changes, without copying it: the endpoint fast path
// derives each snapshot's indexes (60,000 workloads by key, by address, …) from the previous
// snapshot's, and copying them whole for every pull-out cost more than the change itself.
// Both maps stay valid and immutable once built.
//
// Three layers: the base (the last flattened map), a middle layer of older changes, and this
// map's own recent changes. Deriving copies only the recent changes (at most TOP_MAX); when they
// grow past that they are merged into a new middle layer (shared from then on, never written),
// and when the middle and recent changes together pass an eighth of the base everything is
// flattened into a plain map. So a derivation copies a few hundred entries, not thousands, and
// a lookup never reads more than three maps.

const DELETED: unique symbol = Symbol('deleted');

/** Recent changes copied by each derivation before they are merged into the middle layer. */
const TOP_MAX = 512;

const EMPTY: ReadonlyMap<never, never> = new Map<never, never>();

export class OverlayMap<K, V> implements ReadonlyMap<K, V> {
  private readonly base: ReadonlyMap<K, V>;
  private middle: ReadonlyMap<K, V | typeof DELETED>;
  private changes: Map<K, V | typeof DELETED>;
  private count: number;

  private constructor(base: ReadonlyMap<K, V>, middle: ReadonlyMap<K, V | typeof DELETED>, changes: Map<K, V | typeof DELETED>, count: number) {
    this.base = base;
    this.middle = middle;
    this.changes = changes;
    this.count = count;
  }

  /** A builder for a map equal to `from`; call set/delete, then done(). `from` is not changed. */
  static derive<K, V>(from: ReadonlyMap<K, V>): OverlayMap<K, V> {
    if (from instanceof OverlayMap) return new OverlayMap<K, V>(from.base, from.middle, new Map(from.changes), from.count);
    return new OverlayMap<K, V>(from, EMPTY, new Map(), from.size);
  }

  set(key: K, value: V): this {
    if (!this.has(key)) this.count++;
    this.changes.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    if (!this.has(key)) return false;
    this.count--;
    if (this.base.has(key) || this.middle.has(key)) this.changes.set(key, DELETED);
    else this.changes.delete(key);
    return true;
  }

  /**
   * The finished map: this overlay (its recent changes merged into a new middle layer when
   * there are many), or a plain copy once the changes are a large share of the base.
   */
  done(): ReadonlyMap<K, V> {
    if (this.middle.size + this.changes.size > Math.max(1024, this.base.size / 8)) return new Map(this);
    if (this.changes.size > TOP_MAX) {
      const middle = new Map(this.middle);
      for (const [k, v] of this.changes) middle.set(k, v);
      this.middle = middle;
      this.changes = new Map();
    }
    return this;
  }

  get(key: K): V | undefined {
    const c = this.changes.get(key);
    if (c !== undefined) return c === DELETED ? undefined : c;
    if (this.changes.has(key)) return undefined;
    const m = this.middle.get(key);
    if (m !== undefined) return m === DELETED ? undefined : m;
    return this.middle.has(key) ? undefined : this.base.get(key);
  }

  has(key: K): boolean {
    const c = this.changes.get(key);
    if (c !== undefined || this.changes.has(key)) return c !== DELETED;
    const m = this.middle.get(key);
    if (m !== undefined || this.middle.has(key)) return m !== DELETED;
    return this.base.has(key);
  }

  get size(): number {
    return this.count;
  }

  *entries(): MapIterator<[K, V]> {
    for (const [k, v] of this.base) if (!this.changes.has(k) && !this.middle.has(k)) yield [k, v];
    for (const [k, v] of this.middle) if (v !== DELETED && !this.changes.has(k)) yield [k, v];
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
