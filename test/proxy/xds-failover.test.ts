// The ADS client with several xDS servers (pilot replicas): it uses the first, moves to the
// next when that stream is lost while serving its last good config, tells the new server what
// it holds as Envoy does (delta: initial_resource_versions; state of the world: the last
// accepted version_info and the subscribed names, no nonce), skips a server it cannot reach,
// and backs off in rounds when every server is down.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../src/envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../src/envoy/index.ts';
import { AdsClient, startProxy, type ResourceSink } from '../../src/proxy/index.ts';
import type { Proxy } from '../../src/proxy/index.ts';
import { TestAdsServer } from './helpers/ads-server.ts';
import { REFUSED_PORT, assignment, edsCluster, freePort, httpListener, routeConfig, send, silent, startBackend } from './helpers/fixtures.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const ID = 'sidecar~127.0.0.1~productpage-v1-abc12.default~default.svc.cluster.local';
const TYPES: readonly XdsTypeUrl[] = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE];
const route = (cluster: string): ProtoJson => routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }]);

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

/** An ADS server holding the same config as every other replica. */
async function replica(delta: boolean, port: number, backends: { a: number; b: number }, cluster = 'a'): Promise<TestAdsServer> {
  const ads = new TestAdsServer({ delta });
  ads.set(CLUSTER_TYPE, [edsCluster('a'), edsCluster('b')]);
  ads.set(ENDPOINT_TYPE, [assignment('a', [backends.a]), assignment('b', [backends.b])]);
  ads.set(LISTENER_TYPE, [httpListener('l', port, 'r')]);
  ads.set(ROUTE_TYPE, [route(cluster)]);
  await ads.start();
  cleanups.push(() => ads.stop().catch(() => undefined));
  return ads;
}

/** Sends requests one after the other until stopped; counts answers by status (0: no answer). */
function traffic(port: number): { stop: () => Promise<Map<number, number>>; byBackend: Map<string, number> } {
  const statuses = new Map<number, number>();
  const byBackend = new Map<string, number>();
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const r = await send(port, '/', { Host: 'svc' });
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 200) {
          const name = String((JSON.parse(r.body) as { name: string }).name);
          byBackend.set(name, (byBackend.get(name) ?? 0) + 1);
        }
      } catch {
        statuses.set(0, (statuses.get(0) ?? 0) + 1);
      }
      await sleep(5);
    }
  })();
  return { stop: async () => { running = false; await loop; return statuses; }, byBackend };
}

for (const protocol of ['delta', 'sotw'] as const) {
  test(`${protocol}: when the first server is lost the proxy moves to the second, says what it holds, and serves throughout`, async () => {
    const a = await startBackend('a');
    const b = await startBackend('b');
    cleanups.push(a.close, b.close);
    const port = await freePort();
    const backends = { a: a.port, b: b.port };
    const first = await replica(protocol === 'delta', port, backends);
    const second = await replica(protocol === 'delta', port, backends);
    const proxy = await startProxy({ xds: [first.address, second.address], id: ID, adminAddress: '127.0.0.1:0', logger: silent, protocol });
    cleanups.push(() => proxy.drain(100));
    await proxy.whenReady();
    assert.equal(proxy.xds.server, first.address);
    assert.equal(second.nodes.length, 0, 'the second server is not used while the first works');
    const held = new Map(TYPES.map((t) => [t, { version: proxy.xds.versionInfo(t), resources: Object.fromEntries([...proxy.xds.accepted(t)].map(([n, r]) => [n, r.version])) }]));

    const load = traffic(port);
    await sleep(200);
    first.kill();
    await until('the proxy has subscribed every type on the second server', () => TYPES.every((t) => second.requests.some((r) => r.request['typeUrl'] === t)));
    assert.equal(proxy.xds.server, second.address);

    // The first request of each type on the new server says what the proxy holds.
    for (const t of TYPES) {
      const req = second.requests.find((r) => r.request['typeUrl'] === t)!.request;
      assert.equal(req['responseNonce'] ?? '', '', `${t}: no nonce on a new stream`);
      const named = t === ENDPOINT_TYPE ? ['a', 'b'] : t === ROUTE_TYPE ? ['r'] : [];
      if (protocol === 'delta') {
        assert.deepEqual(req['initialResourceVersions'] ?? {}, held.get(t)!.resources, `${t}: initial_resource_versions`);
        assert.deepEqual(req['resourceNamesSubscribe'] ?? [], named, `${t}: subscribed names`);
      } else {
        assert.equal(req['versionInfo'], held.get(t)!.version, `${t}: the last accepted version_info`);
        assert.notEqual(held.get(t)!.version, '');
        assert.deepEqual(req['resourceNames'] ?? [], named, `${t}: resource names`);
      }
    }
    if (protocol === 'sotw') {
      // The new server answers every type again; each answer is ACKed.
      for (const t of TYPES) await second.waitFor((x) => x.typeUrl === t && !x.nack);
    }

    // Config now comes from the second server.
    const seen = second.acks.length;
    second.set(ROUTE_TYPE, [route('b')]);
    await second.waitFor((x) => x.typeUrl === ROUTE_TYPE && !x.nack, 10_000, seen);
    await until('requests reach backend b', () => (load.byBackend.get('b') ?? 0) >= 5);
    const statuses = await load.stop();
    assert.deepEqual([...statuses.keys()], [200], `every request answered 200: ${JSON.stringify([...statuses])}`);
    assert.ok((load.byBackend.get('a') ?? 0) > 0);
    assert.equal(proxy.xds.failovers, 1);
    assert.ok(second.acks.every((x) => !x.nack));
  });
}

