// The push queue: at most `concurrency` proxies are being pushed at once; a proxy queued
// twice before its turn gets one push with the two plans merged.
import type { PushPlan } from '../model.ts';
import { ENDPOINT_TYPE } from '../../envoy/index.ts';
import type { XdsTypeUrl } from '../../envoy/index.ts';

/** Merges two plans for the same proxy: union of types; EDS stays narrowed only if both were. */
export function mergePlans(a: PushPlan, b: PushPlan): PushPlan {
  const types = new Set<XdsTypeUrl>([...a.types, ...b.types]);
  const merged: PushPlan = { types };
  const left = edsScope(a);
  const right = edsScope(b);
  if (left !== 'all' && right !== 'all' && types.has(ENDPOINT_TYPE)) merged.edsClusters = new Set([...left, ...right]);
  return merged;
}

/** The EDS clusters a plan pushes: none, a list, or all (EDS planned without a list). */
function edsScope(plan: PushPlan): ReadonlySet<string> | 'all' {
  if (!plan.types.has(ENDPOINT_TYPE)) return new Set();
  return plan.edsClusters ?? 'all';
}

interface Pending<K> {
  key: K;
  plan: PushPlan;
  /** Earliest config event behind the merged plans. */
  eventAt: number;
}

export interface PushQueueOptions<K> {
  concurrency: number;
  /** Performs one push; the queue waits for it before starting another beyond the bound. */
  push: (key: K, plan: PushPlan, eventAt: number) => Promise<void>;
  onError?: (key: K, err: unknown) => void;
}

export class PushQueue<K> {
  private readonly order: K[] = [];
  private readonly pending = new Map<K, Pending<K>>();
  private readonly inProgress = new Set<K>();
  private active = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly options: PushQueueOptions<K>;

  constructor(options: PushQueueOptions<K>) {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) throw new RangeError(`invalid push concurrency ${options.concurrency}: must be an integer >= 1`);
    this.options = options;
  }

  /** Queues a push for `key`, merging with one already waiting. Bounded by the number of keys. */
  enqueue(key: K, plan: PushPlan, eventAt: number): void {
    const existing = this.pending.get(key);
    if (existing !== undefined) {
      existing.plan = mergePlans(existing.plan, plan);
      existing.eventAt = Math.min(existing.eventAt, eventAt);
      return;
    }
    this.pending.set(key, { key, plan, eventAt });
    this.order.push(key);
    this.drain();
  }

  /** Drops a key's waiting push (its proxy disconnected). */
  remove(key: K): void {
    if (this.pending.delete(key)) {
      const i = this.order.indexOf(key);
      if (i >= 0) this.order.splice(i, 1);
    }
  }

  get size(): number {
    return this.pending.size;
  }

  get running(): number {
    return this.active;
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.active === 0 && this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private drain(): void {
    while (this.active < this.options.concurrency) {
      // A key being pushed stays queued until its current push ends (one push per proxy at a time).
      const index = this.order.findIndex((k) => !this.inProgress.has(k));
      if (index < 0) break;
      const key = this.order[index]!;
      this.order.splice(index, 1);
      const item = this.pending.get(key)!;
      this.pending.delete(key);
      this.active++;
      this.inProgress.add(key);
      this.options
        .push(item.key, item.plan, item.eventAt)
        .catch((err: unknown) => this.options.onError?.(item.key, err))
        .finally(() => {
          this.active--;
          this.inProgress.delete(key);
          this.drain();
          if (this.active === 0 && this.pending.size === 0) {
            const waiters = this.idleWaiters;
            this.idleWaiters = [];
            for (const w of waiters) w();
          }
        });
    }
  }
}
