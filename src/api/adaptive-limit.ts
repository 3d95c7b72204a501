// Sextant's AdaptiveLimit kind (sextant.io/v1alpha1): one adaptive concurrency rule per service.
// The spec type, its structural schema, its semantic rules, and the settings with every default
// filled in, which the pilot's generators and the adaptive-limits controller both read.
import { checkFQDN, checkHeaderName, parseDurationMs } from './checks.ts';
import type { Duration } from './kinds.ts';
import { bool, int, num, obj, str, type NodeRule, type ObjectSchema } from './schema.ts';
import type { ResourceName } from './semantic.ts';
import type { Issues } from './schema.ts';

export const ADAPTIVE_LIMIT_GROUP = 'sextant.io';
export const ADAPTIVE_LIMIT_VERSION = 'v1alpha1';
export const ADAPTIVE_LIMIT_API_VERSION = `${ADAPTIVE_LIMIT_GROUP}/${ADAPTIVE_LIMIT_VERSION}`;

/** The latency percentiles the sidecars report (LRS `latency_ms_pNN`). */
export const LATENCY_PERCENTILES = [50, 90, 99] as const;
export type LatencyPercentile = (typeof LATENCY_PERCENTILES)[number];

export interface AdaptiveLimitSpec {
  /** The service whose instances are limited (a ServiceEntry host; a short name resolves in the rule's namespace). */
  host: string;
  /** The service port; absent: every HTTP port of the service. */
  port?: number;
  /** Refuse requests over the limit; false (the default) is shadow mode: would-be rejects are counted, nothing is refused. */
  enforce?: boolean;
  /** The setpoint (the SLO): admitted requests' latency at a percentile, and the highest error rate. */
  target: { latency: Duration; percentile?: LatencyPercentile; errorRate?: number };
  /** The controller: PI(D) gains on the normalised error, tick interval, step limits per tick, deadband. */
  pid?: { kp?: number; ki?: number; kd?: number; interval?: Duration; maxStepUp?: number; maxStepDown?: number; deadband?: number };
  /** Admitted concurrency per instance: never below floor, never above ceiling, initial until the first tick. */
  limits?: { floor?: number; initial?: number; ceiling?: number };
  /** The sidecar's short queue in front of the gate. */
  queue?: { size?: number; timeout?: Duration };
  /** Priority tiers: `header` carries 0..tiers-1 (absent: the lowest tier); tier 0 keeps a reserve of the limit. */
  priority?: { header?: string; tiers?: number; tier0ReservePercent?: number };
  /** The answer to a shed request. */
  reject?: { status?: number; body?: string };
  /** What holds while no lease does: `limit` 0 is unlimited; `lease` is the TTL of pushed limits. */
  failSafe?: { limit?: number; lease?: Duration };
  /** The sidecar's local reflex between ticks (it may only lower the limit). */
  reflex?: { latencyTarget?: Duration; maxCutPercent?: number };
}

/** A rule with every default filled in and durations in milliseconds. */
export interface AdaptiveLimitSettings {
  host: string;
  port: number | undefined;
  enforce: boolean;
  latencyTargetMs: number;
  percentile: LatencyPercentile;
  errorRate: number;
  kp: number;
  ki: number;
  kd: number;
  intervalMs: number;
  maxStepUp: number;
  maxStepDown: number;
  deadband: number;
  floor: number;
  initial: number;
  ceiling: number;
  queueSize: number;
  queueTimeoutMs: number;
  tierHeader: string;
  tiers: number;
  tier0ReservePercent: number;
  rejectStatus: number;
  rejectBody: string;
  failSafeLimit: number;
  leaseMs: number;
  reflexLatencyTargetMs: number;
  reflexMaxCutPercent: number;
}

export const ADAPTIVE_LIMIT_DEFAULTS = Object.freeze({
  percentile: 90 as LatencyPercentile,
  errorRate: 0.05,
  // tuned on the overload benchmark's M/M/c plant (bench/overload): steady limits (CV ≈ 0.07)
  // and convergence within 2 s of a load step
  kp: 0.3,
  ki: 0.3,
  kd: 0,
  intervalMs: 1000,
  maxStepUp: 0.15,
  maxStepDown: 0.4,
  deadband: 0.05,
  floor: 4,
  initial: 64,
  ceiling: 1024,
  queueSize: 16,
  tierHeader: 'x-sextant-priority',
  tiers: 1,
  tier0ReservePercent: 0,
  rejectStatus: 503,
  rejectBody: 'overloaded: admission limit reached',
  failSafeLimit: 0,
  /** The shortest lease: a TTL shorter than a few heartbeats would lapse on one lost write. */
  minLeaseMs: 3000,
  reflexMaxCutPercent: 50,
});

