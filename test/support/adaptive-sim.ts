// Sextant's cascade as a limiter of the M/M/c simulator (mmc.ts): the controller's pure step
// (src/controllers/adaptive) every rule interval on what the sidecar would report over LRS,
// its budget split and deadband, the lease (a pilot that stops ticking lets the limit lapse to
// the fail-safe one lease later), and the sidecar's local reflex (three 100 ms windows with
// p90 over the reflex target cut the limit by 10%, never below the floor nor more than
// maxCutPercent under the pushed value; a push resets it).
import { initialState, step, type Observation, type PidState, type StepRule } from '../../src/controllers/adaptive/step.ts';
import { splitBudget, withDeadband } from '../../src/controllers/adaptive/budget.ts';
import type { GateView, Limiter } from './mmc.ts';

export interface SextantSimOptions {
  rule: StepRule;
  /** The percentile the rule's target is at (50, 90, 99). */
  percentile: number;
  leaseMs: number;
  /** 0: unlimited. */
  failSafeLimit: number;
  /** The reflex's latency threshold; undefined: no reflex. */
  reflexTargetMs?: number;
  reflexMaxCutPercent?: number;
  /** The controller (the pilot) stops ticking at this virtual time. */
  killAtMs?: number;
  /** Push delay from the controller's tick to the gate (virtual xDS). */
  pushDelayMs?: number;
}

const WINDOW_MS = 100;

export class SextantSimLimiter implements Limiter {
  readonly name = 'sextant';
  readonly tickMs = WINDOW_MS;
  private readonly o: SextantSimOptions;
  state: PidState;
  /** The value pushed last (the lease holds it), and the gate's limit after the reflex. */
  pushed: number;
  private local: number;
  private leaseUntil: number;
  private pending: { at: number; value: number } | undefined;
  private readonly every: number;
  private ticks = 0;
  // the controller's interval window
  private lat: number[] = [];
  private peak = 0;
  private shedCount = 0;
  // the reflex's 100 ms window
  private reflexLat: number[] = [];
  private bad = 0;
  readonly history: { t: number; budget: number; pushed: number; reason: string }[] = [];
  lapsedAt: number | undefined;

  constructor(o: SextantSimOptions) {
    this.o = o;
    this.state = initialState(o.rule, 1);
    this.pushed = Math.round(this.state.budget);
    this.local = this.pushed;
    this.leaseUntil = o.leaseMs;
    this.every = Math.max(1, Math.round(o.rule.intervalMs / WINDOW_MS));
  }

  limit(now: number): number {
    if (this.pending !== undefined && now >= this.pending.at) {
      this.pushed = this.pending.value;
      this.local = this.pushed;
      this.pending = undefined;
    }
    if (now > this.leaseUntil) {
      this.lapsedAt ??= now;
      return this.o.failSafeLimit > 0 ? this.o.failSafeLimit : Infinity;
    }
    return this.local;
  }

  shed(): void {
    this.shedCount++;
  }

  admitted(view: GateView): void {
    if (view.inFlight > this.peak) this.peak = view.inFlight;
  }

  completed(_view: GateView, _latencyMs: number, upstreamMs: number): void {
    // what the gate's limit acts on: latency from admission (a full queue's wait is the load's, not the service's)
    this.lat.push(upstreamMs);
    if (this.o.reflexTargetMs !== undefined) this.reflexLat.push(upstreamMs);
  }

  tick(view: GateView): void {
    this.ticks++;
    this.reflex(view);
    if (this.ticks % this.every !== 0) return;
    if (this.o.killAtMs !== undefined && view.now >= this.o.killAtMs) return;
    const sorted = Float64Array.from(this.lat).sort();
    const q = this.o.percentile / 100;
    const obs: Observation = {
      instances: 1,
      reporting: 1,
      samples: sorted.length,
      latencyMs: sorted.length === 0 ? undefined : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!,
      finished: sorted.length,
      errors: 0,
      peakInFlight: Math.max(this.peak, view.inFlight),
      shed: this.shedCount,
    };
    this.lat = [];
    this.shedCount = 0;
    this.peak = view.inFlight;
    const r = step(this.state, obs, this.o.rule);
    this.state = r.state;
    const next = splitBudget(r.budget, [{ id: 'i', goodput: 0 }], this.o.rule.floor, this.o.rule.ceiling);
    const value = withDeadband(new Map([['i', this.pushed]]), next, this.o.rule.deadband).get('i')!;
    if (value !== this.pushed) this.pending = { at: view.now + (this.o.pushDelayMs ?? 5), value };
    this.leaseUntil = view.now + this.o.leaseMs;
    this.history.push({ t: view.now, budget: r.budget, pushed: value, reason: r.state.reason });
  }

  private reflex(view: GateView): void {
    const target = this.o.reflexTargetMs;
    if (target === undefined) return;
    const w = this.reflexLat;
    this.reflexLat = [];
    if (w.length < 5) return;
    w.sort((a, b) => a - b);
    const p90 = w[Math.min(w.length - 1, Math.ceil(0.9 * w.length) - 1)]!;
    this.bad = p90 > target ? this.bad + 1 : 0;
    if (this.bad < 3 || view.now > this.leaseUntil) return;
    this.bad = 0;
    const lowest = Math.max(this.o.rule.floor, Math.ceil(this.pushed * (1 - (this.o.reflexMaxCutPercent ?? 50) / 100)));
    this.local = Math.max(lowest, Math.floor(this.local * 0.9));
  }
}
