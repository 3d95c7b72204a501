// A snapshot's memo table, layered over its predecessor's on the endpoint fast path instead
// of copied (a full mesh memoizes tens of thousands of clusters, scopes and resolutions, and
// copying them for every pull-out cost more than the pull-out itself).
//
// A table is a frozen base, shared and never written again, plus the entries this snapshot
// wrote (and the keys it dropped). Forking a child copies only that small own part: the
// parent keeps writing into its own part, which the child no longer sees, so an entry the
// parent computes later from its older inputs never reaches the child. When the own part has
// grown past an eighth of the base, fork first folds it into a new frozen base (shared by
// parent and child from then on), so reads never look at more than two maps.

const DROPPED: unique symbol = Symbol('dropped');

/** Own parts smaller than this are copied on fork rather than folded into the base. */
const FOLD_MIN = 1024;

const EMPTY: ReadonlyMap<string, never> = new Map<string, never>();

export class MemoTable<V> {
  private base: ReadonlyMap<string, V>;
  private own: Map<string, V | typeof DROPPED>;

  constructor() {
    this.base = EMPTY;
    this.own = new Map();
  }

  /** The value under `key` (undefined when absent, or when undefined was stored: see has). */
  get(key: string): V | undefined {
    const o = this.own.get(key);
    if (o !== undefined) return o === DROPPED ? undefined : o;
    return this.own.has(key) ? undefined : this.base.get(key);
  }

  has(key: string): boolean {
    const o = this.own.get(key);
    if (o !== undefined || this.own.has(key)) return o !== DROPPED;
    return this.base.has(key);
  }

  set(key: string, value: V): void {
    this.own.set(key, value);
  }

  /** Entries visible in this table (for tests and diagnostics). */
  get size(): number {
    let n = 0;
    for (const [k] of this.base) if (!this.own.has(k)) n++;
    for (const v of this.own.values()) if (v !== DROPPED) n++;
    return n;
  }

  /**
   * A table for a derived snapshot: this table's entries, except `drop`, which the child
   * computes again from its own inputs. Later writes into either table are private to it.
   */
  fork(drop: Iterable<string> = []): MemoTable<V> {
    if (this.own.size > Math.max(FOLD_MIN, this.base.size / 8)) this.fold();
    const child = new MemoTable<V>();
    child.base = this.base;
    child.own = new Map(this.own);
    // Dropped even when absent here: whatever the child holds under the key is its own.
    for (const k of drop) child.own.set(k, DROPPED);
    return child;
  }

  /** Moves the own entries into a new frozen base (this table's content is unchanged). */
  private fold(): void {
    let folded: Map<string, V>;
    if (this.base.size === 0) {
      // A full snapshot's table: the own map becomes the base as it is, uncopied.
      folded = this.own as Map<string, V>;
      for (const [k, v] of this.own) if (v === DROPPED) folded.delete(k);
    } else {
      folded = new Map(this.base);
      for (const [k, v] of this.own) {
        if (v === DROPPED) folded.delete(k);
        else folded.set(k, v);
      }
    }
    this.base = folded;
    this.own = new Map();
  }
}
