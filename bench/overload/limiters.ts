// The limiters the overload benchmark compares, as limiters of the M/M/c simulator
// (test/support/mmc.ts): none, a static max_requests, Envoy's adaptive_concurrency gradient
// controller implemented to its documented formula (no Envoy binary can run here), and a
// Slime-style central threshold switch. Sextant's is test/support/adaptive-sim.ts.
import type { GateView, Limiter } from '../../test/support/mmc.ts';
import { Rng } from '../../test/support/mmc.ts';

/** A0: no limiter. */
export class NoLimiter implements Limiter {
  readonly name = 'none';
  limit(): number {
    return Infinity;
  }
}

/** A1: Envoy's circuit breaker `max_requests` (refuses at once, no queue). */
export class StaticLimiter implements Limiter {
  readonly name: string;
  private readonly value: number;
  constructor(value: number) {
    this.value = value;
    this.name = `static-${value}`;
  }
  limit(): number {
    return this.value;
  }
}

export interface GradientOptions {
  /** sample_aggregate_percentile (0.5 by default, as Envoy). */
  percentile: number;
  /** concurrency_update_interval (100 ms). */
  updateMs: number;
  /** min_rtt_calc_params: interval (60 s), request_count (50), jitter (15%), min_concurrency (3), buffer (25%). */
  minRttIntervalMs: number;
  requestCount: number;
  jitter: number;
  minConcurrency: number;
  buffer: number;
  /** max_concurrency_limit (1000). */
  maxLimit: number;
  seed: number;
}

export const ENVOY_GRADIENT_DEFAULTS: GradientOptions = {
  percentile: 0.5, updateMs: 100, minRttIntervalMs: 60_000, requestCount: 50, jitter: 0.15, minConcurrency: 3, buffer: 0.25, maxLimit: 1000, seed: 1,
};

/**
 * A2: Envoy's adaptive_concurrency gradient controller, as its gradient_controller.cc does it:
 * the limit starts at min_concurrency in a minRTT window, which pins it there until
 * request_count requests sent inside the window finished (their percentile is minRTT), then
 * restores the limit it deferred; every update interval with samples, sampleRTT = the
 * percentile of the window, gradient = clamp((minRTT·(1 + buffer)) / sampleRTT, 0.5, 2),
 * limit = ⌊L·g + √(L·g)⌋ within [min_concurrency, max]; the minRTT window comes back every
 * interval + up to jitter·interval, or after five windows in a row set the minimum.
 */
export class GradientLimiter implements Limiter {
  readonly name: string;
  readonly tickMs: number;
  private readonly o: GradientOptions;
  private readonly rng: Rng;
  private current: number;
  private deferred: number;
  private minRtt = 0;
  private window: number[] = [];
  private probing = false;
  private probeEpoch = 0;
  private probeSamples: number[] = [];
  private nextProbeAt = Infinity;
  private atMin = 0;
  /** minRTT windows run (each refuses what min_concurrency cannot admit). */
  probes = 0;

  constructor(o: GradientOptions, name = `gradient-p${Math.round(o.percentile * 100)}`) {
    this.o = o;
    this.name = name;
    this.tickMs = o.updateMs;
    this.rng = new Rng(o.seed);
    this.current = o.minConcurrency;
    this.deferred = o.minConcurrency;
    this.enterProbe(0);
  }

  limit(): number {
    return this.current;
  }

  private enterProbe(now: number): void {
    if (this.probing) return;
    this.probing = true;
    this.probes++;
    this.deferred = this.current;
    this.set(this.o.minConcurrency);
    this.probeSamples = [];
    this.probeEpoch = now;
  }

  completed(view: GateView, _latencyMs: number, upstreamMs: number): void {
    // samples of requests sent before the minRTT window began are disregarded
    if (view.now - upstreamMs < this.probeEpoch) return;
    if (!this.probing) {
      this.window.push(upstreamMs);
      return;
    }
    this.probeSamples.push(upstreamMs);
    if (this.probeSamples.length >= this.o.requestCount) {
      this.minRtt = pct(this.probeSamples, this.o.percentile);
      this.probeSamples = [];
      this.probing = false;
      this.set(this.deferred);
      this.nextProbeAt = view.now + this.o.minRttIntervalMs + Math.floor(this.rng.next() * Math.ceil(this.o.minRttIntervalMs * this.o.jitter));
    }
  }

  tick(view: GateView): void {
    if (this.probing) return;
    if (view.now >= this.nextProbeAt) {
      this.enterProbe(view.now);
      return;
    }
    if (this.window.length === 0) return;
    const sample = pct(this.window, this.o.percentile);
    this.window = [];
    const gradient = Math.min(2, Math.max(0.5, (this.minRtt * (1 + this.o.buffer)) / sample));
    const l = this.current * gradient;
    this.set(Math.max(this.o.minConcurrency, Math.min(this.o.maxLimit, Math.floor(l + Math.sqrt(l)))));
    if (this.atMin >= 5) this.enterProbe(view.now);
  }

  private set(value: number): void {
    const old = this.current;
    this.current = value;
    if (!this.probing && old === this.o.minConcurrency && value === this.o.minConcurrency) this.atMin++;
    else this.atMin = 0;
  }
}

/**
 * A5: a Slime-style central switch: every 30 s, the p99 of the last 30 s over the threshold
 * turns a fixed limit on, under it turns the limit off (unlimited).
 */
export class ThresholdSwitchLimiter implements Limiter {
  readonly name = 'slime-30s';
  readonly tickMs = 30_000;
  private on = false;
  private window: number[] = [];
  private readonly thresholdMs: number;
  private readonly value: number;
  constructor(thresholdMs: number, value: number) {
    this.thresholdMs = thresholdMs;
    this.value = value;
  }
  limit(): number {
    return this.on ? this.value : Infinity;
  }
  completed(_view: GateView, _latencyMs: number, upstreamMs: number): void {
    this.window.push(upstreamMs);
  }
  tick(): void {
    if (this.window.length > 0) this.on = pct(this.window, 0.99) > this.thresholdMs;
    this.window = [];
  }
}

function pct(values: number[], q: number): number {
  const a = Float64Array.from(values).sort();
  return a[Math.min(a.length - 1, Math.max(0, Math.ceil(q * a.length) - 1))]!;
}
