// What the controller makes of the sidecars' LRS reports: sums per instance since the last
// tick (read once), the contract's load metrics, queue timeouts taken out of the errors, and
// the service's observation over its healthy instances.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoadLedger, inboundPort, observation, type ClusterSample } from '../../../src/controllers/adaptive/index.ts';

function sample(o: Partial<Omit<ClusterSample, 'metrics'>> & { metrics?: Record<string, [number, number]> }): ClusterSample {
  return {
    cluster: o.cluster ?? 'inbound|9080||',
    successful: o.successful ?? 0,
    errors: o.errors ?? 0,
    dropped: o.dropped ?? 0,
    metrics: new Map(Object.entries(o.metrics ?? {}).map(([k, [count, total]]) => [k, { count, total }])),
  };
}

test('only inbound clusters count, under every address of the proxy', () => {
  assert.equal(inboundPort('inbound|9080||'), 9080);
  assert.equal(inboundPort('outbound|9080||reviews.default.svc.cluster.local'), undefined);
  assert.equal(inboundPort('inbound|0||'), undefined);
  const ledger = new LoadLedger();
  ledger.add(['10.0.0.5', '10.0.0.6'], 1000, [sample({ successful: 3 }), sample({ cluster: 'outbound|80||x', successful: 99 })]);
  assert.equal(ledger.size, 2);
  assert.equal(ledger.take('10.0.0.6|9080')?.successful, 3);
});

test('reports are summed until taken, and taken once', () => {
  const ledger = new LoadLedger();
  ledger.add(['10.0.0.5'], 1000, [sample({ successful: 40, metrics: { latency_ms_p99: [40, 4000], concurrency_max: [1, 7], limit_in_effect: [1, 12], shed_shadow: [1, 5] } })]);
  ledger.add(['10.0.0.5'], 2000, [sample({ successful: 60, errors: 2, dropped: 1, metrics: { latency_ms_p99: [62, 12_400], concurrency_max: [1, 9], limit_in_effect: [1, 10], shed_shadow: [1, 2] } })]);
  assert.equal(ledger.has('10.0.0.5|9080'), true);
  const load = ledger.take('10.0.0.5|9080')!;
  assert.deepEqual({ ...load, latency: Object.fromEntries(load.latency) }, {
    successful: 100, errors: 2, dropped: 1, shadowShed: 7, tierShed: 0, latency: { latency_ms_p99: { count: 102, total: 16_400 } },
    peak: 9, limitInEffect: 10, reports: 2, lastAt: 2000,
  });
  assert.equal(ledger.has('10.0.0.5|9080'), false);
  assert.equal(ledger.take('10.0.0.5|9080'), undefined);
  assert.equal(ledger.lastReportAt('10.0.0.5|9080'), 2000);
});

test('the observation: healthy instances only, latency weighted by samples, queue timeouts are sheds not errors', () => {
  const ledger = new LoadLedger();
  // a gate that counted 10 queue timeouts as errors, and in shed_tier_N with its 5 drops
  ledger.add(['a'], 1, [sample({ successful: 90, errors: 12, dropped: 5, metrics: { latency_ms_p90: [100, 5000], concurrency_max: [1, 8], shed_tier_5: [1, 15] } })]);
  ledger.add(['b'], 1, [sample({ successful: 50, metrics: { latency_ms_p90: [50, 5000], concurrency_max: [1, 4] } })]);
  ledger.add(['c'], 1, [sample({ successful: 1000, metrics: { latency_ms_p90: [1000, 1_000_000] } })]);
  const obs = observation([
    { healthy: true, load: ledger.take('a|9080') },
    { healthy: true, load: ledger.take('b|9080') },
    { healthy: false, load: ledger.take('c|9080') },
    { healthy: true, load: undefined },
  ], 90, 30);
  assert.deepEqual(obs, { instances: 3, reporting: 2, samples: 150, latencyMs: 10_000 / 150, finished: 142, errors: 2, peakInFlight: 12, shed: 15 });
});

test('an instance that does not report its concurrency (a plain Envoy) counts as using its limit', () => {
  const ledger = new LoadLedger();
  ledger.add(['a'], 1, [sample({ successful: 10, metrics: { latency_ms_p99: [10, 500] } })]);
  assert.equal(observation([{ healthy: true, load: ledger.take('a|9080') }], 99, 40).peakInFlight, 40);
});
