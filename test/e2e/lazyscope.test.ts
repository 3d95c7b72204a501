// Lazy scope end to end (M5), over real processes: pilot, hub, sidecars, Debian's Prometheus.
// The lazy workload `a` starts with no service cluster but the hub's; its first call to
// svc-007 goes through the hub and reaches the app with the head bytes of a direct call, from
// a's own address and under a's name; the hub's access log teaches the controller the edge,
// the managed Sidecar grows, `a` ACKs a CDS with the cluster and the next calls go direct.
// 2,000 requests at 200/s to a service never called before cross that switch with no failure
// and switch exactly once; the change is pushed to `a` only (50 simulated proxies get
// nothing); a Sidecar the user wrote is left byte for byte.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { prometheusSkip } from '../support/prometheus.ts';
import { openLoop, startLazyMesh, type LazyMesh } from './lazyscope-mesh.ts';

const HUB_CLUSTER = 'outbound|15080||sextant-hub.istio-system.svc.cluster.local';
const SVC7 = 'outbound|8080||svc-007.shop.svc.cluster.local';
const SVC11 = 'outbound|8080||svc-011.shop.svc.cluster.local';

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A head with its x-request-id value blanked (each request gets its own). */
function normalized(raw: string): string {
  return raw.replace(/^(x-request-id: ).*$/gim, '$1<id>');
}