const ms = (d: Duration | undefined): number | undefined => (d === undefined ? undefined : parseDurationMs(d));

/**
 * The rule's settings with defaults: the queue waits at most twice the latency target (bounded
 * to 1 s), the lease is three ticks (at least 3 s), the reflex fires at twice the target.
 * Call on a spec that validated.
 */
export function adaptiveLimitSettings(spec: AdaptiveLimitSpec): AdaptiveLimitSettings {
  const d = ADAPTIVE_LIMIT_DEFAULTS;
  const latencyTargetMs = ms(spec.target.latency) ?? 100;
  const intervalMs = ms(spec.pid?.interval) ?? d.intervalMs;
  const floor = spec.limits?.floor ?? d.floor;
  const ceiling = spec.limits?.ceiling ?? Math.max(d.ceiling, floor);
  const initial = spec.limits?.initial ?? Math.min(Math.max(d.initial, floor), ceiling);
  const tiers = spec.priority?.tiers ?? d.tiers;
  return {
    host: spec.host,
    port: spec.port,
    enforce: spec.enforce === true,
    latencyTargetMs,
    percentile: spec.target.percentile ?? d.percentile,
    errorRate: spec.target.errorRate ?? d.errorRate,
    kp: spec.pid?.kp ?? d.kp,
    ki: spec.pid?.ki ?? d.ki,
    kd: spec.pid?.kd ?? d.kd,
    intervalMs,
    maxStepUp: spec.pid?.maxStepUp ?? d.maxStepUp,
    maxStepDown: spec.pid?.maxStepDown ?? d.maxStepDown,
    deadband: spec.pid?.deadband ?? d.deadband,
    floor,
    initial,
    ceiling,
    queueSize: spec.queue?.size ?? d.queueSize,
    queueTimeoutMs: ms(spec.queue?.timeout) ?? Math.min(2 * latencyTargetMs, 1000),
    tierHeader: spec.priority?.header ?? d.tierHeader,
    tiers,
    tier0ReservePercent: spec.priority?.tier0ReservePercent ?? d.tier0ReservePercent,
    rejectStatus: spec.reject?.status ?? d.rejectStatus,
    rejectBody: spec.reject?.body ?? d.rejectBody,
    failSafeLimit: spec.failSafe?.limit ?? d.failSafeLimit,
    leaseMs: ms(spec.failSafe?.lease) ?? Math.max(d.minLeaseMs, 3 * intervalMs),
    reflexLatencyTargetMs: ms(spec.reflex?.latencyTarget) ?? 2 * latencyTargetMs,
    reflexMaxCutPercent: spec.reflex?.maxCutPercent ?? d.reflexMaxCutPercent,
  };
}

// ---------------------------------------------------------------- schema

const durationBetween = (minMs: number, maxMs: number): NodeRule<string> => (v, path, issues) => {
  const n = parseDurationMs(v);
  if (n === undefined) issues.add(path, `Invalid value: ${JSON.stringify(v)}: must be a duration such as "100ms", "1s" or "1m30s"`);
  else if (n < minMs || n > maxMs) issues.add(path, `Invalid value: ${JSON.stringify(v)}: must be between ${formatMs(minMs)} and ${formatMs(maxMs)}`);
};

function formatMs(n: number): string {
  return n % 1000 === 0 ? `${n / 1000}s` : `${n}ms`;
}

const duration = (minMs: number, maxMs: number): ObjectSchema['fields'][string] => str({ rules: [durationBetween(minMs, maxMs)] });

