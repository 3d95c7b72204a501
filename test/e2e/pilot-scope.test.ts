// End to end with the real generators: a state-of-the-world and a delta client each receive
// exactly what their Sidecar scope implies; a NACK shows in `sextant proxy-status` (a real
// process); an EnvoyFilter with a workloadSelector is pushed to the selected proxy only.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import type { Resource } from '../../src/api/resource.ts';
import { openConfigStore } from '../../src/config/index.ts';
import type { ConfigStore } from '../../src/config/index.ts';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, decodeMessage, encodeMessage } from '../../src/envoy/index.ts';
import type { ProtoJson } from '../../src/envoy/index.ts';
import { startPilot } from '../../src/pilot/index.ts';
import type { Pilot } from '../../src/pilot/index.ts';
import { AdsStream, nodeFor } from '../pilot/xds/ads-client.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(path.join(tmpdir(), 'sextant-pilot-scope-'));
let store: ConfigStore;
let pilot: Pilot;
const streams: AdsStream[] = [];

function se(name: string, namespace: string, port: number, address: string): Resource {
  return {
    apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name, namespace },
    spec: { hosts: [`${name}.${namespace}.svc.cluster.local`], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: port, name: 'http', protocol: 'HTTP' }], endpoints: [{ address }] },
  };
}

