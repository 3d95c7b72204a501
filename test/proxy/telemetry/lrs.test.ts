// The proxy's LRS client against the pilot's LoadReportingService (envoy.service.load_stats.v3):
// the node first, then a report per interval the server asks for, each an admission gate's
// ClusterStats as the pilot reads them (totals, drops, latency percentiles as value × samples,
// the gate's own metrics); a server without LRS is left alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { ADMISSION_TYPE, AdmissionGate, compileAdmission } from '../../../src/proxy/filters/admission/index.ts';
import type { Admission, AdmissionTicket, GateTimers } from '../../../src/proxy/filters/admission/index.ts';
import { clusterStatsOf, LoadReportingClient } from '../../../src/proxy/telemetry/lrs.ts';
import { clusterLoad, LoadReportingServer, LRS_SERVICE } from '../../../src/pilot/xds/lrs.ts';
import type { LoadReport } from '../../../src/pilot/xds/lrs.ts';
import { proxyFromNode } from '../../../src/pilot/push/proxy.ts';
import { TYPED_STRUCT_TYPE } from '../../../src/envoy/index.ts';
import { silent } from '../helpers/fixtures.ts';

const NODE = { id: 'sidecar~127.0.1.5~reviews-v1-abcde.shop~shop.svc.cluster.local', metadata: { NAMESPACE: 'shop', LABELS: { app: 'reviews' } } };
const NO_TIMERS: GateTimers = { set: () => undefined, clear: () => undefined };

function ticket(a: Admission): AdmissionTicket {
  assert.equal(a.kind, 'admitted');
  return (a as { kind: 'admitted'; ticket: AdmissionTicket }).ticket;
}

function gate(clock: () => number): AdmissionGate {
  const config = compileAdmission({ '@type': TYPED_STRUCT_TYPE, typeUrl: ADMISSION_TYPE, value: {
    rule: 'shop/reviews', limitRuntimeKey: 'circuit_breakers.inbound|9080||.default.max_requests', failSafeLimit: 2, floor: 1, tiers: 2, enforce: true,
  } }, 'admission');
  return new AdmissionGate(config, undefined, clock, NO_TIMERS);
}

test('a gate\'s interval as ClusterStats reads back, through the pilot\'s parser, as what happened', () => {
  let now = 0;
  const g = gate(() => now);
  const a = g.admit(0);
  const b = g.admit(1);
  assert.equal(g.admit(1).kind, 'rejected');
  now = 40;
  g.leave(ticket(a), 200);
  now = 60;
  g.leave(ticket(b), 500);
  now = 1000;
  const stats = clusterStatsOf(g.report(now));
  const load = clusterLoad(stats)!;
  const { metrics, ...totals } = load;
  assert.deepEqual(totals, { cluster: 'inbound|9080||', successful: 1, errors: 1, issued: 2, inProgress: 0, dropped: 1, intervalMs: 1000 });
  const m = Object.fromEntries(metrics);
  assert.deepEqual({ ...m, latency_ms_p50: undefined, latency_ms_p90: undefined, latency_ms_p99: undefined }, {
    latency_ms_p50: undefined, latency_ms_p90: undefined, latency_ms_p99: undefined,
    concurrency_max: { count: 1, total: 2 },
    limit_in_effect: { count: 1, total: 2 },
    shed_shadow: { count: 1, total: 0 },
    shed_tier_0: { count: 1, total: 0 },
    shed_tier_1: { count: 1, total: 1 },
  });
  // latency: value × samples over 2 samples (40 ms and 60 ms): a quantile is its bucket's upper bound (5 % wide), capped at the largest value
  const per = (name: string): number => { assert.equal(m[name]!.count, 2); return m[name]!.total / 2; };
  const p50 = per('latency_ms_p50');
  const p99 = per('latency_ms_p99');
  assert.ok(p50 >= 40 && p50 <= 42, `p50 ${p50} is the 40 ms sample's bucket`);
  assert.equal(p99, 60);
});

test('the client streams the node, then reports at the interval the pilot asks for', async () => {
  const lrs = new LoadReportingServer({ proxyFromNode, logger: silent, intervalMs: 100 });
  const reports: LoadReport[] = [];
  lrs.onReport((r) => reports.push(r));
  const server = new grpc.Server();
  server.addService(LRS_SERVICE, lrs.handlers() as unknown as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  const g = gate(() => performance.now());
  const t = g.admit(0);
  g.leave(ticket(t), 200);
  const client = new LoadReportingClient({ server: () => `127.0.0.1:${port}`, node: NODE, reports: () => [g.report()], logger: silent });
  try {
    client.start();
    const deadline = Date.now() + 10_000;
    while (reports.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(reports.length >= 2, 'two reports');
    assert.equal(client.intervalMs, 100);
    assert.deepEqual(reports[0]!.proxy.ipAddresses, ['127.0.1.5']);
    assert.deepEqual(reports[0]!.clusters.map((c) => c.cluster), ['inbound|9080||']);
    // The request before the stream answered belongs to no reported interval: a response starts one.
    assert.equal(reports.reduce((n, r) => n + r.clusters[0]!.issued, 0), 0);
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test('a server without LRS answers UNIMPLEMENTED: the client stops and reports nothing', async () => {
  const server = new grpc.Server();
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  let asked = 0;
  const client = new LoadReportingClient({ server: () => `127.0.0.1:${port}`, node: NODE, reports: () => { asked++; return []; }, logger: silent, unimplementedRetryMs: 60_000 });
  try {
    client.start();
    const deadline = Date.now() + 10_000;
    while (!client.unimplemented && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual([client.unimplemented, client.active, client.sent, asked], [true, false, 0, 0]);
  } finally {
    client.close();
    server.forceShutdown();
  }
});
