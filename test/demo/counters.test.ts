// Rates from counters of processes that restart: a counter that went down was reset and
// counted from zero (as Prometheus' rate() reads it), so a rate is never negative.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CounterReads, counterIncrease, perSecond } from '../../src/demo/counters.ts';
import { LiveSummary } from '../../src/demo/summary.ts';
import type { DemoWorkload } from '../../src/demo/topology.ts';

test('a counter that went down was reset: its increase is its new value', () => {
  assert.equal(counterIncrease(100, 130), 30);
  assert.equal(counterIncrease(130, 130), 0);
  assert.equal(counterIncrease(130, 30), 30);
  assert.equal(counterIncrease(130, 0), 0);
  assert.equal(counterIncrease(undefined, 7), 7, 'a new series counts from zero');
});

test('rates between reads across a reset are exact and never negative', () => {
  const reads = new CounterReads();
  assert.equal(reads.read(new Map([['a', 100]]), 10_000), undefined, 'the first read has nothing to compare with');
  const d1 = reads.read(new Map([['a', 130], ['b', 4]]), 11_000);
  assert.deepEqual(d1, { seconds: 1, increase: new Map([['a', 30], ['b', 4]]) });
  // The process restarted: `a` fell from 130 to 20.
  const d2 = reads.read(new Map([['a', 20], ['b', 6]]), 13_000);
  assert.deepEqual(d2, { seconds: 2, increase: new Map([['a', 20], ['b', 2]]) });
  assert.equal(perSecond(d2?.increase.get('a') ?? -1, d2?.seconds ?? 0), 10);
  // Known to have restarted, though 50 ≥ 20: every series counted from zero.
  const d3 = reads.read(new Map([['a', 50], ['b', 1]]), 17_000, true);
  assert.deepEqual(d3, { seconds: 4, increase: new Map([['a', 50], ['b', 1]]) });
  assert.equal(perSecond(50, 4), 12.5);
  assert.equal(perSecond(5, 0), 0);
});

test("the live table's rates over a sidecar restart: exact, never negative, and the total keeps counting", async (t) => {
  let page: string | undefined = '';
  const server = http.createServer((_req, res) => {
    if (page === undefined) {
      res.writeHead(503).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(page);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const workload: DemoWorkload = {
    name: 'reviews-v2', namespace: 'default', service: 'reviews', version: 'v2', address: '127.0.0.1', port: 9080,
    appEndpoint: { host: '127.0.0.1', port: 19084 }, egress: { host: '127.0.0.1', port: 9080 }, labels: { app: 'reviews', version: 'v2' },
    nodeId: 'sidecar~127.0.0.1~reviews-v2.default~default.svc.cluster.local', adminAddress: `127.0.0.1:${port}`,
  };
  let now = 0;
  let restarts = 0;
  const summary = new LiveSummary([workload], { now: () => now, sidecarRestarts: () => restarts });
  const stats = (ok: number, failed: number, le5: number, le10: number): string => [
    '# TYPE istio_requests_total counter',
    `istio_requests_total{reporter="destination",response_code="200"} ${ok}`,
    ...(failed ? [`istio_requests_total{reporter="destination",response_code="503"} ${failed}`] : []),
    `istio_requests_total{reporter="source",response_code="200"} 999`,
    `istio_request_duration_milliseconds_bucket{reporter="destination",le="5"} ${le5}`,
    `istio_request_duration_milliseconds_bucket{reporter="destination",le="10"} ${le10}`,
    `istio_request_duration_milliseconds_bucket{reporter="destination",le="+Inf"} ${le10}`,
    '',
  ].join('\n');
  const row = async (): Promise<{ rps: number; successRate: number; p99Ms: number; total: number; scraped: boolean }> => {
    const [r] = await summary.scrape();
    assert.ok(r);
    return { rps: r.rps, successRate: r.successRate, p99Ms: r.p99Ms, total: r.total, scraped: r.scraped };
  };

  page = stats(90, 10, 90, 100);
  assert.deepEqual(await row(), { rps: NaN, successRate: NaN, p99Ms: NaN, total: 100, scraped: true });
  now = 1000;
  page = stats(110, 10, 110, 120);
  assert.deepEqual(await row(), { rps: 20, successRate: 1, p99Ms: 4.95, total: 120, scraped: true });
  // Restarted (not yet known to the summary): 120 requests before, 30 now. Today's code
  // showed (30 − 120) / 2 = −45 requests/s here.
  now = 3000;
  page = stats(30, 0, 30, 30);
  assert.deepEqual(await row(), { rps: 15, successRate: 1, p99Ms: 4.95, total: 150, scraped: true });
  // Down: no rate, the total stands, and the next answer is compared with the last one.
  now = 4000;
  page = undefined;
  assert.deepEqual(await row(), { rps: NaN, successRate: NaN, p99Ms: NaN, total: 150, scraped: false });
  // Restarted again, known this time: 40 ≥ 30 still counts from zero.
  now = 5000;
  restarts = 1;
  page = stats(30, 10, 40, 40);
  assert.deepEqual(await row(), { rps: 20, successRate: 0.75, p99Ms: 4.95, total: 190, scraped: true });
});
