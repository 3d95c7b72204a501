// A sidecar in INTERCEPTION_MODE REDIRECT reads each captured connection's original port from
// the address the capture rule sent it to (`sextant iptables`: port P → 127.1.P>>8.P&255 on
// the outbound capture port), with no SO_ORIGINAL_DST. Connecting straight to those loopback
// addresses is what the DNAT does, so this runs without root: HTTP routes by Host on the
// port's route table; an unknown host follows the outbound traffic policy.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { HCM_TYPE, ROUTER_TYPE, TCP_PROXY_TYPE } from '../../src/envoy/index.ts';
import type { ProtoJson } from '../../src/envoy/index.ts';
import { captureAddress } from '../../src/inject/iptables/index.ts';
import { freePort, meshWith, send, startBackend } from './helpers/fixtures.ts';
import type { Backend } from './helpers/fixtures.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

let vo = 0; // virtualOutbound's port
let reviews: Backend;
let outside: Backend;
let logPath = '';

function hcm(statPrefix: string, route: { rds: string } | { inline: ProtoJson }, accessLog?: string): ProtoJson {
  const cfg: ProtoJson = { '@type': HCM_TYPE, statPrefix, httpFilters: [{ name: 'envoy.filters.http.router', typedConfig: { '@type': ROUTER_TYPE } }] };
  if ('rds' in route) cfg['rds'] = { configSource: { ads: {}, resourceApiVersion: 'V3' }, routeConfigName: route.rds };
  else cfg['routeConfig'] = route.inline;
  if (accessLog) cfg['accessLog'] = [{ name: 'envoy.access_loggers.file', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog', path: accessLog } }];
  return { name: 'envoy.filters.network.http_connection_manager', typedConfig: cfg };
}

const ALLOW_ANY = { name: 'allow_any', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'PassthroughCluster' } }] };
const BLOCK_ALL = { name: 'block_all', domains: ['*'], routes: [{ match: { prefix: '/' }, directResponse: { status: 502 } }] };

before(async () => {
  reviews = await startBackend('reviews');
  outside = await startBackend('outside');
  cleanups.push(() => reviews.close(), () => outside.close());
  vo = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-capture-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  logPath = path.join(dir, 'access.log');
  // What the pilot sends a REDIRECT sidecar (src/pilot/gen/listeners.ts), on a free port.
  const listeners: ProtoJson[] = [
    {
      name: 'virtualOutbound', address: { socketAddress: { address: '0.0.0.0', portValue: vo } }, useOriginalDst: true, trafficDirection: 'OUTBOUND',
      filterChains: [
        { name: 'PassthroughFilterChain', filters: [{ name: 'envoy.filters.network.tcp_proxy', typedConfig: { '@type': TCP_PROXY_TYPE, statPrefix: 'PassthroughCluster', cluster: 'PassthroughCluster' } }] },
        { name: 'virtualOutbound-catchall-http', filterChainMatch: { applicationProtocols: ['http/1.0', 'http/1.1'] }, filters: [hcm('PassthroughCluster', { inline: { name: 'catchall', virtualHosts: [ALLOW_ANY] } }, logPath)] },
      ],
    },
    { name: '0.0.0.0_9080', address: { socketAddress: { address: '0.0.0.0', portValue: 9080 } }, bindToPort: false, trafficDirection: 'OUTBOUND', filterChains: [{ filters: [hcm('outbound_0.0.0.0_9080', { rds: '9080' }, logPath)] }] },
    { name: '0.0.0.0_8080', address: { socketAddress: { address: '0.0.0.0', portValue: 8080 } }, bindToPort: false, trafficDirection: 'OUTBOUND', filterChains: [{ filters: [hcm('outbound_0.0.0.0_8080', { inline: { name: '8080', virtualHosts: [BLOCK_ALL] } })] }] },
  ];
  const clusters: ProtoJson[] = [
    { name: 'outbound|9080||reviews.default.svc.cluster.local', type: 'STATIC', connectTimeout: '1s', loadAssignment: { clusterName: 'reviews', endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: reviews.port } } } }] }] } },
    { name: 'PassthroughCluster', type: 'ORIGINAL_DST', connectTimeout: '1s', lbPolicy: 'CLUSTER_PROVIDED' },
    { name: 'BlackHoleCluster', type: 'STATIC', connectTimeout: '1s' },
  ];
  const routes: ProtoJson[] = [{
    name: '9080',
    virtualHosts: [
      { name: 'reviews.default.svc.cluster.local:9080', domains: ['reviews.default.svc.cluster.local', 'reviews.default.svc.cluster.local:9080', 'reviews', 'reviews:9080'], routes: [{ match: { prefix: '/' }, route: { cluster: 'outbound|9080||reviews.default.svc.cluster.local' } }] },
      ALLOW_ANY,
    ],
  }];
  const m = await meshWith({ clusters, listeners, routes }, { metadata: { INTERCEPTION_MODE: 'REDIRECT' } });
  cleanups.push(() => m.close());
  await m.proxy.whenReady();
});

