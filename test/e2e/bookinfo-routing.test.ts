// End-to-end on the demo topology (real pilot, six sidecars, six apps): Istio's own
// bookinfo VirtualServices shift and steer traffic exactly as they declare.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI } from '../../src/demo/mesh.ts';
import { startTestMesh, request, eventually, closeAgent, type TestMesh } from '../helpers/local-mesh.ts';

const ISTIO_BOOKINFO = path.resolve(import.meta.dirname, '..', '..', '..', 'shared', 'istio-compat', 'bookinfo');
const haveSamples = existsSync(ISTIO_BOOKINFO);
const skip = haveSamples ? false : `Istio's bookinfo samples not found at ${ISTIO_BOOKINFO}`;

let mesh: TestMesh;
let front: string;

before(async () => {
  if (!haveSamples) return;
  mesh = await startTestMesh(11);
  const pp = mesh.workload('productpage-v1');
  front = `http://${pp.address}:${pp.port}/productpage`;
});
after(async () => {
  closeAgent();
  await mesh?.stop();
});

function sample(file: string): string {
  // Istio's samples name hosts relative to their namespace; the store puts them in "default".
  return readFileSync(path.join(ISTIO_BOOKINFO, file), 'utf8');
}

async function reviewsVersions(n: number, headers: Record<string, string> = {}): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => request(front, headers)));
    for (const r of batch) {
      assert.equal(r.status, 200, `productpage answered ${r.status}: ${r.body}`);
      const v = (JSON.parse(r.body) as { reviews: { version: string } }).reviews.version;
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
  }
  return counts;
}

async function applyUntil(file: string, yaml: string, settled: () => Promise<boolean>): Promise<number> {
  mesh.writeConfig(file, yaml);
  return eventually(`${file} takes effect`, settled, 30_000);
}

test('without a VirtualService, reviews traffic goes round robin to v1, v2 and v3', { skip }, async () => {
  const counts = await reviewsVersions(300);
  for (const v of ['v1', 'v2', 'v3']) {
    const share = (counts.get(v) ?? 0) / 300;
    assert.ok(share > 0.2 && share < 0.47, `v${v} share ${share}`);
  }
});

test("Istio's reviews 90/10 canary splits 2,000 requests within ±5 %", { skip }, async () => {
  await applyUntil('vs-reviews.yaml', sample('virtual-service-reviews-90-10.yaml'), async () => !(await reviewsVersions(50)).has('v3'));
  const counts = await reviewsVersions(2000);
  const v2 = (counts.get('v2') ?? 0) / 2000;
  assert.equal(counts.get('v3') ?? 0, 0);
  assert.ok(Math.abs(v2 - 0.1) <= 0.05, `v2 share ${v2}`);
});

test("`sextant apply` of Istio's reviews 50/50 v1/v3 splits 2,000 requests within ±5 %", { skip }, async () => {
  const applied = spawnSync(process.execPath, [CLI, 'apply', '--config-dir', mesh.configDir, '-f', path.join(ISTIO_BOOKINFO, 'virtual-service-reviews-50-v3.yaml')], { encoding: 'utf8' });
  assert.equal(applied.status, 0, applied.stderr);
  assert.equal(applied.stdout, 'virtualservice/reviews configured (namespace default)\n');
  // v3 seen: the new routes are in force (the 90/10 canary before has no v3; its v2 can miss 50 requests by chance)
  await eventually('the applied VirtualService takes effect', async () => {
    const c = await reviewsVersions(50);
    return c.has('v3') && !c.has('v2');
  }, 30_000);
  const counts = await reviewsVersions(2000);
  const v3 = (counts.get('v3') ?? 0) / 2000;
  assert.equal(counts.get('v2') ?? 0, 0);
  assert.ok(Math.abs(v3 - 0.5) <= 0.05, `v3 share ${v3}`);
});

test('header routing: end-user jason goes to v2, everyone else to v3', { skip }, async () => {
  await applyUntil('vs-reviews.yaml', sample('virtual-service-reviews-jason-v2-v3.yaml'), async () => {
    const c = await reviewsVersions(30);
    return c.size === 1 && c.has('v3');
  });
  assert.deepEqual([...(await reviewsVersions(100, { 'end-user': 'jason' })).entries()], [['v2', 100]]);
  assert.deepEqual([...(await reviewsVersions(100)).entries()], [['v3', 100]]);
});

