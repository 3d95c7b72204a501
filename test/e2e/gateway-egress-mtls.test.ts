// Istio's egress gateway with mutual TLS between the sidecar and the gateway, as istio.io writes
// it: the Gateway's HTTPS server in ISTIO_MUTUAL, a DestinationRule subset originating
// ISTIO_MUTUAL to the gateway with the external host as SNI, the VirtualService bound to `mesh`
// (port 80 → the gateway's 443) and to the gateway (443 → the host). Real processes: a pilot
// (the mesh CA), an egress gateway and a sidecar, both with workload certificates. The host sees
// the gateway, and the gateway's access log names the sidecar's SPIFFE identity: the hop was mTLS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../helpers/ports.ts';
import { egressGatewayAccessLog, eventually, startGatewayMesh } from './gateway-helpers.ts';
import type { GatewayMesh } from './gateway-helpers.ts';

const GATEWAY_IP = '127.0.63.2';
const CLIENT_IP = '127.0.63.3';
const EXTERNAL_IP = '127.0.63.10';
const APP_PORT = 18090;

const dir = mkdtempSync(path.join(tmpdir(), 'sextant-gateway-egress-mtls-'));
const accessLog = path.join(dir, 'egress-access.log');
let mesh: GatewayMesh;
const seen: string[] = [];
let externalServer: http.Server;

function config(httpPort: number, httpsPort: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  hosts: [istio-egressgateway.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: https, protocol: HTTPS}]
  workloadSelector: {labels: {istio: egressgateway}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: istio-egressgateway-1, namespace: istio-system}
spec: {address: ${GATEWAY_IP}, serviceAccount: istio-egressgateway-service-account, labels: {istio: egressgateway}, ports: {http: ${httpPort}, https: ${httpsPort}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sleep, namespace: default}
spec:
  workloadSelector: {labels: {app: sleep}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
  egress:
  - port: {number: ${APP_PORT}, protocol: HTTP, name: http}
    bind: ${CLIENT_IP}
    captureMode: NONE
    hosts: ["*/*"]
---
${egressGatewayAccessLog(accessLog)}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [external.example.com]
  ports:
  - number: ${APP_PORT}
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
      number: 443
      name: https
      protocol: HTTPS
    hosts:
    - external.example.com
    tls:
      mode: ISTIO_MUTUAL
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway-for-external, namespace: default}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: external
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
      portLevelSettings:
      - port:
          number: 443
        tls:
          mode: ISTIO_MUTUAL
          sni: external.example.com
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
      port: ${APP_PORT}
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: external
        port:
          number: 443
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 443
    route:
    - destination:
        host: external.example.com
        port:
          number: ${APP_PORT}
      weight: 100
`;
}

function viaSidecar(p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: CLIENT_IP, port: APP_PORT, path: p, headers: { host: 'external.example.com' }, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

function logLines(): Record<string, unknown>[] {
  let text = '';
  try { text = readFileSync(accessLog, 'utf8'); } catch { /* not written yet */ }
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

before(async () => {
  externalServer = http.createServer((req, res) => {
    seen.push(req.socket.remoteAddress ?? '');
    res.end(`external ${req.url}`);
  });
  await new Promise<void>((r) => externalServer.listen(APP_PORT, EXTERNAL_IP, r));
  mesh = await startGatewayMesh(dir, { 'mesh.yaml': config(await freePort('0.0.0.0'), await freePort('0.0.0.0')) });
  await mesh.gateway(['--egress', '--ip', GATEWAY_IP, '--service-account', 'istio-egressgateway-service-account']);
  await mesh.sidecar(['--id', `sidecar~${CLIENT_IP}~sleep-abcde.default~default.svc.cluster.local`, '--label', 'app=sleep', '--service-account', 'sleep']);
});

after(async () => {
  await mesh?.stop();
  externalServer?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('sidecar → egress gateway over ISTIO_MUTUAL (SNI from the DestinationRule) → the external host', async () => {
  await eventually('the call goes through', async () => (await viaSidecar('/probe')).status === 200);
  seen.length = 0;
  const r = await viaSidecar('/mtls');
  assert.deepEqual([r.status, r.body], [200, 'external /mtls']);
  assert.deepEqual(seen, [GATEWAY_IP]);
  await eventually('the gateway logged the call', async () => logLines().some((l) => l['path'] === '/mtls'));
  const line = logLines().find((l) => l['path'] === '/mtls')!;
  assert.deepEqual([line['authority'], line['upstream_cluster'], line['downstream_peer_uri_san'], line['response_code']],
    ['external.example.com', `outbound|${APP_PORT}||external.example.com`, 'spiffe://cluster.local/ns/default/sa/sleep', 200]);
});
