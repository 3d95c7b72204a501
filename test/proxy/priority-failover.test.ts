// Priority failover in the balancer, as lanes and data centres use it: the assignment's
// overprovisioning factor, Envoy's rule that no level panics while the levels together are fully
// available, retries that go to another level (previous_priorities), and the route's retry
// priority compiled (an unknown one refused).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from '../../src/proxy/cluster/cluster.ts';
import { RouteTable } from '../../src/proxy/router/route-table.ts';

function assignment(levels: Array<Array<[number, 'HEALTHY' | 'UNHEALTHY' | 'DRAINING']>>, factor?: number): Record<string, unknown> {
  return {
    clusterName: 'c',
    endpoints: levels.map((hosts, priority) => ({
      priority,
      lbEndpoints: hosts.map(([port, healthStatus]) => ({ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: port } } }, healthStatus })),
    })),
    ...(factor !== undefined ? { policy: { overprovisioningFactor: factor } } : {}),
  };
}

function cluster(): Cluster {
  return new Cluster({ name: 'c', type: 'EDS', edsClusterConfig: { serviceName: 'c' } }, 'Cluster c');
}

function share(c: Cluster, n: number, ctx: Parameters<Cluster['pick']>[0] = {}): Map<number, number> {
  const seen = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const h = c.pick(ctx)!;
    seen.set(h.port, (seen.get(h.port) ?? 0) + 1);
  }
  return seen;
}

test('the assignment\'s overprovisioning factor: 200 keeps a level whole down to half healthy, and spills in proportion below', () => {
  const c = cluster();
  c.setAssignment(assignment([[[1, 'HEALTHY'], [2, 'UNHEALTHY']], [[3, 'HEALTHY']]], 200), 'cla');
  assert.deepEqual(c.balancer.priorityLoads(), [100, 0]);
  c.setAssignment(assignment([[[1, 'HEALTHY'], [2, 'UNHEALTHY'], [4, 'UNHEALTHY']], [[3, 'HEALTHY']]], 200), 'cla');
  assert.deepEqual(c.balancer.priorityLoads(), [66, 34]);
  // Envoy's default 140 when the assignment names none
  c.setAssignment(assignment([[[1, 'HEALTHY'], [2, 'UNHEALTHY']], [[3, 'HEALTHY']]]), 'cla');
  assert.deepEqual(c.balancer.priorityLoads(), [70, 30]);
  assert.throws(() => c.setAssignment({ ...assignment([[[1, 'HEALTHY']]]), policy: { overprovisioningFactor: 0 } }, 'cla'), /cla\.policy\.overprovisioningFactor: expected a positive integer/);
});

test('no panic while the levels together are fully available: the unhealthy hosts of a thin level get nothing', () => {
  const c = cluster();
  // 1 of 3 healthy (33 % < the 50 % panic threshold), but P1 makes the total 100 %: no panic
  c.setAssignment(assignment([[[1, 'HEALTHY'], [2, 'UNHEALTHY'], [4, 'UNHEALTHY']], [[3, 'HEALTHY']]], 200), 'cla');
  const seen = share(c, 3000);
  assert.equal(seen.get(2), undefined);
  assert.equal(seen.get(4), undefined);
  // alone, the same level panics (every host takes traffic), as before
  c.setAssignment(assignment([[[1, 'HEALTHY'], [2, 'UNHEALTHY'], [4, 'UNHEALTHY']]], 200), 'cla');
  assert.deepEqual([...share(c, 300).keys()].sort(), [1, 2, 4]);
});

test('previous_priorities: a retry goes to the next level; with no healthy host elsewhere, the ordinary load applies', () => {
  const c = cluster();
  c.setAssignment(assignment([[[1, 'HEALTHY'], [2, 'HEALTHY']], [[3, 'HEALTHY']], [[5, 'HEALTHY']]]), 'cla');
  assert.deepEqual([...share(c, 200, { excludePriorities: new Set([0]) }).keys()].sort(), [3]);
  assert.deepEqual([...share(c, 200, { excludePriorities: new Set([0, 1]) }).keys()].sort(), [5]);
  assert.deepEqual([...share(c, 200, { excludePriorities: new Set([0, 1, 2]) }).keys()].sort(), [1, 2]);
});

