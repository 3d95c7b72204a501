// M17: the real source address travels through a client and a server sidecar. Each
// workload has its own loopback IP, as in the demo topology; the client sidecar binds its
// outbound connections to its workload IP, and the server sidecar binds its connection to
// the app to the caller's address, so the app, the access log and x-forwarded-for all see
// the calling workload.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TCP_PROXY_TYPE } from '../../src/envoy/index.ts';
import { assignment, edsCluster, freePort, httpListener, meshWith, routeConfig, send, startBackend } from './helpers/fixtures.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

test('the app behind the server sidecar sees the calling workload IP as TCP peer, in x-forwarded-for and the access log', async () => {
  const net3 = 100 + Math.floor(Math.random() * 150);
  const clientIp = `127.0.${net3}.2`;
  const serverIp = `127.0.${net3}.3`;
  const seen: { peer: string; xff: string | undefined }[] = [];
  const app = await startBackend('reviews', (req, res) => {
    seen.push({ peer: req.socket.remoteAddress ?? '', xff: req.headers['x-forwarded-for'] as string | undefined });
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('reviews');
  });
  cleanups.push(app.close);
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-m17-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const accessLog = path.join(dir, 'server-access.log');

  // server sidecar: inbound listener on its workload IP, to the app
  const inboundPort = await freePort(serverIp);
  const inbound = httpListener('virtualInbound', inboundPort, 'inbound|9080||', { direction: 'INBOUND', accessLogPath: accessLog });
  inbound['address'] = { socketAddress: { address: serverIp, portValue: inboundPort } };
  const server = await meshWith({
    clusters: [{
      name: 'inbound|9080||', type: 'STATIC', connectTimeout: '1s',
      loadAssignment: { clusterName: 'inbound|9080||', endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: app.port } } } }] }] },
    }],
    listeners: [inbound],
    routes: [routeConfig('inbound|9080||', [{ name: 'inbound', domains: ['*'], routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster: 'inbound|9080||' } }] }])],
  }, { id: `sidecar~${serverIp}~reviews-v1-abc12.default~default.svc.cluster.local`, labels: { app: 'reviews', version: 'v1' } });
  cleanups.push(server.close);

  // client sidecar: outbound listener for the app on loopback, to the server sidecar
  const outboundPort = await freePort();
  const client = await meshWith({
    clusters: [edsCluster('outbound|9080||reviews.default.svc.cluster.local')],
    endpoints: [assignment('outbound|9080||reviews.default.svc.cluster.local', [inboundPort], { address: serverIp })],
    listeners: [httpListener('outbound', outboundPort, '9080')],
    routes: [routeConfig('9080', [{ name: 'reviews', domains: ['reviews', 'reviews:9080'], routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster: 'outbound|9080||reviews.default.svc.cluster.local' } }] }])],
  }, { id: `sidecar~${clientIp}~productpage-v1-abc12.default~default.svc.cluster.local` });
  cleanups.push(client.close);
  await Promise.all([server.proxy.whenReady(), client.proxy.whenReady()]);

  const r = await send(outboundPort, '/reviews/1', { Host: 'reviews:9080' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'reviews');
  assert.deepEqual(seen, [{ peer: clientIp, xff: clientIp }]);

  // the server sidecar's access log names the calling workload as the downstream
  const deadline = Date.now() + 5000;
  while ((!existsSync(accessLog) || readFileSync(accessLog, 'utf8') === '') && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  const line = JSON.parse(readFileSync(accessLog, 'utf8').trim().split('\n')[0]!) as Record<string, unknown>;
  assert.equal(String(line['downstream_remote_address']).split(':')[0], clientIp);
  assert.equal(line['x_forwarded_for'], clientIp);
});

test('tcp_proxy binds to the workload IP; a cluster\'s upstreamBindConfig wins over it', async () => {
  const net3 = 100 + Math.floor(Math.random() * 150);
  const workloadIp = `127.0.${net3}.5`;
  const bindIp = `127.0.${net3}.6`;
  const peers: string[] = [];
  const echo = net.createServer((s) => { peers.push(s.remoteAddress ?? ''); s.pipe(s); });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => echo.close(() => r())));
  const echoPort = (echo.address() as net.AddressInfo).port;
  const seen: string[] = [];
  const app = await startBackend('bound', (req, res) => {
    seen.push(req.socket.remoteAddress ?? '');
    req.resume();
    res.end('ok');
  });
  cleanups.push(app.close);
  const tcpPort = await freePort();
  const httpPort = await freePort();
  const m = await meshWith({
    clusters: [edsCluster('tcp'), edsCluster('bound', { upstreamBindConfig: { sourceAddress: { address: bindIp, portValue: 0 } } })],
    endpoints: [assignment('tcp', [echoPort]), assignment('bound', [app.port])],
    listeners: [{
      name: 'tcp', address: { socketAddress: { address: '127.0.0.1', portValue: tcpPort } },
      filterChains: [{ filters: [{ name: 'envoy.filters.network.tcp_proxy', typedConfig: { '@type': TCP_PROXY_TYPE, statPrefix: 'tcp', cluster: 'tcp' } }] }],
    }, httpListener('http', httpPort, 'r')],
    routes: [routeConfig('r', [{ name: 'bound', domains: ['*'], routes: [{ name: 'all', match: { prefix: '/' }, route: { cluster: 'bound' } }] }])],
  }, { id: `sidecar~${workloadIp}~ratings-v1-abc12.default~default.svc.cluster.local` });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  const sock = net.connect(tcpPort, '127.0.0.1');
  const got = await new Promise<string>((resolve, reject) => {
    let acc = '';
    sock.on('data', (d) => { acc += d.toString(); if (acc.length >= 5) { resolve(acc); sock.end(); } });
    sock.on('error', reject);
    sock.write('hello');
  });
  assert.equal(got, 'hello');
  assert.deepEqual(peers, [workloadIp]);
  const r = await send(httpPort, '/', { Host: 'bound' });
  assert.equal(r.status, 200);
  assert.deepEqual(seen, [bindIp]);
});
