// The overload benchmark's in-process half: every arm against the same M/M/c upstream, the same
// seed and the same schedule, in virtual time (test/support/mmc.ts), with the metrics of the
// protocol (docs/performance.md, "Overload"): goodput ratio per phase, admitted p99, time to
// converge and recover, oscillation, overshoot, false shedding, tier-0 success.
import { simulate, type Limiter, type SimResult } from '../../test/support/mmc.ts';
import { SextantSimLimiter } from '../../test/support/adaptive-sim.ts';
import type { StepRule } from '../../src/controllers/adaptive/index.ts';
import { adaptiveLimitSettings } from '../../src/api/index.ts';
import { ENVOY_GRADIENT_DEFAULTS, GradientLimiter, NoLimiter, StaticLimiter, ThresholdSwitchLimiter } from './limiters.ts';

export const WORKERS = 8;
export const MEAN_SERVICE_MS = 20;
export const THRASH = 0.5;
export const DEADLINE_MS = 500;
/** μ of the full upstream: 8 workers / 20 ms. */
export const MU = (WORKERS * 1000) / MEAN_SERVICE_MS;

export interface Phase {
  name: string;
  /** Offered load at the start and end of the phase, × μ of the full upstream. */
  from: number;
  to: number;
  ms: number;
  workers: number;
  /** Counted for false shedding (a half-load phase). */
  half?: boolean;
}

/** The protocol's schedule: 0.5 → 0.9 → 2 → 0.5 → 5 → 0.5 → ramp 0.5→5 → 0.8 with c 8→4 → back. */
export function schedule(phaseMs: number): Phase[] {
  return [
    { name: 'warm 0.5μ', from: 0.5, to: 0.5, ms: phaseMs, workers: 8, half: true },
    { name: '0.9μ', from: 0.9, to: 0.9, ms: phaseMs, workers: 8 },
    { name: '2μ', from: 2, to: 2, ms: phaseMs, workers: 8 },
    { name: '0.5μ after 2μ', from: 0.5, to: 0.5, ms: phaseMs, workers: 8, half: true },
    { name: '5μ', from: 5, to: 5, ms: phaseMs, workers: 8 },
    { name: '0.5μ after 5μ', from: 0.5, to: 0.5, ms: phaseMs, workers: 8, half: true },
    { name: 'ramp 0.5→5μ', from: 0.5, to: 5, ms: 2 * phaseMs, workers: 8 },
    { name: '0.8μ, c 8→4', from: 0.8, to: 0.8, ms: phaseMs, workers: 4 },
    { name: '0.8μ, c back to 8', from: 0.8, to: 0.8, ms: phaseMs, workers: 8 },
  ];
}

interface Timeline {
  phases: (Phase & { start: number; end: number })[];
  rate(t: number): number;
  workers(t: number): number;
  durationMs: number;
}

export function timeline(phases: Phase[]): Timeline {
  let t = 0;
  const out = phases.map((p) => {
    const x = { ...p, start: t, end: t + p.ms };
    t += p.ms;
    return x;
  });
  const at = (ms: number): (typeof out)[number] => out.find((p) => ms < p.end) ?? out[out.length - 1]!;
  return {
    phases: out,
    durationMs: t,
    rate: (ms) => {
      const p = at(ms);
      return MU * (p.from + ((p.to - p.from) * (ms - p.start)) / p.ms);
    },
    workers: (ms) => at(ms).workers,
  };
}

/**
 * The rule Sextant runs with: p99 at 100 ms (the unloaded p99 is ≈ 92 ms), an initial limit of
 * twice the workers, the defaults otherwise.
 */
export const SEXTANT_RULE: StepRule = {
  ...adaptiveLimitSettings({ host: 'app', target: { latency: '100ms', percentile: 99 }, limits: { initial: 16 } }),
};
export const SEXTANT_PERCENTILE = 99;

export interface Arm {
  name: string;
  make(seed: number, tl: Timeline): Limiter;
  /** Sextant's gate: a short queue; Envoy's breakers and the gradient filter refuse at once. */
  queue: { size: number; timeoutMs: number };
}

export function arms(): Arm[] {
  const noQueue = { size: 0, timeoutMs: 0 };
  const sextantQueue = { size: 8, timeoutMs: 50 };
  const sextant = (kill: boolean) => (_seed: number, tl: Timeline): Limiter => {
    const fiveMu = tl.phases.find((p) => p.name === '5μ')!;
    return new SextantSimLimiter({
      rule: SEXTANT_RULE, percentile: SEXTANT_PERCENTILE, leaseMs: 3000, failSafeLimit: 0,
      reflexTargetMs: 2 * SEXTANT_RULE.latencyTargetMs, reflexMaxCutPercent: 50,
      ...(kill ? { killAtMs: fiveMu.start + Math.min(10_000, fiveMu.ms / 3) } : {}),
    });
  };
  return [
    { name: 'A0 none', make: () => new NoLimiter(), queue: noQueue },
    { name: 'A1 static 10', make: () => new StaticLimiter(10), queue: noQueue },
    { name: 'A1b static 20', make: () => new StaticLimiter(20), queue: noQueue },
    { name: 'A2 gradient p50', make: (seed) => new GradientLimiter({ ...ENVOY_GRADIENT_DEFAULTS, seed }), queue: noQueue },
    { name: 'A2 gradient p90', make: (seed) => new GradientLimiter({ ...ENVOY_GRADIENT_DEFAULTS, percentile: 0.9, seed }), queue: noQueue },
    { name: 'A3 sextant', make: sextant(false), queue: sextantQueue },
    { name: 'A4 sextant, pilot killed', make: sextant(true), queue: sextantQueue },
    { name: 'A5 slime-style 30 s switch', make: () => new ThresholdSwitchLimiter(SEXTANT_RULE.latencyTargetMs, 10), queue: noQueue },
  ];
}

