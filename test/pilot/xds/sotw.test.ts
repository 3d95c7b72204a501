// State-of-the-world ADS over real gRPC: wildcard and named subscriptions, ACK by nonce,
// stale nonces, NACKs in status (syncz, CSDS, metrics), pushes after config changes.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { AdsStream, fetchClientStatus, nodeFor, resourceNames } from './ads-client.ts';
import { serviceEntry, startTestPilot, stopTestPilot } from './fixtures.ts';
import type { TestPilot } from './fixtures.ts';

let t: TestPilot;
const streams: AdsStream[] = [];

before(async () => {
  t = await startTestPilot([
    serviceEntry('a', 'a.default.svc.cluster.local', 8080, ['10.0.0.1']),
    serviceEntry('b', 'b.default.svc.cluster.local', 8080, ['10.0.0.2', '10.0.0.3']),
    serviceEntry('c', 'c.default.svc.cluster.local', 9090, ['10.0.0.4']),
  ]);
});

after(async () => {
  for (const s of streams) s.close();
  await stopTestPilot(t);
});

function open(_pod: string): AdsStream {
  const s = new AdsStream(t.pilot.xdsAddress, 'sotw');
  streams.push(s);
  return s;
}

async function syncz(): Promise<ProtoJson[]> {
  const res = await fetch(`http://${t.pilot.httpAddress}/debug/syncz`);
  return (await res.json()) as ProtoJson[];
}

function typeState(status: ProtoJson[], proxyId: string, type: string): ProtoJson | undefined {
  const p = status.find((s) => s['proxy'] === proxyId);
  return ((p?.['types'] ?? []) as ProtoJson[]).find((x) => x['type'] === type);
}

const A = 'outbound|8080||a.default.svc.cluster.local';
const B = 'outbound|8080||b.default.svc.cluster.local';
const C = 'outbound|9090||c.default.svc.cluster.local';

test('a wildcard CDS request gets every cluster; a named EDS request only the names asked for', async () => {
  const node = nodeFor('app-1');
  const s = open('app-1');
  s.send({ node, typeUrl: CLUSTER_TYPE });
  const cds = await s.next();
  assert.equal(cds['typeUrl'], CLUSTER_TYPE);
  assert.deepEqual(resourceNames(cds).sort(), [A, B, C]);
  assert.match(String(cds['versionInfo']), /^[0-9a-f]{16}$/);
  assert.notEqual(cds['nonce'], '');
  s.send({ typeUrl: CLUSTER_TYPE, versionInfo: cds['versionInfo'], responseNonce: cds['nonce'] });

  s.send({ typeUrl: ENDPOINT_TYPE, resourceNames: [B] });
  const eds = await s.next();
  assert.deepEqual(resourceNames(eds), [B]);
  const cla = (eds['resources'] as ProtoJson[])[0]!;
  assert.equal(cla['@type'], ENDPOINT_TYPE);
  const addresses = ((cla['endpoints'] as ProtoJson[])[0]!['lbEndpoints'] as ProtoJson[]).map((e) => ((e['endpoint'] as ProtoJson)['address'] as { socketAddress: { address: string } }).socketAddress.address);
  assert.deepEqual(addresses, ['10.0.0.2', '10.0.0.3']);
  s.send({ typeUrl: ENDPOINT_TYPE, resourceNames: [B], versionInfo: eds['versionInfo'], responseNonce: eds['nonce'] });

  // Adding a name answers with what is new.
  s.send({ typeUrl: ENDPOINT_TYPE, resourceNames: [B, A], versionInfo: eds['versionInfo'], responseNonce: eds['nonce'] });
  const eds2 = await s.next();
  assert.deepEqual(resourceNames(eds2), [A]);
  s.send({ typeUrl: ENDPOINT_TYPE, resourceNames: [B, A], versionInfo: eds2['versionInfo'], responseNonce: eds2['nonce'] });

  s.send({ typeUrl: LISTENER_TYPE });
  const lds = await s.next();
  assert.deepEqual(resourceNames(lds).sort(), ['0.0.0.0_8080', '0.0.0.0_9090']);
  s.send({ typeUrl: LISTENER_TYPE, versionInfo: lds['versionInfo'], responseNonce: lds['nonce'] });
  s.send({ typeUrl: ROUTE_TYPE, resourceNames: ['8080'] });
  const rds = await s.next();
  assert.deepEqual(resourceNames(rds), ['8080']);
  s.send({ typeUrl: ROUTE_TYPE, resourceNames: ['8080'], versionInfo: rds['versionInfo'], responseNonce: rds['nonce'] });
  await t.pilot.server.pushesIdle();

  // Status is per type, by nonce.
  await waitFor(async () => typeState(await syncz(), String(node['id']), 'RDS')?.['state'] === 'SYNCED');
  const status = await syncz();
  for (const type of ['CDS', 'EDS', 'LDS', 'RDS']) assert.equal(typeState(status, String(node['id']), type)?.['state'], 'SYNCED', type);
  assert.equal(typeState(status, String(node['id']), 'CDS')?.['versionAcked'], cds['versionInfo']);
  // These responses took the direct frame path (grpc-js's internals as the pilot expects them).
  const cons = [...t.pilot.server.connections.values()];
  assert.ok(cons.length > 0 && cons.every((c) => c.writesFrames), 'responses are written to the HTTP/2 stream directly');
});

