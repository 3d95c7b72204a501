// WebSocket through two sidecars (real processes, configured by a real pilot, which emits
// Istio's `upgradeConfigs: [{upgradeType: websocket}]` on every connection manager): the
// Upgrade is routed like any request, then bytes flow both ways until a side closes; the
// close handshake arrives intact and both sidecars count the upgrade (101).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { startSidecarMesh } from '../helpers/sidecar-processes.ts';
import type { Sidecar, SidecarMesh } from '../helpers/sidecar-processes.ts';
import { egressSidecar, ingressSidecar } from '../helpers/istio-yaml.ts';

const HOST = 'chat.default.svc.cluster.local';
const CLIENT_IP = '127.0.53.1';
const SERVER_IP = '127.0.53.3';
const PORT = 8080;

let mesh: SidecarMesh;
let wss: WebSocketServer;
let clientSidecar: Sidecar;
let serverSidecar: Sidecar;
const serverSaw: { url: string; host: string }[] = [];

before(async () => {
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (ws, req) => {
    serverSaw.push({ url: req.url ?? '', host: req.headers.host ?? '' });
    ws.on('message', (data, binary) => ws.send(data, { binary }));
  });
  const appPort = (wss.address() as AddressInfo).port;
  mesh = await startSidecarMesh(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: chat, namespace: default}
spec:
  hosts: [${HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: chat}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: chat-v1, namespace: default}
spec: {address: ${SERVER_IP}, labels: {app: chat, version: v1}, ports: {http: ${PORT}}}
---
${egressSidecar({ name: 'client', bind: CLIENT_IP, port: PORT })}
---
${ingressSidecar({ name: 'chat', bind: SERVER_IP, port: PORT, defaultEndpoint: `127.0.0.1:${appPort}` })}
`);
  [clientSidecar, serverSidecar] = await Promise.all([
    mesh.sidecar(CLIENT_IP, 'client-v1', { app: 'client', version: 'v1' }),
    mesh.sidecar(SERVER_IP, 'chat-v1', { app: 'chat', version: 'v1' }),
  ]);
});

after(async () => {
  await mesh?.stop();
  wss?.close();
});

test('a WebSocket echo through two sidecars: 10,000 messages each way, then a clean close', async () => {
  const ws = new WebSocket(`ws://${CLIENT_IP}:${PORT}/chat?room=1`, { headers: { host: `${HOST}:${PORT}` } });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  assert.deepEqual(serverSaw.at(-1), { url: '/chat?room=1', host: `${HOST}:${PORT}` });

  const N = 10_000;
  const got: string[] = [];
  await new Promise<void>((resolve) => {
    ws.on('message', (data) => {
      got.push(String(data));
      if (got.length === N) resolve();
    });
    for (let i = 0; i < N; i++) ws.send(i % 10 === 0 ? Buffer.alloc(1000, i % 256).toString('hex') : `message ${i}`);
  });
  assert.equal(got.length, N);
  assert.ok(got.every((m, i) => m === (i % 10 === 0 ? Buffer.alloc(1000, i % 256).toString('hex') : `message ${i}`)), 'every message echoed in order');

  const closed = new Promise<[number, string]>((resolve) => ws.once('close', (code, reason) => resolve([code, reason.toString()])));
  ws.close(1000, 'done');
  assert.deepEqual(await closed, [1000, 'done']);

  // each sidecar counts the exchange once, as a 101, when the tunnel closes
  const deadline = Date.now() + 5000;
  let client = '';
  let server = '';
  while (Date.now() < deadline) {
    client = await clientSidecar.stats();
    server = await serverSidecar.stats();
    if (/response_code="101"/.test(client) && /response_code="101"/.test(server)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(client, /istio_requests_total\{reporter="source",[^}]*response_code="101",response_flags="-"\} 1\n/);
  assert.match(server, /istio_requests_total\{reporter="destination",[^}]*response_code="101",response_flags="-"\} 1\n/);
});

test('a plain request on the same port still gets an HTTP answer after the tunnel', async () => {
  // the app answers non-upgrade requests with 426 (ws's HTTP server)
  const status = await new Promise<number>((resolve, reject) => {
    const req = http.request({ host: CLIENT_IP, port: PORT, path: '/chat', headers: { host: `${HOST}:${PORT}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 426);
});
