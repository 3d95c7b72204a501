// Gives memory back to the OS after a burst is over (thousands of passthrough destinations,
// or a burst of requests): V8 neither collects an idle heap nor returns its pooled pages on
// its own, so RSS would stay at the burst's peak (M15, M9).
import v8 from 'node:v8';
import vm from 'node:vm';

type GcFunction = (opts?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;
let gc: GcFunction | null | undefined;

// V8's gc() without exposing it as a global to the rest of the process.
function collector(): GcFunction | null {
  if (gc !== undefined) return gc;
  try {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as GcFunction;
    v8.setFlagsFromString('--no-expose-gc');
  } catch {
    gc = null;
  }
  return gc;
}

/**
 * A memory-reducing full collection: frees garbage and returns V8's pooled pages.
 * It blocks the process for tens to hundreds of milliseconds (a sidecar's 20-25 MB heap:
 * 125-240 ms on a busy core, as two collections); call it only after a burst is over.
 * Returns false when the runtime does not allow it.
 */
export function reclaimMemory(): boolean {
  const f = collector();
  if (f === null) return false;
  f({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return true;
}

export interface BurstReclaimerOptions {
  /** Requests handled so far (a counter that only grows). */
  served: () => number;
  /** Requests since the last collection that make a burst worth collecting after. */
  minRequests?: number;
  /** Quiet time after a burst before collecting. */
  quietMs?: number;
  /** How often to look; also the resolution of quietMs. */
  checkEveryMs?: number;
  /** The collection (default: reclaimMemory). */
  reclaim?: () => boolean;
  now?: () => number;
}

/**
 * Collects once traffic stops after a burst: a sidecar with a small young generation
 * promotes some of a burst's short-lived objects, and without this its RSS would keep that
 * garbage until the next full collection, which an idle process may never run. The check
 * runs once a second; the collection (see reclaimMemory) runs only while no request has
 * arrived for `quietMs`, at most once per burst, never under steady traffic.
 */
export class BurstReclaimer {
  private readonly served: () => number;
  private readonly minRequests: number;
  private readonly quietMs: number;
  private readonly reclaim: () => boolean;
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout;
  private lastCount: number;
  private countAtReclaim: number;
  private lastChange: number;
  /** Collections run so far. */
  reclaims = 0;

  constructor(o: BurstReclaimerOptions) {
    this.served = o.served;
    this.minRequests = o.minRequests ?? 10_000;
    this.quietMs = o.quietMs ?? 2000;
    this.reclaim = o.reclaim ?? reclaimMemory;
    this.now = o.now ?? Date.now;
    this.lastCount = this.countAtReclaim = this.served();
    this.lastChange = this.now();
    this.timer = setInterval(() => this.check(), o.checkEveryMs ?? 1000);
    this.timer.unref();
  }

  /** One look: note traffic, or collect when a burst has been followed by quiet. */
  check(): void {
    const count = this.served();
    const now = this.now();
    if (count !== this.lastCount) {
      this.lastCount = count;
      this.lastChange = now;
      return;
    }
    if (count - this.countAtReclaim < this.minRequests || now - this.lastChange < this.quietMs) return;
    this.countAtReclaim = count;
    if (this.reclaim()) this.reclaims++;
  }

  close(): void {
    clearInterval(this.timer);
  }
}
