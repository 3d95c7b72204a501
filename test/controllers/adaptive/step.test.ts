// The adaptive-limits control law: the pure step on crafted observations (exact outputs), the
// budget split and deadband, and the whole cascade against the discrete-event M/M/c simulator
// in virtual time (test/support/mmc.ts; seeded, no wall clock): it converges after a load step,
// never goes below the floor, does not wind up at the floor or the ceiling, and does not grow
// a limit the service is not using.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { initialState, splitBudget, step, withDeadband, type Observation, type PidState, type StepRule } from '../../../src/controllers/adaptive/index.ts';
import { simulate, windowStats, type SimResult } from '../../support/mmc.ts';
import { SextantSimLimiter } from '../../support/adaptive-sim.ts';

const RULE: StepRule = {
  latencyTargetMs: 100, errorRate: 0.05, kp: 0.5, ki: 0.4, kd: 0, intervalMs: 1000,
  maxStepUp: 0.2, maxStepDown: 0.5, deadband: 0.05, floor: 4, initial: 64, ceiling: 1024,
};

function obs(o: Partial<Observation>): Observation {
  return { instances: 1, reporting: 1, samples: 100, latencyMs: 100, finished: 100, errors: 0, peakInFlight: 1000, shed: 0, ...o };
}

function state(o: Partial<PidState>): PidState {
  return { ...initialState(RULE, 1), ...o };
}

describe('the step', () => {
  test('on target: the budget holds (inside the deadband no integral action)', () => {
    const r = step(state({ budget: 20, pv: 100 }), obs({ latencyMs: 103 }), RULE);
    assert.equal(r.state.reason, 'tracking');
    // e = -0.015 (PV smoothed to 101.5): only the P term moves it, by 0.5·(−0.015 − 0)
    assert.equal(r.budget.toFixed(4), (20 * (1 + 0.5 * -0.015)).toFixed(4));
  });

  test('latency twice the target: the cut is the step limit (50%), exactly', () => {
    const r = step(state({ budget: 40, pv: 200 }), obs({ latencyMs: 200 }), RULE);
    assert.equal(r.error, -1);
    assert.equal(r.budget, 20);
    assert.equal(r.state.e1, -1);
    assert.equal(r.state.e2, 0);
  });

  test('latency under the target while the service uses its budget: growth by at most maxStepUp', () => {
    const r = step(state({ budget: 20, pv: 20 }), obs({ latencyMs: 20, peakInFlight: 20 }), RULE);
    assert.equal(r.budget, 24);
    assert.equal(r.state.reason, 'tracking');
  });

  test('no growth while the service uses under half of its budget', () => {
    const r = step(state({ budget: 64, pv: 20 }), obs({ latencyMs: 20, peakInFlight: 31 }), RULE);
    assert.equal(r.budget, 64);
    assert.equal(r.state.reason, 'app-limited');
    // a cut is never refused
    const cut = step(state({ budget: 64, pv: 300 }), obs({ latencyMs: 300, peakInFlight: 3 }), RULE);
    assert.equal(cut.budget, 32);
  });

  test('too few samples: no growth, but a few slow ones, a stall or errors over the rule\'s rate cut', () => {
    const few = step(state({ budget: 20, pv: 20 }), obs({ samples: 5, latencyMs: 20, finished: 5, peakInFlight: 20 }), RULE);
    assert.equal(few.budget, 20);
    assert.equal(few.state.reason, 'few-samples');
    const slow = step(state({ budget: 20, pv: 500 }), obs({ samples: 5, latencyMs: 500, finished: 5 }), RULE);
    assert.equal(slow.budget, 10);
    // requests hold the budget and none finished: the service has collapsed
    const stalled = step(state({ budget: 20, pv: 50 }), obs({ samples: 0, latencyMs: undefined, finished: 0, peakInFlight: 20 }), RULE);
    assert.equal(stalled.state.reason, 'stalled');
    assert.equal(stalled.budget, 10);
    const idle = step(state({ budget: 20, pv: 50 }), obs({ samples: 0, latencyMs: undefined, finished: 0, peakInFlight: 2 }), RULE);
    assert.equal(idle.state.reason, 'few-samples');
    assert.equal(idle.budget, 20);
    const errors = step(state({ budget: 20, pv: 50 }), obs({ latencyMs: 50, finished: 100, errors: 20 }), RULE);
    assert.equal(errors.state.reason, 'errors');
    assert.equal(errors.error, -1);
    assert.equal(errors.budget, 10);
  });

  test('never below floor × instances, never above ceiling × instances', () => {
    const low = step(state({ budget: 5, pv: 1000 }), obs({ latencyMs: 1000 }), RULE);
    assert.equal(low.budget, 4);
    assert.equal(low.state.reason, 'at-floor');
    const high = step(state({ budget: 1000, pv: 1 }), obs({ latencyMs: 1, peakInFlight: 1000 }), RULE);
    assert.equal(high.budget, 1024);
    assert.equal(high.state.reason, 'at-ceiling');
  });

  test('instances come and go: the per-instance level is kept, not the total', () => {
    const r = step(state({ budget: 30, instances: 3, pv: 100 }), obs({ instances: 2, latencyMs: 100, peakInFlight: 100 }), RULE);
    assert.equal(r.budget, 20);
  });

  test('no reports: hold, and after three silent ticks the limits lapse', () => {
    let s = state({ budget: 20 });
    const silent = obs({ reporting: 0, samples: 0, latencyMs: undefined });
    for (let i = 1; i <= 3; i++) {
      const r = step(s, silent, RULE);
      assert.equal(r.budget, 20);
      assert.equal(r.state.reason, 'stale');
      assert.equal(r.lapse, i === 3);
      s = r.state;
    }
  });

  test('the budget is split half evenly, half by goodput, within floor and ceiling; small moves stay inside the deadband', () => {
    assert.deepEqual(splitBudget(40, [{ id: 'a', goodput: 300 }, { id: 'b', goodput: 100 }], 4, 1024), new Map([['a', 25], ['b', 15]]));
    assert.deepEqual(splitBudget(40, [{ id: 'a', goodput: 0 }, { id: 'b', goodput: 0 }], 4, 1024), new Map([['a', 20], ['b', 20]]));
    assert.deepEqual(splitBudget(6, [{ id: 'a', goodput: 1 }, { id: 'b', goodput: 1 }, { id: 'c', goodput: 1 }], 4, 1024), new Map([['a', 4], ['b', 4], ['c', 4]]));
    assert.deepEqual(withDeadband(new Map([['a', 100], ['b', 10]]), new Map([['a', 104], ['b', 11], ['c', 7]]), 0.05), new Map([['a', 100], ['b', 11], ['c', 7]]));
  });
});

