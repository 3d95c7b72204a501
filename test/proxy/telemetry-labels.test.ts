// Request label values are reused across requests with the same ends and outcome, and never
// outlive the cluster and host objects a config update replaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IstioMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { PeerCache, RequestLabelCache, requestLabels, selfWorkload } from '../../src/proxy/telemetry/peer.ts';
import { defaultStatsConfig } from '../../src/proxy/telemetry/stats-config.ts';
import type { Cluster } from '../../src/proxy/cluster/cluster.ts';
import type { Host } from '../../src/proxy/cluster/host.ts';

const self = selfWorkload({ WORKLOAD_NAME: 'productpage-v1', NAMESPACE: 'default', CLUSTER_ID: 'Kubernetes' }, { app: 'productpage', version: 'v1' });
const cluster = (host: string): Cluster => ({ name: `outbound|9080||${host}`, service: { host, name: host.split('.')[0]!, namespace: 'default' } }) as unknown as Cluster;
const endpoint = (name: string): Host => ({ key: '10.0.0.1:9080', workload: { name, namespace: 'default', canonicalService: name, canonicalRevision: 'v1', cluster: 'Kubernetes' } }) as unknown as Host;

test('the same ends and outcome reuse one label object with the values requestLabels gives', () => {
  const cache = new RequestLabelCache();
  const c = cluster('reviews.default.svc.cluster.local');
  const h = endpoint('reviews-v1');
  const a = cache.get('source', self, undefined, 0, c, c.name, h, 200, '-');
  const b = cache.get('source', self, undefined, 0, c, c.name, h, 200, '-');
  assert.equal(a, b);
  assert.deepEqual(a, requestLabels('source', self, undefined, c, c.name, h, 200, '-'));
  assert.equal(a.destination_workload, 'reviews-v1');
  const e = cache.get('source', self, undefined, 0, c, c.name, h, 503, 'UO');
  assert.notEqual(e, a);
  assert.equal(e.response_code, '503');
  assert.equal(e.response_flags, 'UO');
});

test('a replaced cluster or host (a config update) gets fresh labels', () => {
  const cache = new RequestLabelCache();
  const h1 = endpoint('reviews-v1');
  const before = cache.get('source', self, undefined, 0, cluster('reviews.default.svc.cluster.local'), 'outbound|9080||reviews', h1, 200, '-');
  const after = cache.get('source', self, undefined, 0, cluster('reviews.prod.svc.cluster.local'), 'outbound|9080||reviews', h1, 200, '-');
  assert.equal(before.destination_service, 'reviews.default.svc.cluster.local');
  assert.equal(after.destination_service, 'reviews.prod.svc.cluster.local');
  const c = cluster('ratings.default.svc.cluster.local');
  assert.equal(cache.get('source', self, undefined, 0, c, c.name, endpoint('ratings-v1'), 200, '-').destination_workload, 'ratings-v1');
  assert.equal(cache.get('source', self, undefined, 0, c, c.name, endpoint('ratings-v2'), 200, '-').destination_workload, 'ratings-v2');
});

test('peers are told apart by the id the peer cache gives them; entries per host are bounded', () => {
  const peers = new PeerCache();
  assert.equal(peers.idOf(undefined), 0);
  const cache = new RequestLabelCache(4);
  const c = cluster('reviews.default.svc.cluster.local');
  const p1 = selfWorkload({ WORKLOAD_NAME: 'a', NAMESPACE: 'x' }, {});
  const p2 = selfWorkload({ WORKLOAD_NAME: 'b', NAMESPACE: 'y' }, {});
  assert.equal(cache.get('destination', self, p1, 1, c, c.name, undefined, 200, '-').source_workload, 'a');
  assert.equal(cache.get('destination', self, p2, 2, c, c.name, undefined, 200, '-').source_workload, 'b');
  // a peer without an id is labelled correctly but not cached
  assert.notEqual(cache.get('destination', self, p1, 0, c, c.name, undefined, 200, '-'), cache.get('destination', self, p1, 0, c, c.name, undefined, 200, '-'));
  for (let s = 200; s < 300; s++) assert.equal(cache.get('source', self, undefined, 0, c, c.name, undefined, s, '-').response_code, String(s));
});

test('metrics count reused label objects once per request, in one series', () => {
  const metrics = new IstioMetrics();
  const cache = new RequestLabelCache();
  const c = cluster('reviews.default.svc.cluster.local');
  const stats = defaultStatsConfig();
  for (let i = 0; i < 3; i++) metrics.recordRequest(stats, cache.get('source', self, undefined, 0, c, c.name, undefined, 200, '-'), 5, 0, 2);
  const lines = metrics.expose().split('\n').filter((l) => l.startsWith('istio_requests_total{'));
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /destination_service="reviews\.default\.svc\.cluster\.local".* 3$/);
});

test('alternating outcomes on one host each get their own labels, again and again', () => {
  const cache = new RequestLabelCache();
  const c = cluster('reviews.default.svc.cluster.local');
  const h = endpoint('reviews-v1');
  const outcomes: [number, string][] = [[200, '-'], [503, 'UO'], [503, 'UF'], [200, '-'], [404, 'NR'], [200, '-']];
  const seen = new Map<string, object>();
  for (let round = 0; round < 3; round++) {
    for (const [status, flags] of outcomes) {
      const l = cache.get('source', self, undefined, 0, c, c.name, h, status, flags);
      assert.equal(l.response_code, String(status));
      assert.equal(l.response_flags, flags);
      const k = `${status}${flags}`;
      if (!seen.has(k)) seen.set(k, l);
      assert.equal(l, seen.get(k));
    }
    // the same host seen by the other reporter, and under another cluster name
    assert.equal(cache.get('destination', self, undefined, 0, c, c.name, h, 200, '-').reporter, 'destination');
    assert.equal(cache.get('source', self, undefined, 0, c, 'other', h, 200, '-').destination_service, 'reviews.default.svc.cluster.local');
  }
});