before(async () => {
  const logger = pino({ level: process.env['PILOT_TEST_LOG'] ?? 'silent' });
  store = await openConfigStore({ configDir: dir, logger, watchFiles: false });
  await store.create(se('web', 'team-a', 8080, '10.1.0.1'));
  await store.create(se('api', 'team-b', 9090, '10.2.0.1'));
  await store.create({
    apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'default', namespace: 'team-a' },
    spec: { egress: [{ hosts: ['./*'] }] },
  });
  pilot = await startPilot({ store, xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', debounceAfterMs: 20, logger });
  await pilot.ready;
});

after(async () => {
  for (const s of streams) s.close();
  await pilot.close();
  rmSync(dir, { recursive: true, force: true });
});

function open(mode: 'sotw' | 'delta'): AdsStream {
  const s = new AdsStream(pilot.xdsAddress, mode);
  streams.push(s);
  return s;
}

function names(r: ProtoJson): string[] {
  return ((r['resources'] ?? []) as ProtoJson[]).map((x) => String(x['name'] ?? ((x['resource'] as ProtoJson | undefined)?.['clusterName'] ?? ''))).sort();
}

function outbound(list: string[]): string[] {
  return list.filter((n) => n.startsWith('outbound|'));
}

/** Every served resource decodes and re-encodes with Envoy's protos to the same bytes. */
function assertRoundTrips(typeUrl: string, resources: ProtoJson[]): void {
  for (const r of resources) {
    const inner = (r['resource'] as ProtoJson | undefined) ?? r;
    const { '@type': _t, ...json } = inner;
    const bytes = encodeMessage(typeUrl, json);
    assert.deepEqual(encodeMessage(typeUrl, decodeMessage(typeUrl, bytes)), bytes);
  }
}

const WEB = 'outbound|8080||web.team-a.svc.cluster.local';
const API = 'outbound|9090||api.team-b.svc.cluster.local';
let sotw: AdsStream;
let delta: AdsStream;
let other: AdsStream;
const ids = {
  a1: String(nodeFor('web-1', 'team-a')['id']),
  a2: String(nodeFor('other-1', 'team-a')['id']),
  b1: String(nodeFor('api-1', 'team-b')['id']),
};

test('each client receives exactly the clusters its Sidecar scope implies', async () => {
  sotw = open('sotw');
  sotw.send({ node: nodeFor('web-1', 'team-a', { LABELS: { app: 'web' } }), typeUrl: CLUSTER_TYPE });
  const a = await sotw.next();
  assert.deepEqual(outbound(names(a)), [WEB]);
  assertRoundTrips(CLUSTER_TYPE, a['resources'] as ProtoJson[]);
  sotw.send({ typeUrl: CLUSTER_TYPE, versionInfo: a['versionInfo'], responseNonce: a['nonce'] });

  delta = open('delta');
  delta.send({ node: nodeFor('api-1', 'team-b', { LABELS: { app: 'api' } }), typeUrl: CLUSTER_TYPE });
  const b = await delta.next();
  assert.deepEqual(outbound(names(b)), [WEB, API]);
  assertRoundTrips(CLUSTER_TYPE, b['resources'] as ProtoJson[]);
  delta.send({ typeUrl: CLUSTER_TYPE, responseNonce: b['nonce'] });
  // The clusters outside any service are the same for both.
  assert.deepEqual(names(a).filter((n) => !n.startsWith('outbound|')), names(b).filter((n) => !n.startsWith('outbound|')));

  delta.send({ typeUrl: ENDPOINT_TYPE, resourceNamesSubscribe: [API, WEB] });
  const eds = await delta.next();
  assert.deepEqual(names(eds), [WEB, API]);
  assertRoundTrips(ENDPOINT_TYPE, eds['resources'] as ProtoJson[]);
  delta.send({ typeUrl: ENDPOINT_TYPE, responseNonce: eds['nonce'] });

  other = open('sotw');
  other.send({ node: nodeFor('other-1', 'team-a', { LABELS: { app: 'other' } }), typeUrl: CLUSTER_TYPE });
  const o = await other.next();
  assert.deepEqual(outbound(names(o)), [WEB]);
  other.send({ typeUrl: CLUSTER_TYPE, versionInfo: o['versionInfo'], responseNonce: o['nonce'] });
  for (const s of [sotw, other]) s.send({ typeUrl: LISTENER_TYPE });
  for (const s of [sotw, other]) {
    const l = await s.next();
    assertRoundTrips(LISTENER_TYPE, l['resources'] as ProtoJson[]);
    s.send({ typeUrl: LISTENER_TYPE, versionInfo: l['versionInfo'], responseNonce: l['nonce'] });
  }
  delta.send({ typeUrl: LISTENER_TYPE });
  const dl = await delta.next();
  delta.send({ typeUrl: LISTENER_TYPE, responseNonce: dl['nonce'] });
  await pilot.server.pushesIdle();
});

async function responses(): Promise<Record<string, number>> {
  const status = (await (await fetch(`http://${pilot.httpAddress}/debug/syncz`)).json()) as { proxy: string; types: { responses: number }[] }[];
  return Object.fromEntries(status.map((s) => [s.proxy, s.types.reduce((n, t) => n + t.responses, 0)]));
}

test('an EnvoyFilter with a workloadSelector is pushed to the selected proxy only', async () => {
  const before = await responses();
  await store.create({
    apiVersion: 'networking.istio.io/v1alpha3', kind: 'EnvoyFilter', metadata: { name: 'web-timeout', namespace: 'team-a' },
    spec: {
      workloadSelector: { labels: { app: 'web' } },
      configPatches: [{ applyTo: 'CLUSTER', match: { context: 'SIDECAR_OUTBOUND', cluster: { service: 'web.team-a.svc.cluster.local' } }, patch: { operation: 'MERGE', value: { connect_timeout: '7s' } } }],
    },
  });
  const push = await sotw.next();
  assert.equal(push['typeUrl'], CLUSTER_TYPE);
  const web = (push['resources'] as ProtoJson[]).find((c) => c['name'] === WEB)!;
  assert.equal(web['connectTimeout'], '7s');
  sotw.send({ typeUrl: CLUSTER_TYPE, versionInfo: push['versionInfo'], responseNonce: push['nonce'] });
  await pilot.server.pushesIdle();
  const afterPush = await responses();
  assert.ok(afterPush[ids.a1]! > before[ids.a1]!, 'the selected proxy was pushed');
  assert.equal(afterPush[ids.a2], before[ids.a2], 'the other proxy in team-a was not pushed');
  assert.equal(afterPush[ids.b1], before[ids.b1], 'the proxy in team-b was not pushed');
  assert.equal(other.buffered, 0);
  assert.equal(delta.buffered, 0);
});

test('a NACK shows in `sextant proxy-status`', async () => {
  // NACK the last LDS response, by the nonce the status page reports.
  const status = (await (await fetch(`http://${pilot.httpAddress}/debug/syncz?proxy=${encodeURIComponent(ids.a1)}`)).json()) as { types: { type: string; nonceSent: string; versionSent: string }[] }[];
  const lds = status[0]!.types.find((t) => t.type === 'LDS')!;
  sotw.send({ typeUrl: LISTENER_TYPE, versionInfo: '', responseNonce: lds.nonceSent, errorDetail: { code: 3, message: 'listener virtualOutbound: invalid filter chain' } });
  let out = '';
  for (let i = 0; i < 100; i++) {
    const { stdout } = await promisify(execFile)(path.join(repo, 'node_modules/.bin/node'), ['src/cli/main.ts', 'proxy-status', '--pilot', `http://${pilot.httpAddress}`], { cwd: repo });
    out = stdout;
    if (out.includes('NACKED')) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const row = out.split('\n').find((l) => l.startsWith(ids.a1))!;
  assert.match(row, /^\S+\s+SOTW\s+SYNCED\s+NACKED\s+NOT SENT\s+NOT SENT\s+/);
  assert.ok(out.includes(`${ids.a1} LDS NACKED version ${lds.versionSent}: listener virtualOutbound: invalid filter chain`), out);
  const b1 = out.split('\n').find((l) => l.startsWith(ids.b1))!;
  assert.match(b1, /^\S+\s+DELTA\s+SYNCED\s+SYNCED\s+SYNCED\s+NOT SENT\s+/);
});
