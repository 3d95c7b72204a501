// Delta (incremental) ADS over real gRPC: per-resource versions, only changed resources
// pushed, removals, named subscribe/unsubscribe, initial_resource_versions on reconnect.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { AdsStream, nodeFor, resourceNames } from './ads-client.ts';
import { serviceEntry, startTestPilot, stopTestPilot } from './fixtures.ts';
import type { TestPilot } from './fixtures.ts';

let t: TestPilot;
const streams: AdsStream[] = [];

before(async () => {
  t = await startTestPilot([
    serviceEntry('a', 'a.default.svc.cluster.local', 8080, ['10.0.0.1']),
    serviceEntry('b', 'b.default.svc.cluster.local', 8080, ['10.0.0.2']),
  ]);
});

after(async () => {
  for (const s of streams) s.close();
  await stopTestPilot(t);
});

function open(): AdsStream {
  const s = new AdsStream(t.pilot.xdsAddress, 'delta');
  streams.push(s);
  return s;
}

const A = 'outbound|8080||a.default.svc.cluster.local';
const B = 'outbound|8080||b.default.svc.cluster.local';
const C = 'outbound|8080||c.default.svc.cluster.local';

function versions(r: ProtoJson): Record<string, string> {
  return Object.fromEntries((r['resources'] as ProtoJson[]).map((x) => [String(x['name']), String(x['version'])]));
}

test('delta: wildcard CDS, named EDS, only changed resources pushed, deletions as removed_resources', async () => {
  const s = open();
  const ack = (r: ProtoJson): void => s.send({ typeUrl: r['typeUrl'], responseNonce: r['nonce'] });
  s.send({ node: nodeFor('delta-1'), typeUrl: CLUSTER_TYPE });
  const cds = await s.next();
  assert.deepEqual(Object.keys(versions(cds)).sort(), [A, B]);
  for (const v of Object.values(versions(cds))) assert.match(v, /^[0-9a-f]{16}$/);
  // Each Resource carries the decoded Cluster inside.
  const inner = ((cds['resources'] as ProtoJson[])[0]!['resource']) as ProtoJson;
  assert.equal(inner['@type'], CLUSTER_TYPE);
  ack(cds);

  s.send({ typeUrl: ENDPOINT_TYPE, resourceNamesSubscribe: [A, 'outbound|1||missing.example'] });
  const eds = await s.next();
  assert.deepEqual(Object.keys(versions(eds)), [A]);
  // A name that does not exist is reported as removed, so the proxy need not wait for it.
  assert.deepEqual(eds['removedResources'], ['outbound|1||missing.example']);
  ack(eds);

  // A new service: only its cluster is sent (a and b unchanged).
  await t.store.create(serviceEntry('c', 'c.default.svc.cluster.local', 8080, ['10.0.0.3']));
  const cds2 = await s.next();
  assert.equal(cds2['typeUrl'], CLUSTER_TYPE);
  assert.deepEqual(Object.keys(versions(cds2)), [C]);
  assert.deepEqual(cds2['removedResources'] ?? [], []);
  ack(cds2);

  // An endpoint change of a: EDS for a only.
  const a = (await t.store.get('ServiceEntry', 'default', 'a'))!;
  await t.store.update({ ...a, spec: { ...(a.spec as object), endpoints: [{ address: '10.0.1.1' }] } });
  const eds2 = await s.next();
  assert.equal(eds2['typeUrl'], ENDPOINT_TYPE);
  assert.deepEqual(Object.keys(versions(eds2)), [A]);
  assert.notEqual(versions(eds2)[A], versions(eds)[A]);
  ack(eds2);

  // Deleting b removes its cluster.
  await t.store.delete('ServiceEntry', 'default', 'b');
  const cds3 = await s.next();
  assert.equal(cds3['typeUrl'], CLUSTER_TYPE);
  assert.deepEqual(cds3['resources'] ?? [], []);
  assert.deepEqual(cds3['removedResources'], [B]);
  ack(cds3);

  // Unsubscribing stops pushes for that name: a's next endpoint change sends nothing more to EDS.
  s.send({ typeUrl: ENDPOINT_TYPE, resourceNamesUnsubscribe: [A] });
  const a2 = (await t.store.get('ServiceEntry', 'default', 'a'))!;
  await t.store.update({ ...a2, spec: { ...(a2.spec as object), endpoints: [{ address: '10.0.2.2' }] } });
  await waitForPushVersion(a2);
  await t.pilot.server.pushesIdle();
  assert.equal(s.buffered, 0);
});

test('delta: a reconnecting proxy that announces current versions is sent only what differs', async () => {
  const s1 = open();
  s1.send({ node: nodeFor('delta-2'), typeUrl: CLUSTER_TYPE });
  const first = await s1.next();
  const held = versions(first);
  s1.send({ typeUrl: CLUSTER_TYPE, responseNonce: first['nonce'] });
  s1.close();

  const [oneName] = Object.keys(held);
  const stale = { ...held, [oneName!]: '0000000000000000', 'outbound|9|gone|x': '1111111111111111' };
  const s2 = open();
  s2.send({ node: nodeFor('delta-2'), typeUrl: CLUSTER_TYPE, initialResourceVersions: stale });
  const resumed = await s2.next();
  assert.deepEqual(Object.keys(versions(resumed)), [oneName]);
  assert.equal(versions(resumed)[oneName!], held[oneName!]);
  assert.deepEqual(resumed['removedResources'], ['outbound|9|gone|x']);
});

test('delta: a NACK leaves the type NACKED until a later response is acked', async () => {
  const s = open();
  s.send({ node: nodeFor('delta-3'), typeUrl: LISTENER_TYPE });
  const lds = await s.next();
  assert.deepEqual(resourceNames(lds), ['0.0.0.0_8080']);
  s.send({ typeUrl: LISTENER_TYPE, responseNonce: lds['nonce'], errorDetail: { code: 13, message: 'listener rejected' } });
  for (let i = 0; i < 500; i++) {
    const st = (await (await fetch(`http://${t.pilot.httpAddress}/debug/syncz?proxy=${encodeURIComponent(String(nodeFor('delta-3')['id']))}`)).json()) as { types: { type: string; state: string; lastNack?: { message: string } }[] }[];
    const lds = st[0]?.types.find((x) => x.type === 'LDS');
    if (lds?.state === 'NACKED') {
      assert.equal(lds.lastNack?.message, 'listener rejected');
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail('LDS never became NACKED');
});

async function waitForPushVersion(_r: unknown): Promise<void> {
  // The change is debounced; wait until the pilot has built a snapshot that includes it.
  const before = t.pilot.server.pushContext?.version;
  for (let i = 0; i < 500 && t.pilot.server.pushContext?.version === before; i++) await new Promise((r) => setTimeout(r, 10));
}
