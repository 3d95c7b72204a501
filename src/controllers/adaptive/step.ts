// The adaptive-limits control law: one PID loop per rule, a pure function of its state, one
// interval's observation and the rule. The actuator is the service's concurrency budget C
// (the sum of its instances' limits); the process value is the admitted requests' latency at
// the rule's percentile; the setpoint is the rule's latency target (the SLO, never a probed
// baseline). Velocity form, multiplicative so the same gains work at 10 and 10,000 rps:
//
//   e_k = (target − PV_k) / target                      (normalised; ≤ 1)
//   C_k = C_{k−1} · clip(1 + Kp·(e_k − e_{k−1}) + Ki·Ts·e_k + Kd·(e_k − 2e_{k−1} + e_{k−2})/Ts,
//                        1 − maxStepDown, 1 + maxStepUp)
//
// clamped to [floor·n, ceiling·n] for n healthy instances. A velocity-form loop keeps no
// integral sum, so saturation (at the floor, the ceiling or a step limit) cannot wind it up;
// what it keeps of the past is C itself and the last two errors. Growth is refused while the
// service does not use its budget (peak in-flight under half of C: the limit is not what holds
// latency down) and while there are too few samples to trust a percentile; an error rate above
// the rule's counts as e = −1 (a multiplicative cut), whatever the latency says, and so does a
// stall (requests hold the budget and none finished: the service has collapsed). While the
// gates shed and latency is clearly under the target, the budget grows by the step limit: a
// setpoint just above the unloaded latency would otherwise leave a low limit creeping up.

import type { AdaptiveLimitSettings } from '../../api/index.ts';

/** The rule's parameters the step reads. `deadband`: |e| below it is on target (no integral action, so no hunting around the setpoint). */
export type StepRule = Pick<AdaptiveLimitSettings,
  'latencyTargetMs' | 'errorRate' | 'kp' | 'ki' | 'kd' | 'intervalMs' | 'maxStepUp' | 'maxStepDown' | 'deadband' | 'floor' | 'initial' | 'ceiling'>;

/** One interval of the service, summed over its reporting instances. */
export interface Observation {
  /** Healthy instances sharing the budget. */
  instances: number;
  /** Instances that reported in this interval. */
  reporting: number;
  /** Admitted requests that finished with a latency sample. */
  samples: number;
  /** The admitted requests' latency at the rule's percentile (ms); undefined without samples. */
  latencyMs: number | undefined;
  /** Admitted requests that finished (successes + errors). */
  finished: number;
  /** Errors among them (5xx by the app, gate timeouts). */
  errors: number;
  /** Sum over instances of the highest concurrency seen in the interval. */
  peakInFlight: number;
  /** Requests the gates shed (or, in shadow mode, would have) in the interval: demand over the limit. */
  shed: number;
}

export type StepReason =
  | 'tracking'        // moved (or held inside the deadband) on the latency error
  | 'demand'          // grew by the step limit: requests are shed while latency is under the target
  | 'errors'          // cut: the error rate is above the rule's
  | 'app-limited'     // growth refused: the service uses under half of its budget
  | 'few-samples'     // held: too few samples for a percentile
  | 'stalled'         // cut: requests hold the budget and none finished
  | 'stale'           // held: no instance reported
  | 'no-instances'    // held: no healthy instance
  | 'at-floor'        // clamped at floor × instances
  | 'at-ceiling';     // clamped at ceiling × instances

export interface PidState {
  /** C: the service's budget (admitted concurrency over all healthy instances), fractional. */
  budget: number;
  /** Healthy instances the budget was last split over (it is rescaled when they change). */
  instances: number;
  /** The smoothed process value (ms); undefined before the first samples. */
  pv: number | undefined;
  /** e_{k−1}, e_{k−2}. */
  e1: number;
  e2: number;
  /** Consecutive ticks without any report. */
  staleTicks: number;
  ticks: number;
  reason: StepReason;
}

export interface StepResult {
  state: PidState;
  /** The budget to split (= state.budget). */
  budget: number;
  /** The error this tick acted on (after the error loop and deadband). */
  error: number;
  /** Whether the limits should lapse (stale too long): publish none, let the fail-safe hold. */
  lapse: boolean;
}

/** Fewest latency samples a tick needs before a percentile is trusted. */
export const MIN_SAMPLES = 20;
/** Ticks without reports after which the limits lapse to the fail-safe. */
export const STALE_TICKS_TO_LAPSE = 3;
/** EWMA weight of a new PV sample. */
export const PV_SMOOTHING = 0.5;