// ---------------------------------------------------------------- against the simulator

const MU = 400; // 8 workers × 1 / 20 ms
/** Unloaded M/M/8 upstream: p99 of the exponential service time is ≈ 92 ms. */
const SIM_RULE: StepRule = { ...RULE, latencyTargetMs: 100 };

function run(opts: { rate: (t: number) => number; workers?: (t: number) => number; durationMs: number; rule?: StepRule; seed?: number; enforce?: boolean }): { r: SimResult; lim: SextantSimLimiter } {
  const rule = opts.rule ?? SIM_RULE;
  const lim = new SextantSimLimiter({ rule, percentile: 99, leaseMs: 3000, failSafeLimit: 0, reflexTargetMs: 2 * rule.latencyTargetMs, reflexMaxCutPercent: 50 });
  const r = simulate({
    seed: opts.seed ?? 7, workers: opts.workers ?? (() => 8), meanServiceMs: 20, thrash: 0.5, rate: opts.rate, durationMs: opts.durationMs,
    gate: { queueSize: 8, queueTimeoutMs: 50, tiers: 2, tier0ReservePercent: 20, enforce: opts.enforce ?? true },
    limiter: lim, tier0Fraction: 0.1, deadlineMs: 500,
  });
  return { r, lim };
}

describe('against an M/M/c upstream in virtual time', () => {
  test('converges after a load step from 0.5μ to 2μ: goodput near capacity, admitted p99 near the target, limit steady', () => {
    const { r, lim } = run({ rate: (t) => (t < 20_000 ? 0.5 : 2) * MU, durationMs: 60_000 });
    const late = windowStats(r, 40_000, 60_000);
    assert.ok(late.ok / (MU * 20) >= 0.85, `goodput ratio ${(late.ok / (MU * 20)).toFixed(3)}`);
    assert.ok(late.shed > 0);
    const pushed = lim.history.filter((h) => h.t >= 40_000).map((h) => h.pushed);
    const mean = pushed.reduce((a, b) => a + b, 0) / pushed.length;
    const sd = Math.sqrt(pushed.reduce((a, b) => a + (b - mean) ** 2, 0) / pushed.length);
    assert.ok(sd / mean <= 0.2, `limit CV ${(sd / mean).toFixed(3)} over ${pushed.join(',')}`);
    // converged: within 10 s of the step every later 5 s window keeps goodput and latency
    for (let t0 = 30_000; t0 < 60_000; t0 += 5000) {
      const w = windowStats(r, t0, t0 + 5000);
      assert.ok(w.ok / (MU * 5) >= 0.8, `goodput ratio ${(w.ok / (MU * 5)).toFixed(3)} in [${t0}, ${t0 + 5000})`);
      assert.ok(w.admittedP99 <= 2.5 * SIM_RULE.latencyTargetMs, `admitted p99 ${w.admittedP99.toFixed(0)} ms in [${t0}, ${t0 + 5000})`);
    }
    // at half load nothing was shed
    assert.equal(windowStats(r, 0, 20_000).shed, 0);
  });

  test('never below the floor, even when capacity collapses under 5μ', () => {
    const floor = 6;
    const { r, lim } = run({ rate: () => 5 * MU, workers: (t) => (t < 10_000 ? 8 : 1), durationMs: 40_000, rule: { ...SIM_RULE, floor } });
    assert.ok(lim.history.length >= 39);
    assert.ok(lim.history.every((h) => h.pushed >= floor && h.budget >= floor), `pushed ${lim.history.map((h) => h.pushed).join(',')}`);
    assert.ok(r.limits.every(([, l]) => l >= floor));
    assert.equal(lim.history.at(-1)?.pushed, floor);
    assert.equal(lim.history.at(-1)?.reason, 'at-floor');
  });

  test('no windup at the floor: when capacity returns, the limit climbs back within a few ticks', () => {
    // 20 s with one worker at 2μ pins the limit to the floor; then eight workers again
    const { r, lim } = run({ rate: () => 2 * MU, workers: (t) => (t < 20_000 ? 1 : 8), durationMs: 40_000 });
    const pinned = lim.history.filter((h) => h.t > 10_000 && h.t <= 20_000);
    assert.ok(pinned.every((h) => h.pushed === 4), `pinned ${pinned.map((h) => h.pushed).join(',')}`);
    const back = lim.history.find((h) => h.t > 20_000 && h.pushed >= 8);
    assert.ok(back !== undefined && back.t <= 26_000, `the limit reached 8 at ${back?.t} ms`);
    const w = windowStats(r, 30_000, 40_000);
    assert.ok(w.ok / (MU * 10) >= 0.85, `goodput ratio after recovery ${(w.ok / (MU * 10)).toFixed(3)}`);
  });

  test('no windup at the ceiling: held there for 30 s, the first overloaded tick cuts', () => {
    // ceiling 10: at 0.9μ the service uses it and latency is under a lenient target
    const rule = { ...SIM_RULE, latencyTargetMs: 400, initial: 10, ceiling: 10 };
    const { lim } = run({ rate: () => 0.9 * MU, workers: (t) => (t < 30_000 ? 8 : 2), durationMs: 40_000, rule });
    const held = lim.history.filter((h) => h.t > 5000 && h.t <= 30_000);
    assert.ok(held.every((h) => h.pushed === 10), `held ${held.map((h) => h.pushed).join(',')}`);
    assert.ok(held.some((h) => h.reason === 'at-ceiling'));
    const cut = lim.history.find((h) => h.t > 30_000 && h.pushed < 10);
    assert.ok(cut !== undefined && cut.t <= 33_000, `first cut at ${cut?.t} ms`);
  });

  test('no growth while the limit is not used: an idle service keeps its initial limit', () => {
    const { lim } = run({ rate: () => 0.3 * MU, durationMs: 60_000 });
    assert.ok(lim.history.every((h) => h.pushed <= SIM_RULE.initial), `pushed ${lim.history.map((h) => h.pushed).join(',')}`);
    assert.ok(lim.history.filter((h) => h.t > 5000).every((h) => h.reason === 'app-limited' || h.reason === 'tracking'));
  });

  test('shadow mode refuses nothing and counts what it would have shed', () => {
    const { r } = run({ rate: (t) => (t < 10_000 ? 0.5 : 2) * MU, durationMs: 30_000, enforce: false });
    const w = windowStats(r, 10_000, 30_000);
    assert.equal(w.shed, 0);
    assert.ok(w.wouldShed > 0);
  });

  test('the same seed gives the same run', () => {
    const a = run({ rate: (t) => (t < 5000 ? 0.5 : 3) * MU, durationMs: 15_000, seed: 11 });
    const b = run({ rate: (t) => (t < 5000 ? 0.5 : 3) * MU, durationMs: 15_000, seed: 11 });
    assert.deepEqual(a.lim.history, b.lim.history);
    assert.equal(a.r.count, b.r.count);
  });
});