// ---------------------------------------------------------------- metrics

export interface PhaseMetrics {
  phase: string;
  /** 2xx within the deadline / (capacity × the steady window). */
  goodputRatio: number;
  admittedP99Ms: number | null;
  shedFraction: number;
  tier0Success: number | null;
  /**
   * Seconds from the phase start until the 5 s from then have a median 1-s admitted p99 within 10%
   * of the steady one and goodput within 5% of the steady one (up-steps; steady = the median of
   * the phase's last 20 s; none when the steady goodput is under half the capacity).
   */
  convergeS: number | null;
  /** Seconds until shedding stopped and admitted ≥ 95% of offered (after an overload). */
  recoverS: number | null;
  /** Highest 1-s admitted p99 in the first part of the phase over the steady p99, − 1. */
  overshoot: number | null;
}

export interface ArmRun {
  phases: PhaseMetrics[];
  falseShedding: number;
  unloadedP99Ms: number;
  /** The limit through steady 5μ: coefficient of variation and reversals per minute. */
  limitCv: number | null;
  limitReversalsPerMin: number | null;
  /** Sextant: limit changes pushed per minute; gradient: minRTT probe windows. */
  pushesPerMin: number | null;
  /** A4: seconds from the kill to the lapse to the fail-safe. */
  lapseAfterKillS: number | null;
  simulatedRequests: number;
}

interface Bin { sent: number; ok: number; shed: number; admitted: number; p99: number }

function bins(r: SimResult, from: number, to: number): Bin[] {
  const n = Math.max(1, Math.ceil((to - from) / 1000));
  const lat: number[][] = Array.from({ length: n }, () => []);
  const out: Bin[] = Array.from({ length: n }, () => ({ sent: 0, ok: 0, shed: 0, admitted: 0, p99: NaN }));
  for (let i = 0; i < r.count; i++) {
    const t = r.sentAt[i]!;
    if (t < from || t >= to) continue;
    const b = Math.floor((t - from) / 1000);
    const bin = out[b]!;
    bin.sent++;
    const o = r.outcome[i]!;
    if (o === 0) bin.ok++;
    if (o === 2) bin.shed++;
    else {
      bin.admitted++;
      lat[b]!.push(r.latencyMs[i]!);
    }
  }
  for (let b = 0; b < n; b++) {
    const a = Float64Array.from(lat[b]!).sort();
    if (a.length > 0) out[b]!.p99 = a[Math.min(a.length - 1, Math.ceil(0.99 * a.length) - 1)]!;
  }
  return out;
}

function median(xs: number[]): number {
  const a = [...xs].filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  if (a.length === 0) return NaN;
  return a.length % 2 === 1 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2;
}

function p99Of(r: SimResult, from: number, to: number, filter?: (i: number) => boolean): number {
  const lat: number[] = [];
  for (let i = 0; i < r.count; i++) {
    const t = r.sentAt[i]!;
    if (t < from || t >= to || r.outcome[i] === 2 || (filter !== undefined && !filter(i))) continue;
    lat.push(r.latencyMs[i]!);
  }
  if (lat.length === 0) return NaN;
  const a = Float64Array.from(lat).sort();
  return a[Math.min(a.length - 1, Math.ceil(0.99 * a.length) - 1)]!;
}

const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const r1 = (x: number): number => Math.round(x * 10) / 10;
const finite = (x: number): number | null => (Number.isFinite(x) ? x : null);