test('versions come from content: a second proxy with the same config gets the same versions', async () => {
  const s1 = open('v-1');
  const s2 = open('v-2');
  s1.send({ node: nodeFor('v-1'), typeUrl: CLUSTER_TYPE });
  s2.send({ node: nodeFor('v-2', 'other'), typeUrl: CLUSTER_TYPE });
  const [r1, r2] = await Promise.all([s1.next(), s2.next()]);
  assert.equal(r1['versionInfo'], r2['versionInfo']);
  assert.notEqual(r1['nonce'], r2['nonce']);
});

test('a NACK is recorded with its message in syncz, CSDS and pilot_total_xds_rejects; a stale nonce is ignored', async () => {
  const node = nodeFor('nacker-1');
  const id = String(node['id']);
  const s = open('nacker-1');
  s.send({ node, typeUrl: LISTENER_TYPE });
  const lds = await s.next();
  s.send({ typeUrl: LISTENER_TYPE, versionInfo: '', responseNonce: lds['nonce'], errorDetail: { code: 3, message: 'Error adding/updating listener(s) 0.0.0.0_8080: bad filter' } });
  await waitFor(async () => typeState(await syncz(), id, 'LDS')?.['state'] === 'NACKED');
  const st = typeState(await syncz(), id, 'LDS')!;
  assert.deepEqual((st['lastNack'] as ProtoJson)['message'], 'Error adding/updating listener(s) 0.0.0.0_8080: bad filter');
  assert.equal((st['lastNack'] as ProtoJson)['version'], lds['versionInfo']);
  assert.equal(st['versionAcked'], undefined);

  const csds = await fetchClientStatus(t.pilot.xdsAddress, id);
  const configs = csds['config'] as ProtoJson[];
  assert.equal(configs.length, 1);
  const lis = (configs[0]!['genericXdsConfigs'] as ProtoJson[]).find((g) => g['typeUrl'] === LISTENER_TYPE)!;
  assert.equal(lis['configStatus'], 'ERROR');
  assert.equal((lis['errorState'] as ProtoJson)['details'], 'Error adding/updating listener(s) 0.0.0.0_8080: bad filter');

  const metrics = await (await fetch(`http://${t.pilot.httpAddress}/metrics`)).text();
  assert.match(metrics, /^pilot_total_xds_rejects\{type="lds"\} 1$/m);

  // A request carrying an older nonce changes nothing and is not answered: the next response
  // the proxy sees is the push for the next change, and it is the only one sent.
  const responsesBefore = Number(typeState(await syncz(), id, 'LDS')!['responses']);
  s.send({ typeUrl: LISTENER_TYPE, versionInfo: '', responseNonce: 'not-the-latest' });
  await t.store.create(serviceEntry('e', 'e.default.svc.cluster.local', 7070, ['10.0.0.7']));
  const push = await s.next();
  assert.equal(push['typeUrl'], LISTENER_TYPE);
  assert.deepEqual(resourceNames(push).sort(), ['0.0.0.0_7070', '0.0.0.0_8080', '0.0.0.0_9090']);
  s.send({ typeUrl: LISTENER_TYPE, versionInfo: push['versionInfo'], responseNonce: push['nonce'] });
  await waitFor(async () => typeState(await syncz(), id, 'LDS')?.['state'] === 'SYNCED');
  const synced = typeState(await syncz(), id, 'LDS')!;
  assert.equal(synced['responses'], responsesBefore + 1);
  assert.equal(synced['versionAcked'], push['versionInfo']);
  // The last rejection stays visible after the proxy recovers.
  assert.equal((synced['lastNack'] as ProtoJson)['message'], 'Error adding/updating listener(s) 0.0.0.0_8080: bad filter');
  assert.equal(s.buffered, 0);
});

