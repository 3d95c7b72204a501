// AuthorizationPolicy at the ingress gateway (a real pilot and `sextant gateway`), as Istio
// applies policies whose selector matches the gateway's pods: an IP deny-list of callers
// (remoteIpBlocks, the caller's real address), a path allow-list, and a DENY before ALLOW;
// each refusal a 403 `RBAC: access denied`, a policy change reaching a kept connection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eventually, startGatewayMesh } from './gateway-helpers.ts';
import type { GatewayMesh } from './gateway-helpers.ts';

const GW = '127.0.63.1';
const dir = mkdtempSync(path.join(tmpdir(), 'sextant-gateway-authz-'));
let mesh: GatewayMesh;
let backend: http.Server;

function registry(port: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8000, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${port}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    bind: ${GW}
    hosts: [shop.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/edge]
  http: [{route: [{destination: {host: web.default.svc.cluster.local, port: {number: 8000}}}]}]
`;
}

const POLICY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: edge-deny-ips, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{from: [{source: {remoteIpBlocks: ["127.0.64.9/32"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: edge-public-only, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: ALLOW
  rules: [{to: [{operation: {paths: ["/public/*"], methods: ["GET"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: sidecars-only, namespace: istio-system}
spec:
  selector: {matchLabels: {app: not-the-gateway}}
  action: DENY
  rules: [{}]
`;

function get(pathName: string, from: string, agent?: http.Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: GW, port: 8080, path: pathName, localAddress: from, headers: { host: 'shop.example.com' }, ...(agent !== undefined ? { agent } : { agent: false }) }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

before(async () => {
  backend = http.createServer((req, res) => res.end(`web ${req.url}`));
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  mesh = await startGatewayMesh(dir, { 'registry.yaml': registry((backend.address() as net.AddressInfo).port) });
  await mesh.gateway(['--ip', GW]);
});

after(async () => {
  await mesh?.stop();
  backend?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('policies selecting the gateway guard its listeners: a denied caller IP, a path outside the allow-list, DENY before ALLOW; a kept connection sees the change', async () => {
  const kept = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    assert.deepEqual(await get('/private/orders', '127.0.64.1', kept), { status: 200, body: 'web /private/orders' });
    mesh.write('policy.yaml', POLICY);
    await eventually('the policy reaches the gateway', async () => (await get('/private/orders', '127.0.64.1', kept)).status === 403);
    assert.deepEqual(await get('/private/orders', '127.0.64.1', kept), { status: 403, body: 'RBAC: access denied' });
    assert.deepEqual(await get('/public/catalog', '127.0.64.1'), { status: 200, body: 'web /public/catalog' });
    // the denied caller is refused even on the allowed path (DENY is evaluated first)
    assert.deepEqual(await get('/public/catalog', '127.0.64.9'), { status: 403, body: 'RBAC: access denied' });
  } finally {
    kept.destroy();
  }
});
