// Passthrough pools: one pool per original destination, all state freed after idling (M15).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassthroughPools, UpstreamError } from '../../../src/proxy/upstream/index.ts';
import { app, ok, text, type App } from './apps.ts';

const head = { method: 'GET', target: '/', version: '1.1' as const, headers: [{ name: 'Host', value: 'anywhere' }] };

async function waitFor(pred: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
}

test('each destination gets its own pool, freed with its connections after the idle timeout', async () => {
  // destinations on several loopback addresses and ports
  const apps: App[] = [];
  for (let i = 0; i < 12; i++) apps.push(await app({ respond: () => ok('p') }, `127.0.0.${1 + (i % 4)}`));
  assert.equal(new Set(apps.map((a) => (a.server.address() as { address: string }).address)).size, 4);
  const pools = new PassthroughPools({ idleTimeoutMs: 300 });
  test.after(() => pools.close());
  for (let round = 0; round < 2; round++) {
    for (const a of apps) {
      const addr = a.server.address() as { address: string; port: number };
      const r = await pools.request({ host: addr.address, port: addr.port }, head, null);
      assert.equal(await text(r.body), 'p');
    }
  }
  assert.equal(pools.destinations, 12);
  assert.equal(pools.idleConnections(), 12);
  assert.equal(pools.stats.cxTotal, 12, 'connections are reused within a destination');
  await waitFor(() => pools.destinations === 0);
  assert.equal(pools.destinations, 0);
  assert.equal(pools.idleConnections() + pools.activeConnections(), 0);
  // the apps saw their connections close
  await waitFor(() => apps.every((a) => a.sockets.every((s) => s.destroyed || s.readableEnded)));
  assert.ok(apps.every((a) => a.sockets.every((s) => s.destroyed || s.readableEnded)));
});

test('destinations are bounded: an idle one is evicted, busy ones are never', async () => {
  const quick = await app({ respond: () => ok('q') });
  const stuck = await app({ respond: () => null });
  const other = await app({ respond: () => ok('o') });
  const pools = new PassthroughPools({ maxDestinations: 2 });
  test.after(() => pools.close());
  await text((await pools.request({ host: '127.0.0.1', port: quick.port }, head, null)).body);
  const hanging = pools.request({ host: '127.0.0.1', port: stuck.port }, head, null, { timeoutMs: 2000 });
  hanging.catch(() => {});
  await waitFor(() => stuck.requests.length === 1);
  // the idle "quick" destination makes room for "other"
  assert.equal(await text((await pools.request({ host: '127.0.0.1', port: other.port }, head, null)).body), 'o');
  assert.equal(pools.destinations, 2);
  // now both live destinations have state: "other" is idle and is evicted for "quick"
  await text((await pools.request({ host: '127.0.0.1', port: quick.port }, head, null)).body);
  // with two busy destinations, a third is refused
  const stuck2 = await app({ respond: () => null });
  const h2 = pools.request({ host: '127.0.0.1', port: stuck2.port }, head, null, { timeoutMs: 2000 });
  h2.catch(() => {});
  await waitFor(() => stuck2.requests.length === 1);
  try {
    await pools.request({ host: '127.0.0.1', port: other.port }, head, null);
    assert.fail('expected UO');
  } catch (e) {
    assert.ok(e instanceof UpstreamError);
    assert.equal(e.flag, 'UO');
  }
});

test('freed destinations are reported, and a burst of them triggers one memory-reducing collection', async () => {
  const apps: App[] = [];
  for (let i = 0; i < 6; i++) apps.push(await app({ respond: () => ok('r') }));
  const freed: string[] = [];
  const pools = new PassthroughPools({ idleTimeoutMs: 100, reclaimAfterFreed: 5, onDestinationFreed: (d) => freed.push(`${d.host}:${d.port}`) });
  test.after(() => pools.close());
  for (const a of apps) await text((await pools.request({ host: '127.0.0.1', port: a.port }, head, null)).body);
  await waitFor(() => pools.reclaims > 0, 5000);
  assert.deepEqual(freed.sort(), apps.map((a) => `127.0.0.1:${a.port}`).sort());
  assert.equal(pools.reclaims, 1);
});
