// A pull plans its write from the pilot's copy of the instance (one store read less per call),
// pinned with If-Match to that copy's version. On a real etcd: a current copy writes once; a
// stale copy (the watch behind the store) costs a retry from the store but never a wrong
// write; a copy saying "already in that state" is not trusted; a caller's If-Match is checked
// against the store, not the copy.
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import type { Resource } from '../../src/api/index.ts';
import { openEtcdStore, type EtcdConfigStore } from '../../src/config/index.ts';
import { createRegistrationApi, type RegistrationApi } from '../../src/registry/api/index.ts';
import { etcdUnavailableReason, startEtcd, type EtcdProcess } from '../helpers/etcd.ts';

const TOKEN = 'tok-cached-0123456789abcdef';
const skip = etcdUnavailableReason();

describe('registration API pulls planned from the pilot\'s copy', { skip }, () => {
  let etcd: EtcdProcess;
  let store: EtcdConfigStore;
  let api: RegistrationApi;
  let server: http.Server;
  let dir: string;
  let base: string;
  // The copy the API is given: set by each test (a Map standing in for the pilot's watch).
  const copy = new Map<string, Resource>();
  let copyReads = 0;
  let storeGets = 0;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sextant-registration-cached-'));
    writeFileSync(path.join(dir, 'tokens'), `${TOKEN} shop\n`);
    etcd = await startEtcd();
    store = await openEtcdStore({ endpoints: [etcd.endpoint], prefix: '/cached-test/config', logger: pino({ level: 'silent' }) });
    // The store as the API sees it, counting its reads of single resources.
    const counted = new Proxy(store, {
      get(target, key) {
        const v = Reflect.get(target, key, target) as unknown;
        if (key === 'get') return (...args: Parameters<EtcdConfigStore['get']>) => { storeGets++; return target.get(...args); };
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    api = createRegistrationApi({
      tokensFile: path.join(dir, 'tokens'), store: () => counted, logger: pino({ level: 'silent' }),
      cached: (kind, ns, name) => {
        copyReads++;
        return copy.get(`${kind}/${ns}/${name}`);
      },
    });
    server = http.createServer((req, res) => api.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}/apis/registration/v1/namespaces/shop/services/reviews`;
  });
  after(async () => {
    api?.close();
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
    await store?.close();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const call = async (method: string, p: string, body?: unknown, ifMatch?: string): Promise<{ status: number; body: Record<string, unknown> }> => {
    const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (ifMatch !== undefined) headers['if-match'] = ifMatch;
    const res = await fetch(`${base}${p}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const stored = async (): Promise<Resource> => (await store.get('WorkloadEntry', 'shop', 'reviews-a1'))!;
  const traffic = (r: Resource): string | undefined => r.metadata.annotations?.['sextant.io/traffic'];

  it('writes once from a current copy, and retries from the store when the copy is stale', async () => {
    assert.equal((await call('PUT', '', { ports: [{ name: 'http', number: 8080 }] })).status, 201);
    assert.equal((await call('PUT', '/instances/a1', { address: '10.0.0.1' })).status, 201);
    const v1 = await stored();
    copy.set('WorkloadEntry/shop/reviews-a1', v1);
    copyReads = 0;
    storeGets = 0;
    let revision = await store.revision();
    const out = await call('POST', '/instances/a1:pull-out');
    assert.equal(out.status, 200, JSON.stringify(out.body));
    assert.equal(out.body['state'], 'out');
    assert.equal(copyReads, 1);
    assert.equal(storeGets, 0, 'planned from the copy alone');
    assert.equal(await store.revision(), revision + 1, 'one write');
    assert.equal(traffic(await stored()), 'out');

    // The copy still holds v1 (in): pulling in plans from the store, and writes once.
    revision = await store.revision();
    storeGets = 0;
    const back = await call('POST', '/instances/a1:pull-in');
    assert.equal(back.status, 200, JSON.stringify(back.body));
    assert.equal(back.body['state'], 'in');
    assert.equal(storeGets, 1, 'the copy says in already: read from the store');
    assert.equal(await store.revision(), revision + 1, 'one write');
    assert.equal(traffic(await stored()), 'in');

    // A stale copy saying "in" while the store says "out": a pull-out finds the conflict and
    // writes nothing more than it must (the store already says out after this write).
    await call('POST', '/instances/a1:pull-out');
    const staleIn = copy.get('WorkloadEntry/shop/reviews-a1')!;
    assert.equal(traffic(staleIn), 'in', 'the copy is behind the store');
    revision = await store.revision();
    storeGets = 0;
    const again = await call('POST', '/instances/a1:pull-out');
    assert.equal(again.status, 200);
    assert.equal(storeGets, 1, 'planned again from the store after the conflict');
    assert.equal(again.body['state'], 'out');
    assert.equal(await store.revision(), revision, 'already out in the store: nothing written');
  });

  it('does not trust a copy that says the instance is already in the requested state', async () => {
    const current = await stored();
    assert.equal(traffic(current), 'out');
    // The copy claims "in" at a stale version; the store says out: pull-in must write.
    copy.set('WorkloadEntry/shop/reviews-a1', { ...current, metadata: { ...current.metadata, resourceVersion: '1', annotations: { ...current.metadata.annotations, 'sextant.io/traffic': 'in' } } });
    const revision = await store.revision();
    const back = await call('POST', '/instances/a1:pull-in');
    assert.equal(back.status, 200);
    assert.equal(back.body['state'], 'in');
    assert.equal(await store.revision(), revision + 1);
    assert.equal(traffic(await stored()), 'in');
  });

  it('checks a caller\'s If-Match against the store, not the copy', async () => {
    const current = await stored();
    copy.set('WorkloadEntry/shop/reviews-a1', { ...current, metadata: { ...current.metadata, resourceVersion: '2' } });
    const stale = await call('POST', '/instances/a1:pull-out', undefined, '2');
    assert.equal(stale.status, 412, JSON.stringify(stale.body));
    assert.equal(traffic(await stored()), 'in');
    const ok = await call('POST', '/instances/a1:pull-out', undefined, current.metadata.resourceVersion);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(traffic(await stored()), 'out');
  });

  it('ignores a copy of a WorkloadEntry this API did not write for that instance', async () => {
    const current = await stored();
    copy.set('WorkloadEntry/shop/reviews-a1', { ...current, metadata: { ...current.metadata, annotations: { 'sextant.io/traffic': 'out' }, labels: {} } });
    const back = await call('POST', '/instances/a1:pull-in');
    assert.equal(back.status, 200, JSON.stringify(back.body));
    assert.equal(traffic(await stored()), 'in');
    const missing = await fetch(`${base}/instances/zz:pull-out`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(missing.status, 404);
  });
});