export function runArm(arm: Arm, seed: number, phaseMs: number): ArmRun {
  const tl = timeline(schedule(phaseMs));
  const limiter = arm.make(seed, tl);
  const r = simulate({
    seed, workers: tl.workers, meanServiceMs: MEAN_SERVICE_MS, thrash: THRASH, rate: tl.rate, durationMs: tl.durationMs,
    gate: { queueSize: arm.queue.size, queueTimeoutMs: arm.queue.timeoutMs, tiers: 2, tier0ReservePercent: 20, enforce: true },
    limiter, tier0Fraction: 0.1, deadlineMs: DEADLINE_MS,
  });
  // the first quarter of a phase (10 s of 40) is transient
  const skip = phaseMs / 4;
  const tail = Math.min(20_000, phaseMs / 2);
  const phases: PhaseMetrics[] = [];
  let shedHalf = 0;
  let sentHalf = 0;
  let prev: (typeof tl.phases)[number] | undefined;
  for (const p of tl.phases) {
    const capacity = (p.workers * 1000) / MEAN_SERVICE_MS;
    const from = p.start + skip;
    let sent = 0;
    let ok = 0;
    let shed = 0;
    let t0 = 0;
    let t0ok = 0;
    for (let i = 0; i < r.count; i++) {
      const t = r.sentAt[i]!;
      if (t < from || t >= p.end) continue;
      sent++;
      if (r.outcome[i] === 0) ok++;
      if (r.outcome[i] === 2) shed++;
      if (r.tier[i] === 0) { t0++; if (r.outcome[i] === 0) t0ok++; }
    }
    if (p.half === true) {
      // false shedding: the steady part of each half-load phase
      shedHalf += shed;
      sentHalf += sent;
    }
    const b = bins(r, p.start, p.end);
    const steady = b.slice(Math.max(0, b.length - Math.round(tail / 1000)));
    const p99ss = median(steady.map((x) => x.p99));
    const gss = median(steady.map((x) => x.ok));
    const up = prev !== undefined && p.from > prev.to;
    let convergeS: number | null = null;
    // a collapsed arm has no steady state worth converging to
    if (up && Number.isFinite(p99ss) && gss >= 0.5 * capacity) {
      // the 5 s from t on: their 1-s bins' median p99 within 10% of steady, their goodput within 5%
      for (let i = 0; i + 5 <= b.length; i++) {
        const w = b.slice(i, i + 5);
        const ok = w.reduce((a, x) => a + x.ok, 0);
        if (median(w.map((x) => x.p99)) <= 1.1 * p99ss && ok >= 0.95 * 5 * gss) { convergeS = i; break; }
      }
    }
    let recoverS: number | null = null;
    if (prev !== undefined && p.from < prev.to) {
      const offered = (i: number): number => b[i]!.sent;
      for (let i = 0; i < b.length; i++) {
        const x = b[i]!;
        if (x.sent > 0 && x.shed / x.sent < 0.01 && x.admitted >= 0.95 * offered(i) && x.ok >= 0.95 * x.admitted) { recoverS = i; break; }
      }
    }
    const first = b.slice(0, Math.max(1, Math.round(skip / 1000)));
    const peak = Math.max(...first.map((x) => (Number.isFinite(x.p99) ? x.p99 : 0)));
    phases.push({
      phase: p.name,
      goodputRatio: r3(ok / (capacity * ((p.end - from) / 1000))),
      admittedP99Ms: finite(r1(p99Of(r, from, p.end))),
      shedFraction: r3(sent === 0 ? 0 : shed / sent),
      tier0Success: t0 === 0 ? null : r3(t0ok / t0),
      convergeS,
      recoverS,
      overshoot: up && Number.isFinite(p99ss) && p99ss > 0 ? r3(peak / p99ss - 1) : null,
    });
    prev = p;
  }
  const five = tl.phases.find((p) => p.name === '5μ')!;
  const limits = r.limits.filter(([t]) => t >= five.start + skip && t < five.end).map(([, l]) => l).filter((l) => Number.isFinite(l));
  let limitCv: number | null = null;
  let reversals: number | null = null;
  if (limits.length > 2) {
    const mean = limits.reduce((a, b) => a + b, 0) / limits.length;
    const sd = Math.sqrt(limits.reduce((a, b) => a + (b - mean) ** 2, 0) / limits.length);
    limitCv = r3(sd / mean);
    let count = 0;
    let lastSign = 0;
    for (let i = 1; i < limits.length; i++) {
      const d = limits[i]! - limits[i - 1]!;
      if (Math.abs(d) <= 0.05 * limits[i - 1]!) continue;
      const s = Math.sign(d);
      if (lastSign !== 0 && s !== lastSign) count++;
      lastSign = s;
    }
    reversals = r1(count / (limits.length / 60));
  }
  const minutes = tl.durationMs / 60_000;
  let pushesPerMin: number | null = null;
  let lapseAfterKillS: number | null = null;
  if (limiter instanceof SextantSimLimiter) {
    let pushes = 0;
    let last = NaN;
    for (const h of limiter.history) { if (h.pushed !== last) pushes++; last = h.pushed; }
    pushesPerMin = r1(pushes / minutes);
    if (arm.name.includes('killed') && limiter.lapsedAt !== undefined) lapseAfterKillS = r1((limiter.lapsedAt - (five.start + Math.min(10_000, five.ms / 3))) / 1000);
  }
  if (limiter instanceof GradientLimiter) pushesPerMin = r1(limiter.probes / minutes);
  const warm = tl.phases[0]!;
  return {
    phases,
    falseShedding: sentHalf === 0 ? 0 : r3(shedHalf / sentHalf),
    unloadedP99Ms: r1(p99Of(r, warm.start + skip, warm.end)),
    limitCv,
    limitReversalsPerMin: reversals,
    pushesPerMin,
    lapseAfterKillS,
    simulatedRequests: r.count,
  };
}
