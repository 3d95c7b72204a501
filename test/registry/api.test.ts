// The registration API as a deployment platform uses it, on a pilot serving a real etcd:
// services, instances, pull-in/pull-out and releases become Istio resources labelled
// sextant.io/managed-by=registration, each call in one etcd transaction; repeated calls change
// nothing; callers without a token (401), with another namespace's token (403), with an
// invalid body (400 naming the field) or a stale If-Match (412) write nothing.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { openEtcdStore, type ConfigStore, type EtcdConfigStore, type WatchEvent } from '../../src/config/index.ts';
import { startPilot, type Pilot } from '../../src/pilot/index.ts';
import { CLUSTER_TYPE, ENDPOINT_TYPE } from '../../src/envoy/index.ts';
import { etcdUnavailableReason, startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { AdsStream, nodeFor } from '../pilot/xds/ads-client.ts';
import { freePort } from '../helpers/ports.ts';

const logger = pino({ level: process.env['SEXTANT_TEST_LOG_LEVEL'] ?? 'silent' });
const SHOP = 'tok-shop-0123456789abcdef';
const ADMIN = 'tok-admin-0123456789abcdef';
const OTHER = 'tok-other-0123456789abcdef';
const skip = etcdUnavailableReason();

interface Reply {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

describe('registration API', { skip }, () => {
  let etcd: EtcdProcess;
  let store: EtcdConfigStore;
  let pilot: Pilot;
  let off: Pilot;
  let dir: string;
  let tokens: string;
  let base: string;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sextant-registration-'));
    tokens = path.join(dir, 'tokens');
    writeFileSync(tokens, `# platform tokens\n${SHOP} shop\n${ADMIN} *\n${OTHER} other,more\n`);
    etcd = await startEtcd();
    const prefix = '/registration-test/config';
    store = await openEtcdStore({ endpoints: [etcd.endpoint], prefix, logger });
    pilot = await startPilot({
      etcdEndpoints: [etcd.endpoint], etcdPrefix: prefix, xdsAddress: '127.0.0.1:0', httpAddress: `127.0.0.1:${await freePort()}`,
      logger, registrationTokens: tokens, debounceAfterMs: 20,
    });
    await pilot.ready;
    off = await startPilot({ etcdEndpoints: [etcd.endpoint], etcdPrefix: prefix, xdsAddress: '127.0.0.1:0', httpAddress: `127.0.0.1:${await freePort()}`, logger });
    base = `http://${pilot.httpAddress}/apis/registration/v1`;
  });
  after(async () => {
    await pilot?.close();
    await off?.close();
    await store?.close();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const call = async (method: string, p: string, body?: unknown, opts: { token?: string | null; ifMatch?: string; contentType?: string; raw?: string; url?: string } = {}): Promise<Reply> => {
    const headers: Record<string, string> = {};
    const token = opts.token === undefined ? SHOP : opts.token;
    if (token !== null) headers['authorization'] = `Bearer ${token}`;
    if (opts.ifMatch !== undefined) headers['if-match'] = opts.ifMatch;
    const payload = opts.raw ?? (body === undefined ? undefined : JSON.stringify(body));
    if (payload !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
    const res = await fetch(`${opts.url ?? base}${p}`, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
    const text = await res.text();
    return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>), headers: res.headers };
  };

  const everything = async (s: ConfigStore): Promise<string[]> => {
    const out: string[] = [];
    for (const kind of ['ServiceEntry', 'WorkloadEntry', 'DestinationRule', 'VirtualService']) {
      for (const r of await s.list(kind)) out.push(`${kind}/${r.metadata.namespace}/${r.metadata.name}@${r.metadata.resourceVersion}`);
    }
    return out;
  };

  const ports = [{ name: 'http', number: 8080, protocol: 'HTTP' }];

  it('is off (404) on a pilot started without --registration-tokens', async () => {
    const r = await call('GET', '/namespaces/shop/services', undefined, { url: `http://${off.httpAddress}/apis/registration/v1` });
    assert.equal(r.status, 404);
    assert.equal(r.body['error'], 'the registration API is off: start the pilot with --registration-tokens FILE');
  });

  it('serves its OpenAPI document', async () => {
    const r = await call('GET', '/openapi.json', undefined, { token: null });
    assert.equal(r.status, 200);
    assert.equal(r.body['openapi'], '3.1.0');
    const paths = Object.keys(r.body['paths'] as object);
    assert.ok(paths.includes('/namespaces/{namespace}/services/{service}/instances/{id}:pull-out'), paths.join(' '));
  });

  it('registers a service as a ServiceEntry; a repeated PUT writes nothing', async () => {
    const created = await call('PUT', '/namespaces/shop/services/reviews', { ports });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const rv = created.body['resourceVersion'] as string;
    assert.equal(created.headers.get('etag'), `"${rv}"`);
    assert.deepEqual(created.body, {
      namespace: 'shop', name: 'reviews', hosts: ['reviews.shop.svc.cluster.local'], ports, location: 'MESH_INTERNAL', resolution: 'STATIC',
      resourceVersion: rv, serviceEntry: 'ServiceEntry/shop/reviews',
    });
    const se = await store.get('ServiceEntry', 'shop', 'reviews');
    assert.deepEqual(se?.metadata.labels, { 'sextant.io/managed-by': 'registration' });
    assert.deepEqual(se?.spec, { hosts: ['reviews.shop.svc.cluster.local'], ports, location: 'MESH_INTERNAL', resolution: 'STATIC', workloadSelector: { labels: { app: 'reviews' } } });

    const revision = await store.revision();
    const again = await call('PUT', '/namespaces/shop/services/reviews', { ports });
    assert.equal(again.status, 200);
    assert.equal(again.body['resourceVersion'], rv);
    assert.equal(await store.revision(), revision);

    const list = await call('GET', '/namespaces/shop/services');
    assert.deepEqual((list.body['items'] as Array<{ name: string }>).map((s) => s.name), ['reviews']);
  });

  it('registers instances as WorkloadEntries labelled app=SERVICE, and lists them', async () => {
    const put = await call('PUT', '/namespaces/shop/services/reviews/instances/a1', { address: '10.1.0.1', labels: { version: 'v1' }, locality: 'cn/sh/a', weight: 2, cluster: 'c1', serviceAccount: 'reviews' });
    assert.equal(put.status, 201, JSON.stringify(put.body));
    const we = await store.get('WorkloadEntry', 'shop', 'reviews-a1');
    assert.deepEqual(we?.metadata.labels, { 'sextant.io/managed-by': 'registration', app: 'reviews' });
    assert.equal(we?.metadata.annotations?.['sextant.io/traffic'], 'in');
    assert.deepEqual(we?.spec, { address: '10.1.0.1', labels: { version: 'v1', app: 'reviews', 'topology.istio.io/cluster': 'c1' }, locality: 'cn/sh/a', weight: 2, serviceAccount: 'reviews' });
    assert.deepEqual(put.body, {
      namespace: 'shop', service: 'reviews', id: 'a1', address: '10.1.0.1', state: 'in', labels: { version: 'v1' }, locality: 'cn/sh/a', weight: 2,
      cluster: 'c1', serviceAccount: 'reviews', resourceVersion: we?.metadata.resourceVersion, workloadEntry: 'WorkloadEntry/shop/reviews-a1',
    });
    assert.equal((await call('PUT', '/namespaces/shop/services/reviews/instances/a2', { address: '10.1.0.2', labels: { version: 'v2' } })).status, 201);
    const list = await call('GET', '/namespaces/shop/services/reviews/instances');
    assert.deepEqual((list.body['items'] as Array<{ id: string }>).map((i) => i.id), ['a1', 'a2']);
    // An instance of a service that is not registered is refused.
    const orphan = await call('PUT', '/namespaces/shop/services/ratings/instances/x', { address: '10.1.0.9' });
    assert.equal(orphan.status, 404);
    assert.equal(orphan.body['error'], 'service shop/ratings is not registered');
  });

  it('pulls an instance out (DRAINING in EDS) and back in; repeating either changes nothing', async () => {
    const out = await call('POST', '/namespaces/shop/services/reviews/instances/a1:pull-out');
    assert.equal(out.status, 200, JSON.stringify(out.body));
    assert.equal(out.body['state'], 'out');
    const rv = out.body['resourceVersion'] as string;
    const revision = await store.revision();
    const again = await call('POST', '/namespaces/shop/services/reviews/instances/a1:pull-out');
    assert.equal(again.body['resourceVersion'], rv);
    assert.equal(await store.revision(), revision);
    const got = await call('GET', '/namespaces/shop/services/reviews/instances/a1');
    assert.equal(got.status, 200);
    assert.equal(got.body['state'], 'out');
    const acks = got.body['acks'] as Record<string, unknown>;
    assert.equal(acks['state'], 'out');
    assert.deepEqual(acks['proxies'], []); // no proxy connected
    const back = await call('POST', '/namespaces/shop/services/reviews/instances/a1:pull-in', {});
    assert.equal(back.status, 200);
    assert.equal(back.body['state'], 'in');
    assert.equal((await store.get('WorkloadEntry', 'shop', 'reviews-a1'))?.metadata.annotations?.['sextant.io/traffic'], 'in');
  });

  it('says which proxies hold an instance and whether each has ACKed its current state', async () => {
    const path = '/namespaces/shop/services/reviews/instances/a2';
    const cluster = 'outbound|8080||reviews.shop.svc.cluster.local';
    const acksOf = async (): Promise<Record<string, unknown>> => (await call('GET', path)).body['acks'] as Record<string, unknown>;
    const s = new AdsStream(pilot.xdsAddress, 'sotw');
    try {
      const node = nodeFor('client-0', 'shop');
      s.send({ node, typeUrl: CLUSTER_TYPE });
      const cds = await s.next();
      s.send({ typeUrl: CLUSTER_TYPE, versionInfo: cds['versionInfo'], responseNonce: cds['nonce'] });
      s.send({ typeUrl: ENDPOINT_TYPE, resourceNames: [cluster] });
      let eds = await s.next();
      // Sent, not yet ACKed.
      let acks = await acksOf();
      assert.deepEqual(acks['proxies'], [{ proxy: node['id'], connection: (acks['proxies'] as Array<{ connection: string }>)[0]!.connection, clusters: [cluster], acked: false }]);
      assert.deepEqual([acks['pushed'], acks['acked'], acks['pending'], acks['complete']], [true, 0, 1, false]);
      s.send({ typeUrl: ENDPOINT_TYPE, resourceNames: [cluster], versionInfo: eds['versionInfo'], responseNonce: eds['nonce'] });
      for (let i = 0; i < 50 && (await acksOf())['complete'] !== true; i++) await sleep(20);
      acks = await acksOf();
      assert.deepEqual([acks['state'], acks['acked'], acks['pending'], acks['complete']], ['in', 1, 0, true]);

      // Pulled out: not acked until the proxy ACKs the EDS that carries DRAINING.
      const out = await call('POST', `${path}:pull-out`);
      acks = await acksOf();
      assert.deepEqual([acks['state'], acks['resourceVersion'], acks['complete']], ['out', out.body['resourceVersion'], false]);
      eds = await s.next();
      // (a1 names a locality and a2 none: two locality groups.)
      const endpoints = (eds['resources'] as Array<{ endpoints: Array<{ lbEndpoints: Array<{ healthStatus: string; endpoint: { address: { socketAddress: { address: string } } } }> }> }>)[0]!.endpoints.flatMap((g) => g.lbEndpoints);
      assert.deepEqual(endpoints.map((e) => [e.endpoint.address.socketAddress.address, e.healthStatus]).sort(), [['10.1.0.1', 'HEALTHY'], ['10.1.0.2', 'DRAINING']]);
      assert.equal((await acksOf())['complete'], false);
      s.send({ typeUrl: ENDPOINT_TYPE, resourceNames: [cluster], versionInfo: eds['versionInfo'], responseNonce: eds['nonce'] });
      for (let i = 0; i < 50 && (await acksOf())['complete'] !== true; i++) await sleep(20);
      assert.deepEqual([(await acksOf())['acked'], (await acksOf())['complete']], [1, true]);
      assert.equal((await call('POST', `${path}:pull-in`)).status, 200);
    } finally {
      s.close();
    }
  });

  it('writes a release as a DestinationRule and a VirtualService in one transaction', async () => {
    const events: WatchEvent[] = [];
    const w = store.watch(await store.revision(), (e) => events.push(e));
    await w.synced;
    const body = { subsets: [{ name: 'v1', labels: { version: 'v1' }, weight: 90 }, { name: 'v2', labels: { version: 'v2' }, weight: 10 }] };
    const put = await call('PUT', '/namespaces/shop/services/reviews/release', body);
    assert.equal(put.status, 201, JSON.stringify(put.body));
    for (let i = 0; i < 100 && events.length < 2; i++) await sleep(20);
    w.cancel();
    assert.deepEqual(events.map((e) => `${e.type} ${e.resource.kind}`), ['ADDED DestinationRule', 'ADDED VirtualService']);
    assert.equal(events[0]!.revision, events[1]!.revision);
    assert.equal(put.body['resourceVersion'], String(events[0]!.revision));
    const vs = await store.get('VirtualService', 'shop', 'reviews');
    assert.deepEqual(vs?.spec, {
      hosts: ['reviews.shop.svc.cluster.local'],
      http: [{ name: 'release', route: [
        { destination: { host: 'reviews.shop.svc.cluster.local', subset: 'v1' }, weight: 90 },
        { destination: { host: 'reviews.shop.svc.cluster.local', subset: 'v2' }, weight: 10 },
      ] }],
    });
    const got = await call('GET', '/namespaces/shop/services/reviews/release');
    assert.deepEqual(got.body['subsets'], body.subsets);
    // The next canary step is one call.
    const step = await call('PUT', '/namespaces/shop/services/reviews/release', { subsets: [{ name: 'v1', labels: { version: 'v1' }, weight: 50 }, { name: 'v2', labels: { version: 'v2' }, weight: 50 }] }, { ifMatch: got.body['resourceVersion'] as string });
    assert.equal(step.status, 200, JSON.stringify(step.body));
  });

  it('refuses without a token (401), for another namespace (403), bad bodies (400, 413, 415) and stale If-Match (412), writing nothing', async () => {
    const before = await everything(store);
    const revision = await store.revision();
    const cases: Array<[Reply, number, string | undefined]> = [
      [await call('PUT', '/namespaces/shop/services/ratings', { ports }, { token: null }), 401, undefined],
      [await call('PUT', '/namespaces/shop/services/ratings', { ports }, { token: 'not-a-known-token-at-all' }), 401, undefined],
      [await call('GET', '/namespaces/shop/services', undefined, { token: null }), 401, undefined],
      [await call('PUT', '/namespaces/shop/services/ratings', { ports }, { token: OTHER }), 403, 'namespace'],
      [await call('GET', '/namespaces/shop/services/reviews', undefined, { token: OTHER }), 403, 'namespace'],
      [await call('PUT', '/namespaces/shop/services/ratings', { ports: [{ name: 'http', number: 70000 }] }), 400, 'ports[0].number'],
      [await call('PUT', '/namespaces/shop/services/ratings', { ports, colour: 'red' }), 400, 'colour'],
      [await call('PUT', '/namespaces/shop/services/ratings', { ports: [{ name: 'http', number: 80, protocol: 'SMTP' }] }), 400, 'ports[0].protocol'],
      [await call('PUT', '/namespaces/shop/services/reviews/instances/a3', { address: '10.1.0.3', labels: { app: 'ratings' } }), 400, 'labels.app'],
      [await call('PUT', '/namespaces/shop/services/reviews/instances/a3', { address: 'not an address!' }), 400, 'address'],
      [await call('PUT', '/namespaces/shop/services/reviews/instances/a3', {}), 400, 'address'],
      [await call('PUT', '/namespaces/shop/services/reviews/release', { subsets: [{ name: 'v1', labels: { version: 'v1' }, weight: 60 }] }), 400, 'subsets'],
      [await call('PUT', '/namespaces/shop/services/Bad_Name', { ports }), 400, 'service'],
      [await call('PUT', '/namespaces/shop/services/ratings', undefined, { raw: '{"ports": [' }), 400, undefined],
      [await call('PUT', '/namespaces/shop/services/ratings', undefined, { raw: 'ports: []', contentType: 'application/yaml' }), 415, undefined],
      [await call('PUT', '/namespaces/shop/services/ratings', undefined, { raw: `{"ports": [], "x": "${'a'.repeat(1024 * 1024)}"}` }), 413, undefined],
      [await call('PUT', '/namespaces/shop/services/reviews', { ports: [{ name: 'http', number: 9090 }] }, { ifMatch: '1' }), 412, undefined],
      [await call('POST', '/namespaces/shop/services/reviews/instances/a1:pull-out', undefined, { ifMatch: '"2"' }), 412, undefined],
      [await call('DELETE', '/namespaces/shop/services/reviews', undefined, { ifMatch: '3' }), 412, undefined],
      [await call('PUT', '/namespaces/shop/services/ratings', { ports }, { ifMatch: '5' }), 412, undefined],
    ];
    for (const [r, status, field] of cases) {
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.equal(typeof r.body['error'], 'string');
      assert.equal(r.body['field'], field, JSON.stringify(r.body));
    }
    assert.equal(cases[0]![0].headers.get('www-authenticate'), 'Bearer realm="sextant-registration"');
    assert.equal(cases[5]![0].body['error'], 'ports[0].number: must be between 1 and 65535, got 70000');
    assert.equal(cases[9]![0].body['error'], 'address: endpoint address "not an address!" is not a valid FQDN or an IP address');
    assert.equal(await store.revision(), revision);
    assert.deepEqual(await everything(store), before);
  });

  it('leaves resources it did not write alone (409) and does not show them', async () => {
    await store.create({ apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'legacy', namespace: 'shop' }, spec: { hosts: ['legacy.example.com'], ports: [{ number: 80, name: 'http' }], resolution: 'DNS' } });
    const r = await call('PUT', '/namespaces/shop/services/legacy', { ports });
    assert.equal(r.status, 409);
    assert.equal(r.body['error'], 'ServiceEntry/shop/legacy exists and is not managed by the registration API (no label sextant.io/managed-by=registration); this service is left alone');
    assert.equal((await call('GET', '/namespaces/shop/services/legacy')).status, 404);
    assert.equal((await call('DELETE', '/namespaces/shop/services/legacy')).status, 404);
    assert.ok(await store.get('ServiceEntry', 'shop', 'legacy'));
  });

  it('deletes a service with its instances and release in one transaction', async () => {
    const revision = await store.revision();
    const r = await call('DELETE', '/namespaces/shop/services/reviews', undefined, { token: ADMIN });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual((r.body['deleted'] as string[]).sort(), [
      'DestinationRule/shop/reviews', 'ServiceEntry/shop/reviews', 'VirtualService/shop/reviews', 'WorkloadEntry/shop/reviews-a1', 'WorkloadEntry/shop/reviews-a2',
    ]);
    assert.equal(await store.revision(), revision + 1);
    assert.deepEqual((await everything(store)).map((k) => k.replace(/@.*/, '')), ['ServiceEntry/shop/legacy']);
    assert.equal((await call('DELETE', '/namespaces/shop/services/reviews')).status, 404);
  });

  it('re-reads the token file when it changes, and keeps the last good tokens when it turns invalid', async () => {
    const fresh = 'tok-fresh-0123456789abcdef';
    assert.equal((await call('GET', '/namespaces/shop/services', undefined, { token: fresh })).status, 401);
    const tmp = `${tokens}.tmp`;
    writeFileSync(tmp, `${fresh} shop\n`);
    renameSync(tmp, tokens);
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      status = (await call('GET', '/namespaces/shop/services', undefined, { token: fresh })).status;
      if (status !== 200) await sleep(50);
    }
    assert.equal(status, 200);
    assert.equal((await call('GET', '/namespaces/shop/services', undefined, { token: SHOP })).status, 401);
    writeFileSync(tmp, `${fresh}\n`);
    renameSync(tmp, tokens);
    await sleep(2500); // longer than the stat check's period
    assert.equal((await call('GET', '/namespaces/shop/services', undefined, { token: fresh })).status, 200);
  });
});
