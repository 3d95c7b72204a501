// The lanes filter (`sextant.filters.http.lanes`): on an outbound request, which lane it is in,
// first that applies: the lane header; a lane key in a tracer carrier; a trace id of the request
// found in this sidecar's table of recent inbound requests; the sidecar's own lane; the
// baseline. The lane then rides in `x-sextant-lane`, which the routes match. On an inbound
// request: the lane header (or carrier), stripped first when the caller is outside the mesh and
// not trusted, recorded against the request's trace ids and written into the carriers the app
// gets. Responses say which lane served and why; a counter keeps lane × served lane × reason.
import type { ProtoJson } from '../../../envoy/index.ts';
import type { RawHeader } from '../../http/index.ts';
import { ConfigError } from '../../config/fields.ts';
import { compileCidr } from '../rbac/index.ts';
import { TraceTable, type LaneContext } from './trace-table.ts';
import { carrierLane, hasTracerId, mintTraceparent, stripCarriers, traceKeys, writeCarriers } from './propagation.ts';

export const LANES_TYPE = 'type.googleapis.com/sextant.filters.http.lanes.v1alpha1.Lanes';
export const LANE_HEADER = 'x-sextant-lane';
export const SERVED_LANE_HEADER = 'x-sextant-served-lane';
export const LANE_REASON_HEADER = 'x-sextant-lane-reason';
export const REQUESTED_LANE_HEADER = 'x-sextant-requested-lane';
export const LANE_MISS_HEADER = 'x-sextant-lane-miss';
export const ORIGIN_DC_HEADER = 'x-sextant-origin-dc';
export const CALLER_DC_HEADER = 'x-sextant-caller-dc';

/** Why a request is in its lane. */
export type LaneReason = 'header' | 'carrier' | 'trace' | 'own' | 'baseline';

/** One connection manager's lanes filter, as the pilot configured it. */
export interface LaneFilter {
  direction: 'inbound' | 'outbound';
  ownLane: string;
  baseline: string;
  lanes: ReadonlySet<string>;
  strictHosts: ReadonlySet<string>;
  traceTable: { maxEntries: number; ttlMs: number };
  trusted: readonly ((ip: string) => boolean)[];
  dataCentre: string | undefined;
}

/** A connection manager's lanes filter with the proxy's state, as the router holds it. */
export interface LaneRuntime {
  filter: LaneFilter;
  state: LaneState;
}

/** The lane decided for one request, kept with its outcome until the response. */
export interface LaneDecision {
  filter: LaneFilter;
  state: LaneState;
  lane: string;
  reason: LaneReason;
}

const MAX_LANE_SERIES = 4096;

/** Per proxy: the trace table every connection manager shares, and the lane counters. */
export class LaneState {
  readonly table: TraceTable;
  // lane → served lane → reason → count: no label string is built per request
  private readonly counts = new Map<string, Map<string, Map<LaneReason, number>>>();
  private series = 0;
  /** Series not created because the counter reached its bound. */
  droppedSeries = 0;

  constructor(maxEntries = 10_000, ttlMs = 60_000) {
    this.table = new TraceTable(maxEntries, ttlMs);
  }

  private configured = false;

  /** Takes a filter's table bounds (every filter of a proxy carries the same ones); true the first time. */
  configure(f: LaneFilter): boolean {
    if (this.table.maxEntries !== f.traceTable.maxEntries || this.table.ttlMs !== f.traceTable.ttlMs) this.table.resize(f.traceTable.maxEntries, f.traceTable.ttlMs);
    const first = !this.configured;
    this.configured = true;
    return first;
  }

  count(lane: string, served: string, reason: LaneReason): void {
    let byServed = this.counts.get(lane);
    if (byServed === undefined) this.counts.set(lane, (byServed = new Map()));
    let byReason = byServed.get(served);
    if (byReason === undefined) byServed.set(served, (byReason = new Map()));
    const n = byReason.get(reason);
    if (n !== undefined) byReason.set(reason, n + 1);
    else if (this.series < MAX_LANE_SERIES) {
      byReason.set(reason, 1);
      this.series++;
    } else this.droppedSeries++;
  }

