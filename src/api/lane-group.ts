// Sextant's LaneGroup kind (sextant.io/v1alpha1): isolated environments ("lanes") over a set of
// services. The spec type, its structural schema and semantic rules (strict mode: every lane holds
// every service, checked at apply time), and the names the pilot and the sidecars agree on.
// Also the DestinationRule annotation that sets the local-health threshold of locality failover.
import { checkIPOrCIDR, parseDurationMs } from './checks.ts';
import type { Duration } from './kinds.ts';
import { arr, int, obj, str, strEnum, strs, type NodeRule, type ObjectSchema } from './schema.ts';
import type { ResourceName } from './semantic.ts';
import type { Issues } from './schema.ts';

export const LANE_GROUP_API_VERSION = 'sextant.io/v1alpha1';
/** The workload label that puts an instance in a lane (a VM's sidecar takes it from SEXTANT_LANE). */
export const LANE_LABEL = 'sextant.io/lane';
/** The request header that names a request's lane between sidecars. */
export const LANE_HEADER = 'x-sextant-lane';
/** The key a lane is written under in tracer carriers (baggage, tracestate, sw8-correlation, uberctx-, ot-baggage-). */
export const LANE_CARRIER_KEY = 'sextant-lane';
export const DEFAULT_BASELINE = 'baseline';
export const LANE_TRACE_TABLE_DEFAULTS = Object.freeze({ maxEntries: 10_000, ttlMs: 60_000 });
/** Upper bounds of the trace table, per sidecar: memory stays bounded whatever a group asks. */
export const LANE_TRACE_TABLE_LIMITS = Object.freeze({ maxEntries: 1_000_000, ttlMs: 3_600_000 });

/**
 * DestinationRule annotation: the share of a locality's (data centre's) endpoints that must be
 * healthy for it to keep all of its traffic (percent, 1..100); below it traffic spills to the
 * next locality in proportion. It is Envoy's overprovisioning factor (100 / threshold) in human
 * terms. Without it Envoy's default factor 1.4 holds (about 72 %).
 */
export const FAILOVER_THRESHOLD_ANNOTATION = 'sextant.io/failover-threshold';

export interface LaneMock {
  /** The service the lane answers for (a host of the group's services). */
  service: string;
  /** A fixed answer. */
  directResponse?: { status: number; body?: string };
  /** Or another service that stands in for it (a ServiceEntry host), on `port` (default: its only port). */
  host?: string;
  port?: number;
}

export interface LaneSpec {
  /** Lowercase DNS labels joined by dots; `s2.alice` falls back to `s2`, then to the baseline. */
  name: string;
  /** The services this lane holds instances of. Required in strict mode, where it must name every service of the group. */
  services?: string[];
  mocks?: LaneMock[];
}

export interface LaneGroupSpec {
  /** The services the group covers (ServiceEntry hosts; a short name resolves in the group's namespace). */
  services: string[];
  /** The lane of instances without the lane label (or labelled with this name). Default `baseline`. */
  baseline?: string;
  /**
   * permissive (default): a lane without a healthy instance of a service falls back to its parent
   * lane, then to the baseline. strict: every lane holds every service, and there is no fallback.
   */
  mode?: 'permissive' | 'strict';
  lanes: LaneSpec[];
  /** The sidecars' bounded, expiring table of recent inbound requests (trace id → lane). */
  traceTable?: { maxEntries?: number; ttl?: Duration };
  /** Callers outside the mesh (CIDRs) whose lane headers and carriers a sidecar honours; others' are stripped. */
  trustedSources?: string[];
}

/** Short names resolve in the resource's namespace, as Istio's hosts do. */
export function resolveLaneHost(host: string, namespace: string): string {
  return host.includes('.') ? host : `${host}.${namespace}.svc.cluster.local`;
}

/** `s2.alice` → `s2`; a top-level lane has no parent. */
export function parentLane(name: string): string | undefined {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(0, dot) : undefined;
}

// ---------------------------------------------------------------- schema

const LANE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const laneName = (): ReturnType<typeof str> => str({ minLength: 1, maxLength: 63, pattern: LANE_NAME, patternHint: 'lowercase letters, digits and "-", in labels joined by "." (e.g. s2 or s2.alice)' });

const durationWithin = (minMs: number, maxMs: number): NodeRule<string> => (v, path, issues) => {
  const n = parseDurationMs(v);
  if (n === undefined) issues.add(path, `Invalid value: ${JSON.stringify(v)}: must be a duration such as "30s" or "1m"`);
  else if (n < minMs || n > maxMs) issues.add(path, `Invalid value: ${JSON.stringify(v)}: must be between ${minMs / 1000}s and ${maxMs / 1000}s`);
};

const host = (): ReturnType<typeof str> => str({ minLength: 1, maxLength: 253 });