test('an endpoint-only change pushes EDS with only the changed assignment; a new service pushes CDS then RDS, and an unchanged LDS is not resent', async () => {
  const node = nodeFor('pushed-1');
  const s = open('pushed-1');
  const ack = (r: ProtoJson, names?: string[]): void => s.send({ typeUrl: r['typeUrl'], versionInfo: r['versionInfo'], responseNonce: r['nonce'], ...(names ? { resourceNames: names } : {}) });
  s.send({ node, typeUrl: CLUSTER_TYPE });
  ack(await s.next());
  s.send({ typeUrl: ENDPOINT_TYPE, resourceNames: [A, B, C] });
  const eds = await s.next();
  assert.deepEqual(resourceNames(eds).sort(), [A, B, C]);
  ack(eds, [A, B, C]);
  s.send({ typeUrl: LISTENER_TYPE });
  ack(await s.next());
  s.send({ typeUrl: ROUTE_TYPE, resourceNames: ['8080', '9090'] });
  ack(await s.next(), ['8080', '9090']);
  await t.pilot.server.pushesIdle();

  const current = (await t.store.get('ServiceEntry', 'default', 'b'))!;
  const spec = current.spec as { endpoints: { address: string }[] };
  await t.store.update({ ...current, spec: { ...spec, endpoints: [{ address: '10.0.0.9' }] } });
  const push = await s.next();
  assert.equal(push['typeUrl'], ENDPOINT_TYPE);
  assert.deepEqual(resourceNames(push), [B]);
  assert.notEqual(push['versionInfo'], eds['versionInfo']);
  ack(push, [A, B, C]);

  await t.store.create(serviceEntry('d', 'd.default.svc.cluster.local', 8080, ['10.0.0.5']));
  const order: string[] = [];
  const cds = await s.next();
  order.push(String(cds['typeUrl']));
  assert.ok(resourceNames(cds).includes('outbound|8080||d.default.svc.cluster.local'));
  ack(cds);
  // EDS is not subscribed for the new cluster yet; LDS is unchanged (same port), RDS changed.
  const rds = await s.next();
  order.push(String(rds['typeUrl']));
  assert.deepEqual(order, [CLUSTER_TYPE, ROUTE_TYPE]);
  assert.deepEqual(resourceNames(rds), ['8080']);
  ack(rds, ['8080', '9090']);
  s.send({ typeUrl: ENDPOINT_TYPE, resourceNames: [A, B, C, 'outbound|8080||d.default.svc.cluster.local'], versionInfo: push['versionInfo'], responseNonce: push['nonce'] });
  const edsD = await s.next();
  assert.deepEqual(resourceNames(edsD), ['outbound|8080||d.default.svc.cluster.local']);
});

test('a cluster whose content changes is followed by EDS for it even when its endpoints did not change', async () => {
  const node = nodeFor('cds-eds-1');
  const s = open('cds-eds-1');
  const ack = (r: ProtoJson, names?: string[]): void => s.send({ typeUrl: r['typeUrl'], versionInfo: r['versionInfo'], responseNonce: r['nonce'], ...(names ? { resourceNames: names } : {}) });
  s.send({ node, typeUrl: CLUSTER_TYPE });
  ack(await s.next());
  s.send({ typeUrl: ENDPOINT_TYPE, resourceNames: [A, C] });
  const eds = await s.next();
  ack(eds, [A, C]);
  await t.pilot.server.pushesIdle();
  // Only c's cluster changes (its connect timeout); its endpoints do not.
  const current = (await t.store.get('ServiceEntry', 'default', 'c'))!;
  await t.store.update({ ...current, metadata: { ...current.metadata, annotations: { 'test.sextant.io/connect-timeout': '3s' } } });
  const cds = await s.next();
  assert.equal(cds['typeUrl'], CLUSTER_TYPE);
  const changed = (cds['resources'] as ProtoJson[]).find((r) => r['name'] === C)!;
  assert.equal(changed['connectTimeout'], '3s');
  ack(cds);
  const edsAgain = await s.next();
  assert.equal(edsAgain['typeUrl'], ENDPOINT_TYPE);
  assert.deepEqual(resourceNames(edsAgain), [C]);
  // Same assignment content, so the same type version as before.
  assert.equal(edsAgain['versionInfo'], eds['versionInfo']);
  ack(edsAgain, [A, C]);
  await t.pilot.server.pushesIdle();
  assert.equal(s.buffered, 0);
});

test('/ready, /metrics and /debug pages answer', async () => {
  assert.equal((await fetch(`http://${t.pilot.httpAddress}/ready`)).status, 200);
  const metrics = await (await fetch(`http://${t.pilot.httpAddress}/metrics`)).text();
  for (const name of ['pilot_xds', 'pilot_xds_pushes', 'pilot_proxy_convergence_time', 'pilot_xds_push_time', 'pilot_total_xds_rejects', 'pilot_debounce_time', 'pilot_services', 'pilot_virt_services']) {
    assert.match(metrics, new RegExp(`^# TYPE ${name} `, 'm'), name);
  }
  assert.match(metrics, /^pilot_services 5$/m);
  const pushStatus = (await (await fetch(`http://${t.pilot.httpAddress}/debug/push_status`)).json()) as ProtoJson;
  assert.equal(pushStatus['ready'], true);
  const configz = (await (await fetch(`http://${t.pilot.httpAddress}/debug/configz?kind=ServiceEntry`)).json()) as { resources: { metadata: { name: string } }[] };
  assert.deepEqual(configz.resources.map((r) => r.metadata.name).sort(), ['a', 'b', 'c', 'd', 'e']);
  assert.equal((await fetch(`http://${t.pilot.httpAddress}/nope`)).status, 404);
});

test('a stream whose first request has no node is refused with INVALID_ARGUMENT', async () => {
  const s = open('x');
  s.send({ typeUrl: CLUSTER_TYPE });
  const err = await s.failed();
  assert.equal(err.code, 3);
  assert.match(err.details, /must carry the node/);
});

async function waitFor(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('condition not reached');
}