/** The structural schema of AdaptiveLimit's spec. */
export const adaptiveLimitSchema: ObjectSchema = obj({
  host: str({ minLength: 1, maxLength: 253 }),
  port: int({ min: 1, max: 65535 }),
  enforce: bool(),
  target: obj({
    latency: duration(1, 60_000),
    percentile: int({
      rules: [(v, path, issues) => {
        if (!(LATENCY_PERCENTILES as readonly number[]).includes(v)) issues.add(path, `Unsupported value: ${v}: supported values: ${LATENCY_PERCENTILES.join(', ')}`);
      }],
    }),
    errorRate: num({ min: 0.0001, max: 1 }),
  }, { required: ['latency'] }),
  pid: obj({
    kp: num({ min: 0, max: 100 }),
    ki: num({ min: 0, max: 100 }),
    kd: num({ min: 0, max: 100 }),
    interval: duration(100, 60_000),
    maxStepUp: num({ min: 0.001, max: 10 }),
    maxStepDown: num({ min: 0.001, max: 0.95 }),
    deadband: num({ min: 0, max: 0.5 }),
  }),
  limits: obj({
    floor: int({ min: 1, max: 1_000_000 }),
    initial: int({ min: 1, max: 1_000_000 }),
    ceiling: int({ min: 1, max: 1_000_000 }),
  }),
  queue: obj({
    size: int({ min: 0, max: 100_000 }),
    timeout: duration(1, 60_000),
  }),
  priority: obj({
    header: str({ minLength: 1, maxLength: 256 }),
    tiers: int({ min: 1, max: 16 }),
    tier0ReservePercent: num({ min: 0, max: 90 }),
  }),
  reject: obj({
    status: int({ min: 400, max: 599 }),
    body: str({ maxLength: 4096 }),
  }),
  failSafe: obj({
    limit: int({ min: 0, max: 1_000_000 }),
    lease: duration(1000, 3_600_000),
  }),
  reflex: obj({
    latencyTarget: duration(1, 60_000),
    maxCutPercent: num({ min: 0, max: 90 }),
  }),
}, { required: ['host', 'target'] });

/** The rules across fields: limits ordered, the lease longer than two ticks, a host without wildcards. */
export function checkAdaptiveLimit(spec: AdaptiveLimitSpec, _id: ResourceName, issues: Issues): void {
  if (spec.host.includes('*')) issues.add('spec.host', `Invalid value: ${JSON.stringify(spec.host)}: an adaptive limit names one service, not a wildcard`);
  else {
    const e = checkFQDN(spec.host);
    if (e !== undefined) issues.add('spec.host', e);
  }
  if (spec.priority?.header !== undefined) {
    const e = checkHeaderName(spec.priority.header);
    if (e !== undefined) issues.add('spec.priority.header', e);
    else if (spec.priority.header !== spec.priority.header.toLowerCase()) issues.add('spec.priority.header', `Invalid value: ${JSON.stringify(spec.priority.header)}: header names are matched in lower case; write it so`);
  }
  const s = adaptiveLimitSettings(spec);
  if (spec.limits !== undefined) {
    if (s.initial < s.floor) issues.add('spec.limits.initial', `Invalid value: ${s.initial}: must be at least floor (${s.floor})`);
    if (s.ceiling < s.floor) issues.add('spec.limits.ceiling', `Invalid value: ${s.ceiling}: must be at least floor (${s.floor})`);
    else if (s.ceiling < s.initial) issues.add('spec.limits.ceiling', `Invalid value: ${s.ceiling}: must be at least initial (${s.initial})`);
  }
  if (s.failSafeLimit > 0 && s.failSafeLimit < s.floor) {
    issues.add('spec.failSafe.limit', `Invalid value: ${s.failSafeLimit}: the fail-safe must be 0 (unlimited) or at least floor (${s.floor}); limits never go below the floor`);
  }
  if (spec.failSafe?.lease !== undefined && s.leaseMs < 2 * s.intervalMs) {
    issues.add('spec.failSafe.lease', `Invalid value: ${JSON.stringify(spec.failSafe.lease)}: must be at least two controller intervals (${formatMs(2 * s.intervalMs)}), or every tick would risk a lapse`);
  }
  if (spec.priority?.tier0ReservePercent !== undefined && spec.priority.tier0ReservePercent > 0 && s.tiers < 2) {
    issues.add('spec.priority.tier0ReservePercent', 'Invalid value: a tier-0 reserve needs at least 2 tiers (spec.priority.tiers)');
  }
}
