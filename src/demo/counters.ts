// Counters scraped from processes that may restart, turned into increases and rates the way
// Prometheus' increase() and rate() do: a counter that went down was reset (its process
// restarted) and counted from zero, so a rate is never negative.

/**
 * How much a counter grew from `previous` to `current`. A decrease is a reset: the counter
 * counted from zero, so all of `current` is new. A series not seen before counts from zero too.
 */
export function counterIncrease(previous: number | undefined, current: number): number {
  if (previous === undefined || current < previous) return current;
  return current - previous;
}

/** Per second, over `seconds`; 0 over no time. */
export function perSecond(increase: number, seconds: number): number {
  return seconds > 0 ? increase / seconds : 0;
}

export interface CounterDelta {
  /** Seconds since the previous read. */
  seconds: number;
  /** Each series' increase since the previous read, by series key. */
  increase: Map<string, number>;
}

/** The last read of one process's counter series, to turn the next read into increases. */
export class CounterReads {
  #last: ReadonlyMap<string, number> | undefined;
  #lastAt = 0;

  /**
   * Takes a read of every series (by key) at `atMs`. Returns undefined on the first read
   * (there is nothing to compare with), else each series' increase since the previous read.
   * `restarted`: the process is known to have restarted since, so every series counted from
   * zero even where its new value is not below the old one (which a decrease alone misses).
   */
  read(values: ReadonlyMap<string, number>, atMs: number, restarted = false): CounterDelta | undefined {
    const last = this.#last;
    const seconds = (atMs - this.#lastAt) / 1000;
    this.#last = values;
    this.#lastAt = atMs;
    if (last === undefined) return undefined;
    const increase = new Map<string, number>();
    for (const [key, v] of values) increase.set(key, counterIncrease(restarted ? undefined : last.get(key), v));
    return { seconds, increase };
  }
}
