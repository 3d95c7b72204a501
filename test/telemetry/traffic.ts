// Synthetic access-log entries for the store tests and the store benchmark: a deterministic
// mesh of callers and services, so a run can be repeated and its counts checked exactly.
import type { AccessLogEntry } from '../../src/telemetry/index.ts';

/** One entry with every field filled; `over` sets what a case cares about. */
export function entry(over: Partial<AccessLogEntry> = {}): AccessLogEntry {
  return {
    time: 1_700_000_000_000,
    durationMs: 4,
    reporter: 'destination',
    node: 'sidecar~127.0.1.9~orders-1.default~default.svc.cluster.local',
    sourceIp: '127.0.1.2',
    sourceWorkload: 'w1',
    sourceNamespace: 'default',
    sourcePrincipal: 'spiffe://cluster.local/ns/default/sa/w1',
    destinationIp: '127.0.1.9',
    destinationWorkload: 'orders',
    destinationNamespace: 'default',
    destinationService: 'orders.default.svc.cluster.local',
    destinationPort: 8080,
    method: 'GET',
    path: '/orders/1',
    operation: '/orders/{id}',
    authority: 'orders:8080',
    protocol: 'HTTP/1.1',
    responseCode: 200,
    responseFlags: '',
    origin: 'app',
    bytesReceived: 0,
    bytesSent: 120,
    requestId: '00000000-0000-4000-8000-000000000000',
    upstreamCluster: 'inbound|8080||',
    routeName: '',
    ...over,
  };
}

export interface TrafficShape {
  /** Time of the first entry; entries are `stepMs` apart. */
  start: number;
  stepMs: number;
  services: number;
  /** Operations per service (each with 1,000 distinct ids). */
  operations: number;
  callers: number;
  /** Share (0..1) of the requests that go to one hot path, `/api/hot` on svc-0 (a health check, a popular item). */
  hotShare?: number;
  /** Leave the long descriptive strings empty (node, principal, request id, cluster): smaller rows. */
  lean?: boolean;
}

export const DEFAULT_SHAPE: TrafficShape = { start: 1_700_000_000_000, stepMs: 1, services: 20, operations: 20, callers: 50 };

/**
 * The `i`-th entry of a steady mix: callers spread over services and operations, 5 % app 404s,
 * 1 % proxy 503s (UF), latencies from 1 to 200 ms. Pure function of `i`, so batches can be
 * generated lazily for millions of rows.
 */
export function trafficEntry(i: number, shape: TrafficShape = DEFAULT_SHAPE): AccessLogEntry {
  const hot = shape.hotShare !== undefined && mix(i + 0x510e527f) % 10_000 < shape.hotShare * 10_000;
  const svc = hot ? 0 : mix(i) % shape.services;
  const op = mix(i + 0x3c6ef372) % shape.operations;
  // Each service has three callers, as a service usually has a few clients, not all of them.
  const caller = (svc * 3 + (mix(i + 0x6a09e667) % 3)) % shape.callers;
  const id = mix(i + 0x1f83d9ab) % 1000;
  const r = mix(i ^ 0x5bd1e995) % 100;
  const code = r < 5 ? 404 : r === 5 ? 503 : 200;
  const flags = r === 5 ? 'UF' : '';
  const service = `svc-${svc}.team.svc.cluster.local`;
  const lean = shape.lean === true;
  return {
    time: shape.start + i * shape.stepMs,
    durationMs: 1 + (mix(i + 0x9e3779b9) % 200),
    reporter: 'destination',
    node: lean ? '' : `sidecar~10.1.${svc}.1~svc-${svc}-0.team~team.svc.cluster.local`,
    sourceIp: `10.0.${caller >> 8}.${caller & 255}`,
    sourceWorkload: `caller-${caller}`,
    sourceNamespace: 'team',
    sourcePrincipal: lean ? '' : `spiffe://cluster.local/ns/team/sa/caller-${caller}`,
    destinationIp: `10.1.${svc}.1`,
    destinationWorkload: `svc-${svc}`,
    destinationNamespace: 'team',
    destinationService: service,
    destinationPort: 8080,
    method: 'GET',
    path: hot ? '/api/hot' : `/api/op${op}/${id}`,
    operation: hot ? '/api/hot' : `/api/op${op}/{id}`,
    authority: `svc-${svc}:8080`,
    protocol: 'HTTP/1.1',
    responseCode: code,
    responseFlags: flags,
    origin: flags === '' ? 'app' : 'proxy',
    bytesReceived: 0,
    bytesSent: 512,
    requestId: lean ? '' : `req-${i}`,
    upstreamCluster: lean ? '' : 'inbound|8080||',
    routeName: '',
  };
}

export function trafficBatch(from: number, count: number, shape: TrafficShape = DEFAULT_SHAPE): AccessLogEntry[] {
  const out = new Array<AccessLogEntry>(count);
  for (let k = 0; k < count; k++) out[k] = trafficEntry(from + k, shape);
  return out;
}

/** A 32-bit integer hash (murmur3's finaliser): spreads consecutive i over every dimension. */
function mix(i: number): number {
  let h = Math.imul(i ^ (i >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