  /** Prometheus text for the lane counters and the trace table. */
  expose(): string {
    const out = [
      '# HELP sextant_lane_requests_total Outbound requests by the lane they were sent in, the lane that served them and why they were in it.',
      '# TYPE sextant_lane_requests_total counter',
    ];
    for (const [lane, byServed] of this.counts) {
      for (const [served, byReason] of byServed) {
        for (const [reason, v] of byReason) out.push(`sextant_lane_requests_total{lane="${lane}",served_lane="${served}",reason="${reason}"} ${v}`);
      }
    }
    out.push(
      '# HELP sextant_lane_trace_table_entries Trace ids held by the lane trace table.', '# TYPE sextant_lane_trace_table_entries gauge', `sextant_lane_trace_table_entries ${this.table.size}`,
      '# HELP sextant_lane_trace_table_evictions_total Trace ids dropped to keep the lane trace table within its bound.', '# TYPE sextant_lane_trace_table_evictions_total counter', `sextant_lane_trace_table_evictions_total ${this.table.evictions}`,
    );
    return out.join('\n');
  }
}

function strings(v: unknown, at: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new ConfigError(`${at}: expected a list of strings`);
  return v as string[];
}

function cidr(s: string, at: string): (ip: string) => boolean {
  const slash = s.indexOf('/');
  const addressPrefix = slash < 0 ? s : s.slice(0, slash);
  const len = slash < 0 ? (addressPrefix.includes(':') ? 128 : 32) : Number(s.slice(slash + 1));
  return compileCidr({ addressPrefix, prefixLen: len }, at);
}

/** Compiles the filter's config (a TypedStruct's value); throws a ConfigError naming the field at fault. */
export function compileLanes(typedConfig: ProtoJson | undefined, at: string): LaneFilter {
  const v = (typedConfig?.['value'] ?? {}) as ProtoJson;
  const where = `${at}.value`;
  const direction = v['direction'];
  if (direction !== 'inbound' && direction !== 'outbound') throw new ConfigError(`${where}.direction: expected inbound or outbound, got ${JSON.stringify(direction)}`);
  const baseline = typeof v['baseline'] === 'string' && v['baseline'] !== '' ? v['baseline'] : 'baseline';
  const ownLane = typeof v['ownLane'] === 'string' && v['ownLane'] !== '' ? v['ownLane'] : baseline;
  const tt = (v['traceTable'] ?? {}) as ProtoJson;
  const maxEntries = tt['maxEntries'] === undefined ? 10_000 : Number(tt['maxEntries']);
  const ttlMs = tt['ttlMs'] === undefined ? 60_000 : Number(tt['ttlMs']);
  if (!(Number.isInteger(maxEntries) && maxEntries >= 1 && maxEntries <= 1_000_000)) throw new ConfigError(`${where}.traceTable.maxEntries: expected 1..1000000, got ${JSON.stringify(tt['maxEntries'])}`);
  if (!(Number.isInteger(ttlMs) && ttlMs >= 1 && ttlMs <= 3_600_000)) throw new ConfigError(`${where}.traceTable.ttlMs: expected 1..3600000, got ${JSON.stringify(tt['ttlMs'])}`);
  const dc = v['dataCentre'];
  if (dc !== undefined && typeof dc !== 'string') throw new ConfigError(`${where}.dataCentre: expected a string`);
  return {
    direction,
    ownLane,
    baseline,
    lanes: new Set(strings(v['lanes'], `${where}.lanes`)),
    strictHosts: new Set(strings(v['strictHosts'], `${where}.strictHosts`)),
    traceTable: { maxEntries, ttlMs },
    trusted: strings(v['trustedSources'], `${where}.trustedSources`).map((s, i) => cidr(s, `${where}.trustedSources[${i}]`)),
    dataCentre: dc === '' ? undefined : dc,
  };
}