test("Istio's ratings-test-abort answers 500 to jason's ratings calls only", { skip }, async () => {
  mesh.writeConfig('vs-reviews.yaml', sample('virtual-service-reviews-test-v2.yaml'));
  await applyUntil('vs-ratings.yaml', sample('virtual-service-ratings-test-abort.yaml'), async () => {
    const r = await request(front, { 'end-user': 'jason' });
    return r.status === 200 && r.body.includes('ratings unavailable (500)');
  });
  for (let i = 0; i < 20; i++) {
    const jason = JSON.parse((await request(front, { 'end-user': 'jason' })).body) as { reviews: { version: string; ratings: unknown } };
    assert.equal(jason.reviews.version, 'v2');
    assert.deepEqual(jason.reviews.ratings, { error: 'ratings unavailable (500)' });
  }
});

test("Istio's ratings-test-delay delays jason's ratings calls by the declared 7 s", { skip }, async () => {
  await applyUntil('vs-ratings.yaml', sample('virtual-service-ratings-test-delay.yaml'), async () => {
    const r = await request(front, { 'end-user': 'jason' });
    return r.status === 200 && !r.body.includes('ratings unavailable');
  });
  const jason = await request(front, { 'end-user': 'jason' });
  assert.equal(jason.status, 200);
  assert.ok(jason.ms >= 7000, `jason's request took ${jason.ms} ms, less than the declared 7 s delay`);
  const body = JSON.parse(jason.body) as { reviews: { ratings: { ratings: unknown } } };
  assert.deepEqual(body.reviews.ratings.ratings, { Reviewer1: 5, Reviewer2: 4 });
  mesh.removeConfig('vs-ratings.yaml');
  mesh.removeConfig('vs-reviews.yaml');
});

test('`sextant proxy-config` shows what productpage\'s sidecar runs, as tables and JSON', { skip }, () => {
  const pp = mesh.workload('productpage-v1');
  const run = (...args: string[]): { status: number | null; stdout: string; stderr: string } =>
    spawnSync(process.execPath, [CLI, 'proxy-config', ...args, pp.adminAddress], { encoding: 'utf8' });

  const clusters = run('clusters');
  assert.equal(clusters.status, 0, clusters.stderr);
  assert.match(clusters.stdout, /^SERVICE FQDN\s+PORT\s+SUBSET\s+DIRECTION\s+TYPE$/m);
  for (const subset of ['-', 'v1', 'v2', 'v3']) {
    assert.match(clusters.stdout, new RegExp(`^reviews\\.default\\.svc\\.cluster\\.local\\s+9080\\s+${subset}\\s+outbound\\s+EDS$`, 'm'));
  }

  const listeners = run('listeners');
  assert.equal(listeners.status, 0, listeners.stderr);
  assert.match(listeners.stdout, new RegExp(`\\s${pp.egress.host.replaceAll('.', '\\.')}\\s+9080\\s+Route: `));

  const routes = run('routes', '-o', 'json');
  assert.equal(routes.status, 0, routes.stderr);
  const domains = (JSON.parse(routes.stdout) as Array<{ virtualHosts?: Array<{ domains: string[] }> }>).flatMap((r) => (r.virtualHosts ?? []).flatMap((vh) => vh.domains));
  assert.ok(domains.includes('reviews.default.svc.cluster.local'), `domains: ${domains.join(' ')}`);
  assert.ok(domains.includes('reviews'));

  const endpoints = run('endpoints');
  assert.equal(endpoints.status, 0, endpoints.stderr);
  const reviewsV2 = mesh.workload('reviews-v2');
  assert.match(endpoints.stdout, new RegExp(`^${reviewsV2.address.replaceAll('.', '\\.')}:9080\\s+HEALTHY\\s+1\\s+outbound\\|9080\\|v2\\|reviews\\.default\\.svc\\.cluster\\.local$`, 'm'));

  const bad = run('certificates');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^error: unknown section "certificates"; expected listeners, routes, clusters, endpoints, secrets, dependencies/);
});