function accessLog(): Record<string, unknown>[] {
  try {
    return readFileSync(logPath, 'utf8').trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
  } catch {
    return [];
  }
}

async function lastLog(n: number): Promise<Record<string, unknown>> {
  for (let i = 0; i < 50 && accessLog().length < n; i++) await new Promise((r) => setTimeout(r, 50));
  return accessLog()[n - 1]!;
}

test('a connection captured from port 9080 is served by the 9080 route table, by Host', async () => {
  const r = await send(vo, '/reviews/1', { host: 'reviews:9080' }, { host: captureAddress('outbound', 9080) });
  assert.equal(r.status, 200);
  assert.equal((JSON.parse(r.body) as { name: string }).name, 'reviews');
  const log = await lastLog(1);
  assert.equal(log['upstream_cluster'], 'outbound|9080||reviews.default.svc.cluster.local');
  assert.equal(log['downstream_local_address'], '0.0.0.0:9080', 'the original port; the original address is not known');
});

test('an unknown host on a captured port goes to the address its Host names, on the port the app dialled', async () => {
  const r = await send(vo, '/somewhere', { host: `127.0.0.1:1` }, { host: captureAddress('outbound', outside.port) });
  assert.equal(r.status, 200, r.body);
  assert.equal((JSON.parse(r.body) as { name: string }).name, 'outside');
  const log = await lastLog(2);
  assert.equal(log['upstream_cluster'], 'PassthroughCluster');
  assert.equal(log['upstream_host'], `127.0.0.1:${outside.port}`);
});

test('REGISTRY_ONLY: an unknown host on a captured port is answered 502 NR', async () => {
  const r = await send(vo, '/', { host: 'unknown.example' }, { host: captureAddress('outbound', 8080) });
  assert.equal(r.status, 502);
});

test('the loop guard holds under capture: a Host naming the proxy itself is 502 NR', async () => {
  const r = await send(vo, '/', { host: '127.0.0.1' }, { host: captureAddress('outbound', vo) });
  assert.equal(r.status, 502);
});

test('captured TCP with no listener for its port is closed: its original address is not known', async () => {
  const s = net.connect({ host: captureAddress('outbound', 5432), port: vo });
  s.on('connect', () => s.write('\x00\x00\x00\x08\x04\xd2\x16\x2f'));
  const closed = await new Promise<boolean>((resolve) => {
    s.on('close', () => resolve(true));
    s.on('error', () => resolve(true));
    setTimeout(() => resolve(false), 8000);
  });
  assert.ok(closed);
});

test('a connection to the capture port at an address no rule uses is the proxy itself: passthrough refuses it', async () => {
  const r = await send(vo, '/', { host: `127.0.0.1:${vo}` }, { host: '127.0.0.1' });
  assert.equal(r.status, 502);
});