function findHeader(headers: readonly RawHeader[], name: string): number {
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    if (h.name.length === name.length && h.name.toLowerCase() === name) return i;
  }
  return -1;
}

function without(headers: RawHeader[], name: string): RawHeader[] {
  return findHeader(headers, name) < 0 ? headers : headers.filter((h) => h.name.length !== name.length || h.name.toLowerCase() !== name);
}

/** A lane a request names counts only when declared; the baseline and undeclared lanes are the baseline. */
function declared(f: LaneFilter, lane: string | undefined): string | undefined {
  if (lane === undefined) return undefined;
  return f.lanes.has(lane) ? lane : f.baseline;
}

/**
 * The lane of an outbound request; `headers` (the router's copy) comes back with the lane header
 * set (or removed for the baseline) and, for a proxy in a data centre, the first hop's data centre
 * restored from the trace table when the app did not forward it.
 */
export function decodeOutbound(f: LaneFilter, state: LaneState, headers: RawHeader[]): { headers: RawHeader[]; decision: LaneDecision } {
  if (f.lanes.size === 0) {
    // no lanes (a data centre only): the first hop's data centre is all there is to restore
    if (f.dataCentre !== undefined && findHeader(headers, ORIGIN_DC_HEADER) < 0) {
      const now = Date.now();
      for (const k of traceKeys(headers)) {
        const ctx = state.table.get(k, now);
        if (ctx?.originDc !== undefined) { headers.push({ name: ORIGIN_DC_HEADER, value: ctx.originDc }); break; }
      }
    }
    return { headers, decision: { filter: f, state, lane: f.baseline, reason: 'baseline' } };
  }
  let lane: string | undefined;
  let reason: LaneReason = 'baseline';
  const hi = findHeader(headers, LANE_HEADER);
  if (hi >= 0) {
    lane = declared(f, headers[hi]!.value.trim());
    reason = 'header';
  }
  if (lane === undefined) {
    lane = declared(f, carrierLane(headers));
    if (lane !== undefined) reason = 'carrier';
  }
  const needOrigin = f.dataCentre !== undefined && findHeader(headers, ORIGIN_DC_HEADER) < 0;
  if (lane === undefined || needOrigin) {
    let ctx: LaneContext | undefined;
    const now = Date.now();
    for (const k of traceKeys(headers)) {
      ctx = state.table.get(k, now);
      if (ctx !== undefined) break;
    }
    if (lane === undefined && ctx?.lane !== undefined) {
      lane = declared(f, ctx.lane);
      reason = 'trace';
    }
    if (needOrigin && ctx?.originDc !== undefined) headers.push({ name: ORIGIN_DC_HEADER, value: ctx.originDc });
  }
  if (lane === undefined) {
    lane = f.ownLane === f.baseline || !f.lanes.has(f.ownLane) ? f.baseline : f.ownLane;
    reason = lane === f.baseline ? 'baseline' : 'own';
  }
  if (lane === f.baseline) headers = without(headers, LANE_HEADER);
  else if (hi < 0 || headers[hi]!.value !== lane) {
    headers = without(headers, LANE_HEADER);
    headers.push({ name: LANE_HEADER, value: lane });
  }
  return { headers, decision: { filter: f, state, lane, reason } };
}

/**
 * The lane of an inbound request (header, else carrier; stripped first when `trusted` is false),
 * recorded against its trace ids (a traceparent minted when it has none) and written into the
 * carriers the app gets; with the first hop's data centre, for a proxy in one.
 */
