// End-to-end on the demo topology: retries, circuit breaking, outlier detection, a pilot
// restart under traffic and a new WorkloadEntry, with real processes throughout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestMesh, request, eventually, closeAgent, type TestMesh } from '../helpers/local-mesh.ts';

let mesh: TestMesh;
let front: string;

before(async () => {
  mesh = await startTestMesh(21);
  const pp = mesh.workload('productpage-v1');
  front = `http://${pp.address}:${pp.port}/productpage`;
});
after(async () => {
  closeAgent();
  await mesh?.stop();
});

async function control(workload: string, path: string): Promise<void> {
  const w = mesh.workload(workload);
  const r = await request(`http://${w.appEndpoint.host}:${w.appEndpoint.port}${path}`, {}, { method: 'POST' });
  assert.equal(r.status, 200, `control ${path}: ${r.body}`);
}

async function statuses(n: number, url = front, headers: Record<string, string> = {}): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await request(url, headers)).status);
  return out;
}

async function stats(workload: string): Promise<string> {
  const w = mesh.workload(workload);
  return (await request(`http://${w.adminAddress}/stats/prometheus`)).body;
}

test('retries recover every request from an instance that fails every other call', async () => {
  // 500, because Istio's default route retry policy already retries 503 (as Sextant's does).
  await control('details-v1', '/control/fail?status=500&every=2');
  // Without a retry policy for 500, half of the calls fail (productpage answers 503).
  const without = await statuses(20);
  assert.equal(without.filter((s) => s === 503).length, 10);

  mesh.writeConfig('vs-details.yaml', `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details, namespace: default}
spec:
  hosts: [details]
  http:
  - route:
    - destination: {host: details, subset: v1}
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: 5xx}
`);
  await eventually('the retry policy applies', async () => (await statuses(4)).every((s) => s === 200));
  await control('details-v1', '/control/fail?status=500&every=2');
  assert.deepEqual(await statuses(100), Array(100).fill(200));
  await control('details-v1', '/control/fail?rate=0');
  mesh.removeConfig('vs-details.yaml');
});

test('a circuit breaker overflow answers 503 with response flag UO', async () => {
  // Replace the details DestinationRule in the store's file with one that has tight limits.
  const original = readFileSync(path.join(mesh.configDir, 'destination-rules.yaml'), 'utf8');
  const docs = parseAllDocuments(original).map((d) => d.toJSON() as { metadata: { name: string }; spec: Record<string, unknown> });
  const details = docs.find((d) => d.metadata.name === 'details');
  assert.ok(details);
  details.spec['trafficPolicy'] = {
    connectionPool: { tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1, http2MaxRequests: 1, maxRequestsPerConnection: 1 } },
  };
  mesh.writeConfig('destination-rules.yaml', docs.map((d) => stringify(d)).join('---\n'));
  await control('details-v1', '/control/delay?ms=400');
  const pp = mesh.workload('productpage-v1');
  // The test plays productpage's app: 12 concurrent calls through its sidecar's egress.
  const egress = `http://${pp.egress.host}:${pp.egress.port}`;
  let overflowed = 0;
  await eventually('the breaker trips', async () => {
    const replies = await Promise.all(Array.from({ length: 12 }, () => rawProxyGet(egress, 'http://details:9080/details/0')));
    overflowed = replies.filter((r) => r.status === 503).length;
    return overflowed > 0;
  });
  assert.ok(overflowed > 0);
  assert.match(await stats('productpage-v1'), /istio_requests_total\{[^}]*response_code="503"[^}]*response_flags="UO"|istio_requests_total\{[^}]*response_flags="UO"[^}]*response_code="503"/);
  await control('details-v1', '/control/delay?ms=0');
  mesh.writeConfig('destination-rules.yaml', original);
});

test('outlier detection ejects a failing reviews instance and traffic recovers', async () => {
  await control('reviews-v1', '/control/fail?status=503&rate=1');
  // reviews' DestinationRule ejects after 5 consecutive 5xx; keep calling until it does.
  await eventually('reviews-v1 is ejected', async () => (await statuses(30)).every((s) => s === 200), 30_000);
  const after = await statuses(100);
  assert.deepEqual(after, Array(100).fill(200));
  await control('reviews-v1', '/control/fail?rate=0');
});

test('restarting the pilot mid-traffic fails no request, and every proxy resyncs', async () => {
  let stop = false;
  const results: Array<{ status: number; ms: number }> = [];
  const load = (async () => {
    while (!stop) {
      const r = await request(front);
      results.push({ status: r.status, ms: r.ms });
      await sleep(20);
    }
  })();
  await sleep(500);
  await mesh.restartPilot();
  await eventually('all six proxies reconnect', async () => {
    const r = await request(`http://${mesh.httpAddress}/debug/syncz`);
    return r.status === 200 && mesh.workloads.every((w) => r.body.includes(w.nodeId));
  }, 30_000);
  await sleep(500);
  stop = true;
  await load;
  assert.ok(results.length > 10, `only ${results.length} requests were sent`);
  assert.deepEqual(results.filter((r) => r.status !== 200), []);
});

test('a newly added WorkloadEntry receives traffic after the file change', async (t) => {
  // A VM-like instance without a sidecar: the WorkloadEntry's address is the app itself.
  const pp = mesh.workload('productpage-v1');
  const vmAddress = pp.address.replace(/\.\d+$/, '.9');
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 0, version: 'v4', podname: 'reviews-v4-vm' }));
  });
  await new Promise<void>((resolve) => server.listen(9080, vmAddress, resolve));
  try {
    const written = Date.now();
    mesh.writeConfig('reviews-v4.yaml', `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v4-vm, namespace: default}
spec:
  address: ${vmAddress}
  labels: {app: reviews, version: v4}
  ports: {http: 9080}
`);
    await eventually('reviews-v4 serves a request', async () => {
      const r = await request(front);
      return r.status === 200 && r.body.includes('"version":"v4"');
    }, 20_000);
    const tookMs = Date.now() - written;
    t.diagnostic(`new WorkloadEntry served its first request ${tookMs} ms after the file change`);
  } finally {
    mesh.removeConfig('reviews-v4.yaml');
    server.close();
  }
});

/** GET in absolute form through a proxy, as an app with http_proxy does. */
function rawProxyGet(proxy: string, target: string): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  const p = new URL(proxy);
  return new Promise((resolve) => {
    const req = http.request({ host: p.hostname, port: Number(p.port), path: target, headers: { host: new URL(target).host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', () => resolve({ status: 0, headers: {} }));
    req.end();
  });
}