test('routes: retry priority previous_priorities compiles; another is refused with the field', () => {
  const rc = (retryPriority: unknown): Record<string, unknown> => ({
    name: 'r', virtualHosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'c', retryPolicy: { retryOn: 'connect-failure', numRetries: 1, retryPriority } } }] }],
  });
  const t = new RouteTable(rc({ name: 'envoy.retry_priorities.previous_priorities' }), 'RouteConfiguration r');
  const route = t.virtualHost('x')!.routes[0]!;
  assert.equal(route.action.kind === 'route' ? route.action.retry?.previousPriorities : undefined, true);
  assert.throws(() => new RouteTable(rc({ name: 'acme.priorities' }), 'RouteConfiguration r'), /retryPriority: unsupported retry priority "acme\.priorities"/);
});

test('locality-weighted balancing (Istio\'s distribute): localities share a level by weight × health', () => {
  const c = new Cluster({ name: 'c', type: 'EDS', edsClusterConfig: { serviceName: 'c' }, commonLbConfig: { localityWeightedLbConfig: {} } }, 'Cluster c');
  const at = (port: number, healthStatus = 'HEALTHY'): Record<string, unknown> => ({ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: port } } }, healthStatus });
  c.setAssignment({
    clusterName: 'c',
    endpoints: [
      { locality: { region: 'sh', zone: 'dc-a' }, loadBalancingWeight: 80, lbEndpoints: [at(1), at(2)] },
      { locality: { region: 'sh', zone: 'dc-b' }, loadBalancingWeight: 20, lbEndpoints: [at(3)] },
    ],
  }, 'cla');
  const seen = share(c, 10_000);
  const a = ((seen.get(1) ?? 0) + (seen.get(2) ?? 0)) / 10_000;
  assert.ok(a > 0.77 && a < 0.83, `dc-a share ${a}`);
  // half of dc-a unhealthy: its weight × min(1, 1.4 × 0.5) = 80 × 0.7 = 56 against 20
  c.setAssignment({
    clusterName: 'c',
    endpoints: [
      { locality: { region: 'sh', zone: 'dc-a' }, loadBalancingWeight: 80, lbEndpoints: [at(1), at(2, 'UNHEALTHY')] },
      { locality: { region: 'sh', zone: 'dc-b' }, loadBalancingWeight: 20, lbEndpoints: [at(3)] },
    ],
  }, 'cla');
  const half = share(c, 10_000);
  assert.equal(half.get(2), undefined);
  const a2 = (half.get(1) ?? 0) / 10_000;
  assert.ok(a2 > 0.70 && a2 < 0.77, `dc-a share ${a2} (expected 56/76 = 0.737)`);
  // without locality_weighted_lb_config the weights are not read: hosts share evenly
  const even = cluster();
  even.setAssignment({ clusterName: 'c', endpoints: [{ locality: { zone: 'a' }, loadBalancingWeight: 80, lbEndpoints: [at(1)] }, { locality: { zone: 'b' }, loadBalancingWeight: 20, lbEndpoints: [at(3)] }] }, 'cla');
  const e = (share(even, 10_000).get(1) ?? 0) / 10_000;
  assert.ok(e > 0.45 && e < 0.55, String(e));
});

test('outlier detection: with ejectWholePriority a level may be ejected whole while another has a healthy host', () => {
  const od = { consecutiveGatewayFailure: 1, enforcingConsecutiveGatewayFailure: 100, maxEjectionPercent: 10, interval: '10s' };
  for (const whole of [true, false]) {
    const c = new Cluster({
      name: 'c', type: 'EDS', edsClusterConfig: { serviceName: 'c' }, outlierDetection: od,
      ...(whole ? { metadata: { filterMetadata: { 'sextant.io': { ejectWholePriority: true } } } } : {}),
    }, 'Cluster c');
    c.setAssignment(assignment([[[1, 'HEALTHY'], [2, 'HEALTHY'], [4, 'HEALTHY']], [[3, 'HEALTHY'], [5, 'HEALTHY']]]), 'cla');
    for (const h of c.hosts.filter((x) => x.priority === 0)) c.outlier!.report(h, 'localOriginFailure');
    const ejected = c.hosts.filter((h) => h.ejected).map((h) => h.port).sort();
    // Envoy's rule: 10 % of the cluster, at least one host; Sextant's: the whole level, P1 being healthy
    assert.deepEqual(ejected, whole ? [1, 2, 4] : [1]);
    if (whole) {
      assert.deepEqual(c.balancer.priorityLoads(), [0, 100]);
      // with no healthy level left elsewhere, the cap holds again (one host, as Envoy always allows)
      for (const h of c.hosts.filter((x) => x.priority === 1)) c.outlier!.report(h, 'localOriginFailure');
      assert.equal(c.hosts.filter((h) => h.priority === 1 && h.ejected).length, 1);
    }
    c.close();
  }
});