test('a server that cannot be reached is skipped for the next one', async () => {
  const a = await startBackend('a');
  const b = await startBackend('b');
  cleanups.push(a.close, b.close);
  const port = await freePort();
  const ads = await replica(true, port, { a: a.port, b: b.port });
  const proxy = await startProxy({ xds: `127.0.0.1:${REFUSED_PORT},${ads.address}`, id: ID, adminAddress: '127.0.0.1:0', logger: silent });
  cleanups.push(() => proxy.drain(100));
  await proxy.whenReady();
  assert.deepEqual(proxy.xds.servers, [`127.0.0.1:${REFUSED_PORT}`, ads.address]);
  assert.equal(proxy.xds.server, ads.address);
  assert.equal(proxy.xds.failovers, 0, 'a server that never answered is not a lost stream');
  assert.equal((await send(port, '/', { Host: 'svc' })).status, 200);
});

test('a server that accepts the connection but never answers is given up for the next one', async () => {
  // A host that drops packets, or a hung control plane: the stream gets no answer at all.
  const sockets = new Set<net.Socket>();
  const silentServer = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => silentServer.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => {
    for (const socket of sockets) socket.destroy();
    silentServer.close(() => r());
  }));
  const silentAddress = `127.0.0.1:${(silentServer.address() as net.AddressInfo).port}`;
  const ads = new TestAdsServer();
  ads.set(CLUSTER_TYPE, [edsCluster('a')]);
  await ads.start();
  cleanups.push(() => ads.stop());
  const applied: string[] = [];
  const sink: ResourceSink = { apply: (t) => void applied.push(t), interest: () => new Set() };
  const client = new AdsClient({ server: [silentAddress, ads.address], node: { id: ID }, sink, logger: silent, establishTimeoutMs: 300 });
  cleanups.push(async () => client.close());
  const started = Date.now();
  client.start();
  await ads.waitFor((x) => x.typeUrl === CLUSTER_TYPE && !x.nack);
  assert.ok(Date.now() - started >= 300, 'the silent server had its time');
  assert.equal(client.server, ads.address);
  assert.equal(client.connected, true);
  assert.ok(applied.includes(CLUSTER_TYPE));
});

test('with every server down the proxy keeps serving, retries in rounds with a doubling backoff, and takes whichever server returns', async () => {
  const a = await startBackend('a');
  const b = await startBackend('b');
  cleanups.push(a.close, b.close);
  const port = await freePort();
  const backends = { a: a.port, b: b.port };
  const first = await replica(false, port, backends);
  const second = await replica(false, port, backends);
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const proxy: Proxy = await startProxy({ xds: [first.address, second.address], id: ID, adminAddress: '127.0.0.1:0', logger, protocol: 'sotw' });
  cleanups.push(() => proxy.drain(100));
  await proxy.whenReady();
  const secondPort = second.port;
  second.kill();
  first.kill();
  const lost = (): Record<string, unknown>[] => lines.filter((l) => l['msg'] === 'xDS stream lost; serving last good config');
  // Lost A (a working stream) → B at once; B refused → round over: backoff ~500 ms → A refused
  // → B at once; B refused → backoff ~1 s.
  await until('two rounds have failed', () => lost().length >= 4, 15_000);
  for (let i = 0; i < 3; i++) assert.equal((await send(port, '/', { Host: 'svc' })).status, 200, 'the last good config serves');
  const [l1, l2, l3, l4] = lost() as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
  assert.deepEqual([l1['server'], l1['next']], [first.address, second.address]);
  assert.ok(Number(l1['retryInMs']) <= 250, `a lost working stream moves on at once (${String(l1['retryInMs'])} ms)`);
  assert.deepEqual([l2['server'], l2['next']], [second.address, first.address]);
  assert.ok(Number(l2['retryInMs']) >= 250 && Number(l2['retryInMs']) <= 500, `first round backoff ${String(l2['retryInMs'])} ms`);
  assert.deepEqual([l3['server'], l3['next'], l3['retryInMs']], [first.address, second.address, 0]);
  assert.deepEqual([l4['server'], l4['next']], [second.address, first.address]);
  assert.ok(Number(l4['retryInMs']) >= 500 && Number(l4['retryInMs']) <= 1000, `second round backoff ${String(l4['retryInMs'])} ms`);

  // The second server comes back on its address; the proxy reconnects there and ACKs.
  const back = new TestAdsServer({ delta: false });
  back.set(CLUSTER_TYPE, [edsCluster('a'), edsCluster('b')]);
  back.set(ENDPOINT_TYPE, [assignment('a', [a.port]), assignment('b', [b.port])]);
  back.set(LISTENER_TYPE, [httpListener('l', port, 'r')]);
  back.set(ROUTE_TYPE, [route('b')]);
  await back.start(secondPort);
  cleanups.push(() => back.stop());
  await back.waitFor((x) => x.typeUrl === ROUTE_TYPE && !x.nack, 20_000);
  assert.equal(proxy.xds.server, back.address);
  assert.equal(JSON.parse((await send(port, '/', { Host: 'svc' })).body).name, 'b');
});

test('the server list is read from a comma-separated string or a list, and must name one', () => {
  const sink: ResourceSink = { apply: () => undefined, interest: () => new Set() };
  const make = (server: string | string[]): AdsClient => new AdsClient({ server, node: { id: ID }, sink, logger: silent });
  assert.deepEqual(make('127.0.0.1:1, 127.0.0.2:2').servers, ['127.0.0.1:1', '127.0.0.2:2']);
  assert.deepEqual(make(['127.0.0.1:1']).servers, ['127.0.0.1:1']);
  assert.throws(() => make(' , '), { message: 'no xDS server given: expected HOST:PORT[,HOST:PORT…]' });
});