/** The state of a rule that has not ticked yet: its initial limit on each instance. */
export function initialState(rule: StepRule, instances: number): PidState {
  const n = Math.max(instances, 1);
  return { budget: rule.initial * n, instances: n, pv: undefined, e1: 0, e2: 0, staleTicks: 0, ticks: 0, reason: 'tracking' };
}

const clamp = (x: number, lo: number, hi: number): number => Math.min(Math.max(x, lo), hi);

/** One tick of the loop. Pure: same inputs, same outputs. */
export function step(prev: PidState, obs: Observation, rule: StepRule): StepResult {
  const n = obs.instances;
  const base = { ...prev, ticks: prev.ticks + 1 };
  if (n <= 0) {
    const state: PidState = { ...base, reason: 'no-instances' };
    return { state, budget: state.budget, error: 0, lapse: false };
  }
  // Instances came or went: keep the per-instance level, not the total.
  let budget = prev.instances > 0 && prev.instances !== n ? (prev.budget / prev.instances) * n : prev.budget;
  const lo = rule.floor * n;
  const hi = rule.ceiling * n;
  budget = clamp(budget, lo, hi);

  if (obs.reporting === 0) {
    const staleTicks = prev.staleTicks + 1;
    const state: PidState = { ...base, budget, instances: n, staleTicks, reason: 'stale' };
    return { state, budget, error: 0, lapse: staleTicks >= STALE_TICKS_TO_LAPSE };
  }

  const errorRate = obs.finished > 0 ? obs.errors / obs.finished : 0;
  const errorsHigh = obs.finished >= MIN_SAMPLES && errorRate > rule.errorRate;
  // Few samples are no basis for growth, but a collapsed service finishes few requests: a few
  // slow ones, or none at all while requests hold the budget, are reason enough to cut.
  const trusted = obs.samples >= MIN_SAMPLES && obs.latencyMs !== undefined;
  const slowFew = !trusted && obs.samples > 0 && obs.latencyMs !== undefined && obs.latencyMs > rule.latencyTargetMs * (1 + rule.deadband);
  const stalled = obs.finished === 0 && obs.peakInFlight >= budget / 2;
  if (!trusted && !slowFew && !errorsHigh && !stalled) {
    const state: PidState = { ...base, budget, instances: n, staleTicks: 0, reason: 'few-samples' };
    return { state, budget, error: 0, lapse: false };
  }

  const pv = !trusted && !slowFew ? prev.pv : prev.pv === undefined ? obs.latencyMs! : PV_SMOOTHING * obs.latencyMs! + (1 - PV_SMOOTHING) * prev.pv;
  let e = pv === undefined ? 0 : (rule.latencyTargetMs - pv) / rule.latencyTargetMs;
  let reason: StepReason = 'tracking';
  if (errorsHigh) {
    e = Math.min(e, -1);
    reason = 'errors';
  } else if (stalled) {
    e = Math.min(e, -1);
    reason = 'stalled';
  }
  const eI = Math.abs(e) < rule.deadband ? 0 : e;
  const ts = rule.intervalMs / 1000;
  const delta = rule.kp * (e - prev.e1) + rule.ki * ts * eI + (rule.kd * (e - 2 * prev.e1 + prev.e2)) / ts;
  let factor = clamp(1 + delta, 1 - rule.maxStepDown, 1 + (trusted ? rule.maxStepUp : 0));
  // The limit is what holds back work the service has room for: requests are being shed while
  // latency is clearly under the target. Grow by the step limit (an additive probe, as Envoy's
  // √L headroom or Netflix's queue term), not by the integral's creep near the setpoint.
  if (trusted && reason === 'tracking' && e > rule.deadband && obs.shed > 0 && factor < 1 + rule.maxStepUp) {
    factor = 1 + rule.maxStepUp;
    reason = 'demand';
  }
  // The limit is not what holds the service back: raising it would only store up a burst.
  if (factor > 1 && obs.peakInFlight < budget / 2) {
    factor = 1;
    reason = 'app-limited';
  }
  let next = budget * factor;
  if (next <= lo) {
    next = lo;
    if (factor < 1 && reason === 'tracking') reason = 'at-floor';
  } else if (next >= hi) {
    next = hi;
    if (factor > 1) reason = 'at-ceiling';
  }
  const state: PidState = { budget: next, instances: n, pv, e1: e, e2: prev.e1, staleTicks: 0, ticks: prev.ticks + 1, reason };
  return { state, budget: next, error: e, lapse: false };
}
