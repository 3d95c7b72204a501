// Lazy scope end to end, the Prometheus lane alone (the LazyScope does not read the hub's access
// logs): the hub reports a first call under the caller's name, so Prometheus alone teaches the
// edge; calls that go direct keep it alive (a call every 2 s for longer than the idle time);
// once unused for the idle time it goes EXPIRING, then leaves the Sidecar and the proxy's CDS,
// and the next call goes through the hub again, succeeds and teaches it again.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { prometheusSkip } from '../support/prometheus.ts';
import { startLazyMesh, type LazyMesh } from './lazyscope-mesh.ts';

const HUB_CLUSTER = 'outbound|15080||sextant-hub.istio-system.svc.cluster.local';
const SVC7 = 'outbound|8080||svc-007.shop.svc.cluster.local';

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}


describe('lazy scope: learning from Prometheus, aging with hysteresis', { skip: prometheusSkip(), timeout: 240_000 }, () => {
  let mesh: LazyMesh;

  before(async () => {
    mesh = await startLazyMesh({ octet: 153, idleTimeout: '6s', learning: { accessLog: false, prometheus: true } });
    await mesh.startHub();
    await waitFor('the managed Sidecar of a', () => mesh.resource('Sidecar', 'shop', 'a-v1-lazy'));
    await mesh.startA();
    await mesh.prometheus.waitForTargetsUp();
  });

  after(async () => {
    await mesh?.stop();
  });

  test('Prometheus alone learns the edge of a first call made through the hub', async () => {
    assert.deepEqual(await mesh.clusters(mesh.admin.a), [HUB_CLUSTER]);
    const r = await mesh.raw('GET /first HTTP/1.1\r\nHost: svc-007:8080');
    assert.equal(r.status, 200, r.headers);
    const started = Date.now();
    await waitFor('a holds the cluster of svc-007', async () => (await mesh.clusters(mesh.admin.a)).includes(SVC7));
    process.stdout.write(`# first call → cluster in a's CDS, Prometheus lane (1 s scrape, 1 s evaluation): ${Date.now() - started} ms\n`);
    const scope = (await mesh.scope('shop/a-v1'))!;
    assert.deepEqual(scope.edges.map((e) => [e.host, e.source]), [['svc-007.shop.svc.cluster.local', 'prometheus']]);
  });

  test('a call every 2 s keeps the edge past the idle time: the cluster never leaves', async () => {
    const until = Date.now() + 16_000; // the idle time is 6 s
    let calls = 0;
    while (Date.now() < until) {
      assert.ok((await mesh.clusters(mesh.admin.a)).includes(SVC7), 'svc-007 left a\'s CDS while in use');
      const r = await mesh.raw(`GET /keep/${calls++} HTTP/1.1\r\nHost: svc-007:8080`);
      assert.equal(r.status, 200);
      for (let i = 0; i < 4; i++) {
        await sleep(500);
        assert.ok((await mesh.clusters(mesh.admin.a)).includes(SVC7), 'svc-007 left a\'s CDS while in use');
      }
    }
    const scope = (await mesh.scope('shop/a-v1'))!;
    assert.deepEqual(scope.edges.map((e) => [e.host, e.state]), [['svc-007.shop.svc.cluster.local', 'ACTIVE']]);
    // those calls went direct
    const log = await waitFor('a\'s log of the calls', async () => {
      const l = (await mesh.logs({ reporter: 'source', sourceIp: mesh.ip.a, since: '5m' })).filter((e) => String(e['path']).startsWith('/keep/'));
      return l.length >= calls ? l : undefined;
    });
    assert.deepEqual([...new Set(log.map((e) => e['upstreamCluster']))], [SVC7]);
  });

  test('unused for the idle time, the edge goes EXPIRING, then leaves; the next call goes through the hub and teaches it again', async () => {
    const states = new Set<string>();
    const started = Date.now();
    await waitFor('svc-007 leaves a\'s CDS', async () => {
      const scope = (await mesh.scope('shop/a-v1'))!;
      for (const e of scope.edges) states.add(e.state);
      return !(await mesh.clusters(mesh.admin.a)).includes(SVC7);
    }, 60_000);
    process.stdout.write(`# last call → cluster gone: ${Date.now() - started} ms (idle 6 s, window 3 s, evaluation 1 s)\n`);
    assert.deepEqual([...states].sort(), ['ACTIVE', 'EXPIRING']);
    const scope = (await mesh.scope('shop/a-v1'))!;
    assert.deepEqual(scope.edges, []);
    const sidecar = await mesh.resource('Sidecar', 'shop', 'a-v1-lazy') as { spec: { egress: { hosts: string[] }[] } };
    assert.deepEqual(sidecar.spec.egress[0]!.hosts, ['*/sextant-hub.istio-system.svc.cluster.local']);

    const r = await mesh.raw('GET /again HTTP/1.1\r\nHost: svc-007:8080');
    assert.equal(r.status, 200);
    const entry = await waitFor('a\'s log of the call', async () => (await mesh.logs({ reporter: 'source', sourceIp: mesh.ip.a, since: '5m' })).find((e) => e['path'] === '/again'));
    assert.equal(entry['upstreamCluster'], HUB_CLUSTER);
    await waitFor('a holds the cluster of svc-007 again', async () => (await mesh.clusters(mesh.admin.a)).includes(SVC7));
  });
});
