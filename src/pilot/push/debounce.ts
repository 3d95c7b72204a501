// Debouncing of config events: a batch is released `after` ms after its last event, or
// `max` ms after its first, whichever comes first, so a burst becomes one push.
import type { ConfigChange } from '../model.ts';

/** A merged batch of config events. */
export interface DebouncedChange extends ConfigChange {
  /** When the first event of the batch arrived (ms since epoch): convergence starts here. */
  firstEventAt: number;
  /** How many events were merged. */
  events: number;
}

export interface DebounceOptions {
  afterMs: number;
  maxMs: number;
  /**
   * Longest a batch of endpoint changes only waits (default `maxMs`). Such a batch takes the
   * endpoint fast path and pushes EDS only, so under a steady stream of registrations it need
   * not wait for the quiet (or the long max) a full rebuild does: a pull-out reaches proxies
   * within this bound plus the push.
   */
  endpointsMaxMs?: number;
  /** Longest a batch holding an urgent event waits (default 10 ms: events of the same moment still merge). */
  urgentMs?: number;
}

export const DEFAULT_URGENT_MS = 10;

/**
 * Merges events into batches and hands each to `flush`. A batch is not released while the
 * previous flush is still running (its PushContext would be superseded anyway); events keep
 * merging meanwhile.
 */
export class Debouncer {
  private pending: { keys: Set<string>; endpointsOnly: boolean; firstEventAt: number; lastEventAt: number; events: number; urgentAt?: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private flushing = false;
  private closed = false;
  private readonly options: DebounceOptions;
  private readonly flush: (change: DebouncedChange) => Promise<void>;

  constructor(options: DebounceOptions, flush: (change: DebouncedChange) => Promise<void>) {
    if (!(options.afterMs >= 0) || !(options.maxMs >= options.afterMs)) {
      throw new RangeError(`invalid debounce: after ${options.afterMs}ms must be >= 0 and <= max ${options.maxMs}ms`);
    }
    this.options = options;
    this.flush = flush;
  }

  /**
   * Adds one event: `key` is `Kind/namespace/name`, `endpointsOnly` when it only moved endpoints.
   * An `urgent` event (a lazy-scope Sidecar: a proxy's calls wait on it) releases its batch
   * within `urgentMs` instead of waiting for quiet.
   */
  add(key: string, endpointsOnly: boolean, at = Date.now(), urgent = false): void {
    if (this.closed) return;
    if (this.pending === undefined) {
      this.pending = { keys: new Set([key]), endpointsOnly, firstEventAt: at, lastEventAt: at, events: 1 };
    } else {
      this.pending.keys.add(key);
      this.pending.endpointsOnly &&= endpointsOnly;
      this.pending.lastEventAt = at;
      this.pending.events++;
    }
    if (urgent) this.pending.urgentAt = Math.min(this.pending.urgentAt ?? at, at);
    this.schedule();
  }

  /** The release time of a batch holding an urgent event. */
  private urgentDeadline(p: { urgentAt?: number }): number {
    return p.urgentAt === undefined ? Infinity : p.urgentAt + (this.options.urgentMs ?? DEFAULT_URGENT_MS);
  }

  private schedule(): void {
    if (this.pending === undefined || this.flushing) return;
    const now = Date.now();
    const quietAt = this.pending.lastEventAt + this.options.afterMs;
    const deadline = Math.min(this.pending.firstEventAt + this.maxFor(this.pending.endpointsOnly), this.urgentDeadline(this.pending));
    const delay = Math.max(0, Math.min(quietAt, deadline) - now);
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.release(), delay);
  }

  private async release(): Promise<void> {
    this.timer = undefined;
    const batch = this.pending;
    if (batch === undefined || this.closed) return;
    const now = Date.now();
    // A timer set for the max deadline may fire before quiet; re-check both bounds.
    if (now < batch.lastEventAt + this.options.afterMs && now < batch.firstEventAt + this.maxFor(batch.endpointsOnly) && now < this.urgentDeadline(batch)) {
      this.schedule();
      return;
    }
    this.pending = undefined;
    this.flushing = true;
    try {
      await this.flush({ keys: batch.keys, endpointsOnly: batch.endpointsOnly, firstEventAt: batch.firstEventAt, events: batch.events });
    } finally {
      this.flushing = false;
      this.schedule();
    }
  }

  private maxFor(endpointsOnly: boolean): number {
    const max = this.options.maxMs;
    return endpointsOnly && this.options.endpointsMaxMs !== undefined ? Math.min(max, this.options.endpointsMaxMs) : max;
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }
}