export function decodeInbound(f: LaneFilter, state: LaneState, headers: RawHeader[], trusted: boolean): { headers: RawHeader[]; decision: LaneDecision } {
  if (!trusted) {
    headers = stripCarriers(without(without(without(headers, LANE_HEADER), ORIGIN_DC_HEADER), CALLER_DC_HEADER));
  }
  let lane: string | undefined;
  let reason: LaneReason = 'baseline';
  const hi = findHeader(headers, LANE_HEADER);
  if (hi >= 0) {
    lane = declared(f, headers[hi]!.value.trim());
    reason = 'header';
  } else {
    lane = declared(f, carrierLane(headers));
    if (lane !== undefined) reason = 'carrier';
  }
  if (lane === undefined) lane = f.baseline;
  const laned = lane !== f.baseline;
  let originDc: string | undefined;
  if (f.dataCentre !== undefined) {
    const oi = findHeader(headers, ORIGIN_DC_HEADER);
    if (oi >= 0) originDc = headers[oi]!.value;
  }
  if (laned || originDc !== undefined) {
    let keys = traceKeys(headers);
    if (laned && !hasTracerId(keys)) {
      headers.push({ name: 'traceparent', value: mintTraceparent() });
      keys = traceKeys(headers);
    }
    state.table.record(keys, { lane: laned ? lane : undefined, originDc });
  }
  if (laned) writeCarriers(headers, lane);
  return { headers, decision: { filter: f, state, lane, reason } };
}

/**
 * The response's lane headers: inbound, the lane that served (this sidecar's own); outbound, the
 * lane the request was sent in and why, and for a strict lane's service with no instance left,
 * which service the lane misses. Counts the outbound request.
 */
export function encodeLane(d: LaneDecision, headers: RawHeader[], status: number, cluster: string | undefined): RawHeader[] {
  const f = d.filter;
  const state = d.state;
  if (f.direction === 'inbound') {
    if (f.lanes.size === 0) return headers;
    return [...without(headers, SERVED_LANE_HEADER), { name: SERVED_LANE_HEADER, value: f.ownLane }];
  }
  if (f.lanes.size === 0) return headers;
  const si = findHeader(headers, SERVED_LANE_HEADER);
  const servedRaw = si >= 0 ? headers[si]!.value : undefined;
  // label values stay bounded: a lane this sidecar does not know is counted as "other"
  const served = servedRaw === undefined ? 'unknown' : servedRaw === f.baseline || f.lanes.has(servedRaw) ? servedRaw : 'other';
  state.count(d.lane, served, d.reason);
  let out = without(without(headers, LANE_REASON_HEADER), REQUESTED_LANE_HEADER);
  out.push({ name: REQUESTED_LANE_HEADER, value: d.lane }, { name: LANE_REASON_HEADER, value: d.reason });
  if (status === 503 && servedRaw === undefined && cluster !== undefined) {
    const host = cluster.slice(cluster.lastIndexOf('|') + 1);
    if (cluster.includes('|lane~') && f.strictHosts.has(host)) {
      out = without(out, LANE_MISS_HEADER);
      out.push({ name: LANE_MISS_HEADER, value: host });
    }
  }
  return out;
}

// Requests whose caller is a mesh sidecar (its peer metadata headers came in), marked by the
// connection manager before it strips those headers: their lane headers are trusted.
const meshPeers = new WeakSet<object>();

/** Marks a request as coming from a mesh sidecar. */
export function markMeshPeer(req: object): void {
  meshPeers.add(req);
}

/**
 * The lanes filter on one request, before route selection: the request's lane, and its headers
 * (the router's copy) as they go on.
 */
export function laneRequest(rt: LaneRuntime, req: { readonly remoteAddress: string; readonly peerPrincipal?: string | undefined }, headers: RawHeader[]): { headers: RawHeader[]; decision: LaneDecision } {
  if (rt.filter.direction === 'outbound') return decodeOutbound(rt.filter, rt.state, headers);
  return decodeInbound(rt.filter, rt.state, headers, trustedCaller(rt.filter, req, req.remoteAddress, req.peerPrincipal));
}

/** Whether an inbound request's lane headers may be believed. */
export function trustedCaller(f: LaneFilter, req: object, remoteAddress: string, principal: string | undefined): boolean {
  if (principal !== undefined || meshPeers.has(req)) return true;
  for (const t of f.trusted) if (t(remoteAddress)) return true;
  return false;
}
