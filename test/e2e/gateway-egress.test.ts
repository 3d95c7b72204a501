// Istio's egress gateway pattern, as istio.io's "Egress Gateways" task writes it (ServiceEntry,
// Gateway, DestinationRule with a subset for the gateway, VirtualService bound to `mesh` and the
// gateway), with the external host on loopback and a mesh in REGISTRY_ONLY. Real processes: a
// pilot, an egress gateway (`sextant gateway --egress`) and a sidecar (`sextant proxy`). The
// sidecar gets 502 for the host until the pattern is applied, then reaches it only through the
// gateway: the host sees every call come from the gateway, and the gateway's access log has each.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../helpers/ports.ts';
import { egressGatewayAccessLog, eventually, startGatewayMesh } from './gateway-helpers.ts';
import type { GatewayMesh } from './gateway-helpers.ts';

const GATEWAY_IP = '127.0.66.2';
const CLIENT_IP = '127.0.66.3';
const EXTERNAL_IP = '127.0.66.10';
const OTHER_IP = '127.0.66.11';
const EXTERNAL_PORT = 18080;

const dir = mkdtempSync(path.join(tmpdir(), 'sextant-gateway-egress-'));
const accessLog = path.join(dir, 'egress-access.log');
let mesh: GatewayMesh;
const seen: { host: string; from: string }[] = [];
const servers: http.Server[] = [];

async function external(name: string, ip: string): Promise<void> {
  const s = http.createServer((req, res) => {
    seen.push({ host: name, from: req.socket.remoteAddress ?? '' });
    res.end(`${name} ${req.url}`);
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(EXTERNAL_PORT, ip, r));
}

/** The egress gateway's own service, as Kubernetes would declare it (port 80 → the pod's target port). */
function gatewayService(targetPort: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  hosts: [istio-egressgateway.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {istio: egressgateway}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: istio-egressgateway-1, namespace: istio-system}
spec: {address: ${GATEWAY_IP}, labels: {istio: egressgateway}, ports: {http: ${targetPort}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sleep, namespace: default}
spec:
  workloadSelector: {labels: {app: sleep}}
  egress:
  - port: {number: ${EXTERNAL_PORT}, protocol: HTTP, name: http}
    bind: ${CLIENT_IP}
    captureMode: NONE
    hosts: ["*/*"]
---
${egressGatewayAccessLog(accessLog)}`;
}

// istio.io's egress gateway task, with edition.cnn.com replaced by a host on loopback.
const PATTERN = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [external.example.com]
  ports:
  - number: ${EXTERNAL_PORT}
    name: http-port
    protocol: HTTP
  resolution: DNS
  endpoints: [{address: ${EXTERNAL_IP}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: default}
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - external.example.com
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway-for-external, namespace: default}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: external
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-external-through-egress-gateway, namespace: default}
spec:
  hosts:
  - external.example.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: ${EXTERNAL_PORT}
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: external
        port:
          number: 80
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 80
    route:
    - destination:
        host: external.example.com
        port:
          number: ${EXTERNAL_PORT}
      weight: 100
`;

let lastAnswer = 'none yet';

/** A request through the sidecar's egress listener, as the app makes it (Host names the external host). */
function viaSidecar(host: string, p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: CLIENT_IP, port: EXTERNAL_PORT, path: p, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => {
        lastAnswer = `${res.statusCode} ${JSON.stringify(res.headers)} ${body.slice(0, 200)}`;
        resolve({ status: res.statusCode ?? 0, body });
      });
    }).on('error', (err) => { lastAnswer = String(err); reject(err); });
  });
}

function logLines(): Record<string, unknown>[] {
  let text = '';
  try { text = readFileSync(accessLog, 'utf8'); } catch { /* not written yet */ }
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

before(async () => {
  await external('external.example.com', EXTERNAL_IP);
  await external('other.example.com', OTHER_IP);
  const meshConfig = path.join(dir, 'mesh.yaml');
  writeFileSync(meshConfig, 'outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n');
  const targetPort = await freePort('0.0.0.0'); // the gateway binds every address, as Envoy's gateways do
  mesh = await startGatewayMesh(dir, { 'gateway-service.yaml': gatewayService(targetPort) }, ['--mesh-config', meshConfig]);
  await mesh.gateway(['--egress', '--ip', GATEWAY_IP]);
  await mesh.sidecar(['--id', `sidecar~${CLIENT_IP}~sleep-abcde.default~default.svc.cluster.local`, '--label', 'app=sleep']);
});

after(async () => {
  await mesh?.stop();
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

test('REGISTRY_ONLY: before the pattern the sidecar gets 502 for the external host, which sees nothing', async () => {
  const r = await viaSidecar('external.example.com', '/before');
  assert.equal(r.status, 502);
  assert.deepEqual(seen, []);
});

test('the egress gateway pattern: the sidecar reaches the host only through the gateway, whose access log has every call', async () => {
  mesh.write('egress.yaml', PATTERN);
  await eventually('the pattern is in force', async () => (await viaSidecar('external.example.com', '/probe')).status === 200, 40_000, mesh, () => lastAnswer);
  const before = logLines().length;
  seen.length = 0;
  const bodies: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await viaSidecar('external.example.com', `/call-${i}`);
    assert.equal(r.status, 200);
    bodies.push(r.body);
  }
  assert.deepEqual(bodies, [0, 1, 2, 3, 4].map((i) => `external.example.com /call-${i}`));
  // Every call reached the host from the egress gateway's address, none from the sidecar's.
  assert.deepEqual(seen.map((s) => s.from), Array(5).fill(GATEWAY_IP));
  // The gateway's access log has each call (it is flushed shortly after each line).
  // the log is buffered: late /probe lines may land after `before` was taken, so the calls are waited for by path
  await eventually('the gateway logged the calls', async () => logLines().slice(before).filter((l) => String(l['path']).startsWith('/call-')).length >= 5);
  const calls = logLines().slice(before).filter((l) => String(l['path']).startsWith('/call-'));
  assert.deepEqual(calls.map((l) => [l['path'], l['authority'], l['upstream_cluster'], l['response_code']]),
    [0, 1, 2, 3, 4].map((i) => [`/call-${i}`, 'external.example.com', `outbound|${EXTERNAL_PORT}||external.example.com`, 200]));
  // A host the pattern does not cover is still refused by the sidecar, and sees nothing.
  seen.length = 0;
  assert.equal((await viaSidecar('other.example.com', '/x')).status, 502);
  assert.deepEqual(seen, []);
});

test('without the gateway\'s route the call goes nowhere else: the gateway answers 404 and the host sees nothing', async () => {
  // The mesh half of the VirtualService alone: the sidecar still sends to the gateway, which has no route.
  const meshOnly = PATTERN.replace(/ {2}- match:\n {4}- gateways:\n {6}- istio-egressgateway[\s\S]*$/, '');
  mesh.write('egress.yaml', meshOnly);
  await eventually('the gateway lost its route', async () => (await viaSidecar('external.example.com', '/probe')).status === 404, 40_000, mesh, () => lastAnswer);
  seen.length = 0;
  const r = await viaSidecar('external.example.com', '/no-route');
  assert.equal(r.status, 404);
  assert.deepEqual(seen, []);
  await eventually('the gateway logged the call', async () => logLines().some((l) => l['path'] === '/no-route'));
  const last = logLines().filter((l) => l['path'] === '/no-route');
  assert.deepEqual(last.map((l) => [l['response_code'], l['response_flags']]), [[404, 'NR']]);
});

