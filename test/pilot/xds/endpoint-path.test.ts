// The endpoint fast path through the running pilot: an endpoint-only store change derives the
// snapshot from the previous one (logged as such), pushes EDS with only the changed assignment
// to the proxy holding it, and a config change after it still takes the full rebuild.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { openDirectoryStore } from '../../../src/config/file/store.ts';
import { CLUSTER_TYPE, ENDPOINT_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { startPilot } from '../../../src/pilot/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { AdsStream, nodeFor, resourceNames } from './ads-client.ts';
import { quietLogger, serviceEntry } from './fixtures.ts';

const A = 'outbound|8080||a.default.svc.cluster.local';
const B = 'outbound|8080||b.default.svc.cluster.local';

test('an endpoint-only change takes the fast path and pushes only the changed assignment', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-pilot-eds-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openDirectoryStore({ dir, watchFiles: false, logger: quietLogger });
  await store.create(serviceEntry('a', 'a.default.svc.cluster.local', 8080, ['10.0.0.1']));
  await store.create(serviceEntry('b', 'b.default.svc.cluster.local', 8080, ['10.0.0.2']));
  const builds: { endpointFastPath: boolean }[] = [];
  const logs = new Writable({
    write(chunk: Buffer, _enc, done): void {
      for (const line of chunk.toString().split('\n')) {
        if (line === '') continue;
        const e = JSON.parse(line) as { msg?: string; endpointFastPath?: boolean };
        if (e.msg === 'push context built') builds.push({ endpointFastPath: e.endpointFastPath === true });
      }
      done();
    },
  });
  const pilot = await startPilot({ store, generators, xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', debounceAfterMs: 20, debounceMaxMs: 2000, logger: pino({ level: 'info' }, logs) });
  t.after(() => pilot.close());
  await pilot.ready;

  const s = new AdsStream(pilot.xdsAddress, 'sotw');
  t.after(() => s.close());
  const ack = (r: ProtoJson, names?: string[]): void => s.send({ typeUrl: r['typeUrl'], versionInfo: r['versionInfo'], responseNonce: r['nonce'], ...(names ? { resourceNames: names } : {}) });
  s.send({ node: nodeFor('app-1'), typeUrl: CLUSTER_TYPE });
  const cds = await s.next();
  assert.ok(resourceNames(cds).includes(A) && resourceNames(cds).includes(B));
  ack(cds);
  s.send({ typeUrl: ENDPOINT_TYPE, resourceNames: [A, B] });
  const eds = await s.next();
  assert.deepEqual(resourceNames(eds).sort(), [A, B]);
  ack(eds, [A, B]);
  await pilot.server.pushesIdle();
  assert.deepEqual(builds, [{ endpointFastPath: false }]);

  const current = (await store.get('ServiceEntry', 'default', 'b'))!;
  await store.update({ ...current, spec: { ...(current.spec as object), endpoints: [{ address: '10.0.0.9' }] } });
  const push = await s.next();
  assert.equal(push['typeUrl'], ENDPOINT_TYPE);
  assert.deepEqual(resourceNames(push), [B]);
  const resources = push['resources'] as ProtoJson[];
  const lb = ((resources[0]!['endpoints'] as ProtoJson[])[0]!['lbEndpoints'] as ProtoJson[]).map((e) => (e['endpoint'] as { address: { socketAddress: { address: string } } }).address.socketAddress.address);
  assert.deepEqual(lb, ['10.0.0.9']);
  assert.deepEqual(builds, [{ endpointFastPath: false }, { endpointFastPath: true }]);
  ack(push, [A, B]);
  await pilot.server.pushesIdle();

  // A new port on the ServiceEntry is not an endpoint change: full rebuild, CDS pushed.
  const now = (await store.get('ServiceEntry', 'default', 'b'))!;
  const spec = now.spec as { ports: unknown[] };
  await store.update({ ...now, spec: { ...spec, ports: [...spec.ports, { number: 9090, name: 'http-alt', protocol: 'HTTP' }] } });
  const cds2 = await s.next();
  assert.equal(cds2['typeUrl'], CLUSTER_TYPE);
  assert.ok(resourceNames(cds2).includes('outbound|9090||b.default.svc.cluster.local'));
  assert.deepEqual(builds.at(-1), { endpointFastPath: false });
});