describe('lazy scope: first call via the hub, learned, then direct', { skip: prometheusSkip(), timeout: 240_000 }, () => {
  let mesh: LazyMesh;
  let sims: ChildProcess | undefined;
  const userSidecarBefore = { text: '' };

  before(async () => {
    mesh = await startLazyMesh({ octet: 151, idleTimeout: '10m', learning: { accessLog: true, prometheus: true } });
    userSidecarBefore.text = mesh.readConfigFile('user-sidecar.yaml');
    await mesh.startHub();
    // the controller writes a's Sidecar from its WorkloadScope before a connects
    await waitFor('the managed Sidecar of a', () => mesh.resource('Sidecar', 'shop', 'a-v1-lazy'));
    await mesh.startA();
  });

  const stopSims = async (): Promise<void> => {
    if (sims?.pid !== undefined && sims.exitCode === null && sims.signalCode === null) {
      const exited = new Promise((r) => sims!.once('exit', r));
      try { process.kill(-sims.pid, 'SIGKILL'); } catch { /* gone */ }
      await exited;
    }
  };

  after(async () => {
    await stopSims();
    await mesh?.stop();
  });

  test('the lazy workload starts with no outbound service cluster but the hub\'s', async () => {
    assert.deepEqual(await mesh.clusters(mesh.admin.a), [HUB_CLUSTER]);
    const sidecar = await mesh.resource('Sidecar', 'shop', 'a-v1-lazy') as { metadata: { labels: Record<string, string> }; spec: { egress: { hosts: string[] }[] } };
    assert.equal(sidecar.metadata.labels['sextant.io/managed-by'], 'lazy-scope');
    assert.deepEqual(sidecar.spec.egress[0]!.hosts, ['*/sextant-hub.istio-system.svc.cluster.local']);
  });

  test('50 other proxies connect and sync', async () => {
    sims = spawn(process.execPath, [path.join(import.meta.dirname, '..', '..', 'bench', 'pilot-clients.ts'), '--xds', mesh.xds, '--proxies', '50', '--namespaces', '1', '--channels', '2'], { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    const lines = createInterface({ input: sims.stdout! });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the 50 simulated proxies did not sync in 60 s')), 60_000);
      lines.on('line', (l) => { if (l.includes('"all-synced"')) { clearTimeout(t); resolve(); } });
    });
  });

  test('the first call goes through the hub, byte for byte, and the destination sees the real caller', async () => {
    const simsBefore = (await mesh.syncz()).filter((p) => p.proxy.includes('~app-'));
    assert.equal(simsBefore.length, 50);
    const aBefore = (await mesh.syncz()).find((p) => p.proxy.includes('a-v1-abcde'))!;
    const head = 'GET /echo/first HTTP/1.1\r\nHost: svc-007:8080\r\nX-Mixed-Case: 1\r\nX-Dup: one\r\nX-Dup: two\r\nuser-agent: lazy-test';
    const first = await mesh.raw(head);
    assert.equal(first.status, 200, first.headers);
    assert.equal(first.body, 'ok');
    const viaHub = mesh.heads.at(-1)!;
    assert.equal(viaHub.peer, mesh.ip.a); // the app's TCP peer is a, not the hub

    // learned from the hub's access log: the Sidecar grows and a holds the cluster
    const started = Date.now();
    await waitFor('a holds the cluster of svc-007', async () => (await mesh.clusters(mesh.admin.a)).includes(SVC7));
    const learnedMs = Date.now() - started;
    process.stdout.write(`# first call → cluster in a's CDS: ${learnedMs} ms\n`);
    const sidecar = await mesh.resource('Sidecar', 'shop', 'a-v1-lazy') as { spec: { egress: { hosts: string[] }[] } };
    assert.deepEqual(sidecar.spec.egress[0]!.hosts, ['*/sextant-hub.istio-system.svc.cluster.local', '*/svc-007.shop.svc.cluster.local']);
    const scope = await waitFor('a\'s edge in its WorkloadScope', async () => {
      const ws = await mesh.scope('shop/a-v1');
      return ws !== undefined && ws.edges.length > 0 ? ws : undefined;
    });
    assert.deepEqual(scope.edges.map((e) => [e.host, e.source, e.state]), [['svc-007.shop.svc.cluster.local', 'access-log', 'ACTIVE']]);

    // the next call goes direct: the same head bytes reach the app
    const second = await mesh.raw(head.replace('/echo/first', '/echo/second'));
    assert.equal(second.status, 200);
    const direct = mesh.heads.at(-1)!;
    assert.equal(direct.peer, mesh.ip.a);
    assert.equal(normalized(viaHub.raw).replace('/echo/first', '/echo/x'), normalized(direct.raw).replace('/echo/second', '/echo/x'));
    if (process.env['SHOW_HEADS']) process.stdout.write(`# via the hub:\n${viaHub.raw}# direct:\n${direct.raw}`);
    assert.match(viaHub.raw, /\r\nHost: svc-007:8080\r\nX-Mixed-Case: 1\r\nX-Dup: one\r\nX-Dup: two\r\nuser-agent: lazy-test\r\n/);

    // a's own log: the first via the hub's cluster, the second direct
    const aLog = await waitFor('a\'s log of both calls', async () => {
      const l = await mesh.logs({ reporter: 'source', sourceIp: mesh.ip.a, since: '5m' });
      return l.length >= 2 ? l : undefined;
    });
    const byPath = new Map(aLog.map((e) => [e['path'], e['upstreamCluster']]));
    assert.equal(byPath.get('/echo/first'), HUB_CLUSTER);
    assert.equal(byPath.get('/echo/second'), SVC7);
    // the destination's log: both calls from a's address and under a's name
    const destLog = await waitFor('the destination\'s log of both calls', async () => {
      const l = await mesh.logs({ reporter: 'destination', service: 'svc-007.shop.svc.cluster.local', since: '5m' });
      return l.length >= 2 ? l : undefined;
    });
    for (const e of destLog) {
      assert.equal(e['sourceIp'], mesh.ip.a, JSON.stringify(e));
      assert.equal(e['sourceWorkload'], 'a-v1', JSON.stringify(e));
      assert.equal(e['sourceNamespace'], 'shop');
      assert.equal(e['responseCode'], 200);
    }

    // the scope change went to a only: the 50 others got no response at all
    const after = await mesh.syncz();
    for (const s of simsBefore) {
      const now = after.find((p) => p.proxy === s.proxy)!;
      assert.deepEqual(now.types.map((t) => [t.type, t.responses]), s.types.map((t) => [t.type, t.responses]), s.proxy);
    }
    const aAfter = after.find((p) => p.proxy.includes('a-v1-abcde'))!;
    const cds = (p: typeof aAfter): number => p.types.find((t) => t.type === 'CDS')!.responses;
    assert.ok(cds(aAfter) > cds(aBefore));
  });

  test('2,000 requests at 200/s to a service never called cross the switch with no failure and switch once', async () => {
    assert.ok(!(await mesh.clusters(mesh.admin.a)).includes(SVC11));
    const statuses = await openLoop(2000, 200, async (i) => (await mesh.raw(`GET /load/${i} HTTP/1.1\r\nHost: svc-011:8080`)).status);
    const bad = statuses.map((s, i) => [i, s]).filter(([, s]) => s !== 200);
    assert.deepEqual(bad, []);
    assert.ok((await mesh.clusters(mesh.admin.a)).includes(SVC11));
    // a's log in request order: hub until the switch, direct after, exactly one transition
    const log = await waitFor('a\'s log of the 2,000 requests', async () => {
      const l = (await mesh.logs({ reporter: 'source', sourceIp: mesh.ip.a, since: '10m' })).filter((e) => String(e['path']).startsWith('/load/'));
      return l.length >= 2000 ? l : undefined;
    }, 60_000);
    const order = log.map((e) => [Number(String(e['path']).slice(6)), e['upstreamCluster'] as string] as const).sort((x, y) => x[0] - y[0]);
    assert.equal(order.length, 2000);
    const clusters = order.map(([, c]) => c);
    assert.deepEqual([...new Set(clusters)].sort(), [HUB_CLUSTER, SVC11].sort());
    let switches = 0;
    for (let i = 1; i < clusters.length; i++) if (clusters[i] !== clusters[i - 1]) switches++;
    assert.equal(switches, 1, `the path switched ${switches} times`);
    assert.equal(clusters[0], HUB_CLUSTER);
    assert.equal(clusters.at(-1), SVC11);
    process.stdout.write(`# requests via the hub before the switch: ${clusters.indexOf(SVC11)}\n`);
  });

  test('`sextant proxy-config dependencies` and the dashboard API show the learned dependencies and their source', async () => {
    const out = spawnSync(process.execPath, [path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts'), 'proxy-config', 'dependencies', mesh.admin.a, '--pilot', mesh.pilotUrl], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, /^workload shop\/a-v1 {2}LazyScope shop\/lazy {2}Sidecar shop\/a-v1-lazy$/m);
    assert.match(out.stdout, /^HOST\s+SOURCE\s+LAST SOURCE\s+STATE\s+FIRST SEEN\s+LAST SEEN\s+IN PROXY$/m);
    for (const host of ['svc-007', 'svc-011']) assert.match(out.stdout, new RegExp(`^${host}\\.shop\\.svc\\.cluster\\.local\\s+access-log\\s+(access-log|prometheus)\\s+ACTIVE\\s+\\S+\\s+\\S+\\s+yes$`, 'm'));
    const api = await (await fetch(`${mesh.pilotUrl}/api/v1/dependencies`)).json() as { controller: boolean; workloads: { workload: string; sidecar: string | null; edges: { host: string; source: string }[] }[] };
    assert.equal(api.controller, true);
    const a = api.workloads.find((w) => w.workload === 'shop/a-v1')!;
    assert.equal(a.sidecar, 'shop/a-v1-lazy');
    assert.deepEqual(a.edges.map((e) => [e.host, e.source]), [['svc-007.shop.svc.cluster.local', 'access-log'], ['svc-011.shop.svc.cluster.local', 'access-log']]);
  });

  test('a pilot restart keeps every learned edge: no cluster leaves the proxy', async () => {
    await stopSims();
    const edgesBefore = (await mesh.scope('shop/a-v1'))!.edges;
    assert.deepEqual(edgesBefore.map((e) => e.host), ['svc-007.shop.svc.cluster.local', 'svc-011.shop.svc.cluster.local']);
    const sidecarBefore = JSON.stringify((await mesh.resource('Sidecar', 'shop', 'a-v1-lazy'))!['spec']);
    const held: string[][] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        held.push(await mesh.clusters(mesh.admin.a));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await mesh.stopPilot();
    await mesh.startPilot();
    // a reconnects and acknowledges the new pilot's config; the controller has evaluated a few times
    await waitFor('a synced with the new pilot', async () => (await mesh.syncz()).some((p) => p.proxy.includes('a-v1-abcde') && p.types.some((t) => t.type === 'RDS' && t.nonceAcked !== undefined)));
    await new Promise((r) => setTimeout(r, 3000));
    watching = false;
    await watcher;
    for (const c of held) assert.deepEqual(c, [HUB_CLUSTER, SVC11, SVC7].sort());
    assert.ok(held.length > 10);
    assert.equal(JSON.stringify((await mesh.resource('Sidecar', 'shop', 'a-v1-lazy'))!['spec']), sidecarBefore);
    const edgesAfter = (await mesh.scope('shop/a-v1'))!.edges;
    assert.deepEqual(edgesAfter.map((e) => [e.host, e.firstSeen]), edgesBefore.map((e) => [e.host, e.firstSeen]));
  });

  test('hub down: a first call gets a 503 with an Envoy flag, learned calls are unaffected', async () => {
    await mesh.stopHub();
    const r = await mesh.raw('GET /hub-down/first HTTP/1.1\r\nHost: svc-003:8080');
    assert.equal(r.status, 503, r.headers);
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await mesh.raw(`GET /hub-down/learned/${i} HTTP/1.1\r\nHost: svc-007:8080`)).status);
    assert.deepEqual(statuses, new Array(20).fill(200));
    const entry = await waitFor('a\'s log of the failed first call', async () => (await mesh.logs({ reporter: 'source', sourceIp: mesh.ip.a, since: '5m' })).find((e) => e['path'] === '/hub-down/first'));
    assert.equal(entry['responseCode'], 503);
    assert.match(String(entry['responseFlags']), /\bU[FH]\b/);
    assert.equal(entry['origin'], 'proxy');
    assert.equal(entry['upstreamCluster'], HUB_CLUSTER);
  });

  test('a Sidecar the user wrote is left byte for byte, and the workload scope says so', async () => {
    const scope = await waitFor('u\'s WorkloadScope', async () => mesh.scope('shop/u-v1'));
    assert.equal(scope.sidecar, null);
    assert.equal(scope.userSidecar, 'shop/u-own');
    const stored = await mesh.resource('WorkloadScope', 'shop', 'u-v1') as { status: { conditions: { type: string }[] } };
    assert.deepEqual(stored.status.conditions.map((c) => c.type), ['UserSidecarPresent']);
    assert.equal(await mesh.resource('Sidecar', 'shop', 'u-v1-lazy'), undefined);
    assert.equal(mesh.readConfigFile('user-sidecar.yaml'), userSidecarBefore.text);
  });
});