/** The structural schema of LaneGroup's spec. */
export const laneGroupSchema: ObjectSchema = obj({
  services: strs({ minItems: 1, maxItems: 1000 }, host()),
  baseline: laneName(),
  mode: strEnum(['permissive', 'strict']),
  lanes: arr(obj({
    name: laneName(),
    services: strs({ maxItems: 1000 }, host()),
    mocks: arr(obj({
      service: host(),
      directResponse: obj({ status: int({ min: 200, max: 599 }), body: str({ maxLength: 65_536 }) }, { required: ['status'] }),
      host: host(),
      port: int({ min: 1, max: 65535 }),
    }, { required: ['service'], oneOf: [['directResponse', 'host']] }), { maxItems: 1000 }),
  }, { required: ['name'] }), { minItems: 1, maxItems: 256 }),
  traceTable: obj({
    maxEntries: int({ min: 1, max: LANE_TRACE_TABLE_LIMITS.maxEntries }),
    ttl: str({ rules: [durationWithin(1000, LANE_TRACE_TABLE_LIMITS.ttlMs)] }),
  }),
  trustedSources: strs({ maxItems: 256 }, str({
    rules: [(v, path, issues) => {
      const e = checkIPOrCIDR(v);
      if (e !== undefined) issues.add(path, `Invalid value: ${JSON.stringify(v)}: ${e}`);
    }],
  })),
}, { required: ['services', 'lanes'] });

// ---------------------------------------------------------------- semantic rules

/**
 * Lanes are unique and differ from the baseline; a child lane's parent is declared; lane
 * services and mocks name services of the group; a mock is either a fixed answer or a host. In
 * strict mode each lane must list (or mock) every service of the group: the first missing one
 * is named, so `sextant apply` refuses the group before any request is routed by it.
 */
export function checkLaneGroup(spec: LaneGroupSpec, id: ResourceName, issues: Issues): void {
  const baseline = spec.baseline ?? DEFAULT_BASELINE;
  const services = new Map<string, number>();
  spec.services.forEach((s, i) => {
    const h = resolveLaneHost(s, id.namespace);
    if (services.has(h)) issues.add(`spec.services[${i}]`, `Duplicate value: ${JSON.stringify(s)} (also spec.services[${services.get(h)}])`);
    else services.set(h, i);
  });
  const names = new Set<string>();
  spec.lanes.forEach((lane, i) => {
    const p = `spec.lanes[${i}]`;
    if (lane.name === baseline) issues.add(`${p}.name`, `Invalid value: ${JSON.stringify(lane.name)}: the baseline is not declared as a lane`);
    if (names.has(lane.name)) issues.add(`${p}.name`, `Duplicate value: lane ${JSON.stringify(lane.name)} is declared twice`);
    names.add(lane.name);
  });
  spec.lanes.forEach((lane, i) => {
    const p = `spec.lanes[${i}]`;
    const parent = parentLane(lane.name);
    if (parent !== undefined && !names.has(parent)) {
      issues.add(`${p}.name`, `Invalid value: ${JSON.stringify(lane.name)}: its parent lane ${JSON.stringify(parent)} is not declared in spec.lanes`);
    }
    const held = new Set<string>();
    (lane.services ?? []).forEach((s, j) => {
      const h = resolveLaneHost(s, id.namespace);
      if (!services.has(h)) issues.add(`${p}.services[${j}]`, `Invalid value: ${JSON.stringify(s)}: not one of the group's spec.services`);
      held.add(h);
    });
    const mocked = new Set<string>();
    (lane.mocks ?? []).forEach((m, j) => {
      const mp = `${p}.mocks[${j}]`;
      const h = resolveLaneHost(m.service, id.namespace);
      if (!services.has(h)) issues.add(`${mp}.service`, `Invalid value: ${JSON.stringify(m.service)}: not one of the group's spec.services`);
      if (mocked.has(h)) issues.add(`${mp}.service`, `Duplicate value: ${JSON.stringify(m.service)} is mocked twice in lane ${JSON.stringify(lane.name)}`);
      mocked.add(h);
      if (m.directResponse === undefined && m.host === undefined) issues.add(mp, 'Required value: one of directResponse or host');
      if (m.port !== undefined && m.host === undefined) issues.add(`${mp}.port`, 'Invalid value: port applies to a mock host only');
    });
    if (spec.mode === 'strict') {
      if (lane.services === undefined) {
        issues.add(`${p}.services`, `Required value: strict mode: lane ${JSON.stringify(lane.name)} must list the services it holds (every one of spec.services)`);
        return;
      }
      for (const [h] of services) {
        if (held.has(h) || mocked.has(h)) continue;
        issues.add(`${p}.services`, `strict mode: lane ${JSON.stringify(lane.name)} is missing service ${h}; every lane of a strict group holds every service of spec.services (add it to the lane, mock it, or use mode: permissive)`);
      }
    }
  });
}

/** The local-health threshold of the annotation (percent), or a message saying what is wrong. */
export function parseFailoverThreshold(value: string): number | { error: string } {
  const t = value.trim().replace(/%$/, '');
  if (!/^\d{1,3}$/.test(t) || Number(t) < 1 || Number(t) > 100) {
    return { error: `Invalid value: ${JSON.stringify(value)}: a percentage of healthy endpoints from 1 to 100 (e.g. "50")` };
  }
  return Number(t);
}
