// A two-sidecar mesh with the pilot as CA: productpage (client, egress on 127.0.42.1:9080)
// calls reviews (server, inbound on 127.0.41.3:9080 in front of a local backend), both with
// workload certificates; PeerAuthentication and DestinationRule given per test.
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { pino } from 'pino';
import { startPilot } from '../../src/pilot/index.ts';
import type { Pilot } from '../../src/pilot/index.ts';
import { startProxy } from '../../src/proxy/index.ts';
import type { Proxy } from '../../src/proxy/index.ts';
import { startBackend } from '../proxy/helpers/fixtures.ts';
import type { Backend } from '../proxy/helpers/fixtures.ts';

/** Default addresses; a test file running alongside another passes its own (they bind fixed ports). */
export const SERVER_ADDRESS = '127.0.41.3';
export const CLIENT_EGRESS = '127.0.42.1';
const silent = pino({ level: 'silent' });

export interface MtlsMesh {
  dir: string;
  pilot: Pilot;
  backend: Backend;
  client: Proxy;
  server: Proxy;
  /** The server sidecar's inbound access log (one JSON object per line). */
  accessLog: string;
  /** Rewrites the per-test policy file (PeerAuthentication, DestinationRule …) and waits until `until` holds. */
  setPolicy(yaml: string, until: () => boolean): Promise<void>;
  close(): Promise<void>;
}

export function meshYaml(backendPort: number, accessLog: string, tcpPort: number, serverAddress = SERVER_ADDRESS, clientEgress = CLIENT_EGRESS, h2Port = 0): string {
  return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9091, name: tcp, protocol: TCP}, {number: 9092, name: http2, protocol: HTTP2}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: ${serverAddress}, serviceAccount: reviews, labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}, ports: {http: 9080, tcp: 9091, http2: 9092}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage, namespace: default}
spec:
  workloadSelector: {labels: {app: productpage}}
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: ${clientEgress}
    captureMode: NONE
    hosts: ["./*"]
  - port: {number: 9091, protocol: TCP, name: tcp}
    bind: ${clientEgress}
    captureMode: NONE
    hosts: ["./*"]
  - port: {number: 9092, protocol: HTTP, name: http-9092}
    bind: ${clientEgress}
    captureMode: NONE
    hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: ${serverAddress}
    defaultEndpoint: 127.0.0.1:${backendPort}
    captureMode: NONE
  - port: {number: 9091, protocol: TCP, name: tcp}
    bind: ${serverAddress}
    defaultEndpoint: 127.0.0.1:${tcpPort}
    captureMode: NONE
  - port: {number: 9092, protocol: HTTP2, name: http2}
    bind: ${serverAddress}
    defaultEndpoint: 127.0.0.1:${h2Port}
    captureMode: NONE
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: reviews-access-log, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  configPatches:
  - applyTo: NETWORK_FILTER
    match:
      context: SIDECAR_INBOUND
      listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}
    patch:
      operation: MERGE
      value:
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ${accessLog}
`;
}

export async function startMtlsMesh(policy: string, opts: { ttlSeconds?: number; serverAddress?: string; clientEgress?: string } = {}): Promise<MtlsMesh> {
  const serverAddress = opts.serverAddress ?? SERVER_ADDRESS;
  const clientEgress = opts.clientEgress ?? CLIENT_EGRESS;
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-mtls-'));
  const configDir = path.join(dir, 'config');
  mkdirSync(configDir);
  const accessLog = path.join(dir, 'reviews-access.log');
  const backend = await startBackend('reviews');
  // a TCP app: answers each chunk with `echo:` and the chunk
  const tcpApp = net.createServer((s) => s.on('data', (c) => s.write(`echo:${c.toString()}`)));
  await new Promise<void>((r) => tcpApp.listen(0, '127.0.0.1', r));
  const tcpPort = (tcpApp.address() as net.AddressInfo).port;
  // an HTTP/2 (h2c) app: answers `h2 <path>`
  const h2App = http2.createServer((req, res) => res.end(`h2 ${req.url}`));
  await new Promise<void>((r) => h2App.listen(0, '127.0.0.1', r));
  const h2Port = (h2App.address() as net.AddressInfo).port;
  writeFileSync(path.join(configDir, 'mesh.yaml'), meshYaml(backend.port, accessLog, tcpPort, serverAddress, clientEgress, h2Port));
  writeFileSync(path.join(configDir, 'policy.yaml'), policy);
  const pilot = await startPilot({
    configDir, xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', logger: silent, debounceAfterMs: 20,
    ca: { dir: path.join(dir, 'ca') },
  });
  await pilot.ready;
  const ca = (sa: string) => ({ serviceAccount: sa, ttlSeconds: opts.ttlSeconds ?? 3600 });
  const client = await startProxy({
    xds: pilot.xdsAddress, id: `sidecar~${clientEgress}~productpage-v1-aaaaa.default~default.svc.cluster.local`,
    labels: { app: 'productpage', version: 'v1' }, adminAddress: '127.0.0.1:0', logger: silent, drainMs: 200, ca: ca('productpage'),
  });
  const server = await startProxy({
    xds: pilot.xdsAddress, id: `sidecar~${serverAddress}~reviews-v1-bbbbb.default~default.svc.cluster.local`,
    labels: { app: 'reviews', version: 'v1' }, adminAddress: '127.0.0.1:0', logger: silent, drainMs: 200, ca: ca('reviews'),
  });
  await Promise.all([client.whenReady(), server.whenReady()]);
  return {
    dir, pilot, backend, client, server, accessLog,
    async setPolicy(yaml, until) {
      writeFileSync(path.join(configDir, 'policy.yaml'), yaml);
      // the file store's watch, the debounce and the push, until the sidecars show the change
      const start = Date.now();
      while (!until() && Date.now() - start < 10_000) await new Promise((r) => setTimeout(r, 50));
      if (!until()) throw new Error('the policy change did not reach the sidecars in 10 s');
    },
    async close() {
      await Promise.all([client.drain(100), server.drain(100)]);
      await pilot.close();
      await backend.close();
      tcpApp.close();
      h2App.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The server sidecar's access log lines so far. */
export function accessLogLines(mesh: MtlsMesh): Record<string, unknown>[] {
  let text = '';
  try {
    text = readFileSync(mesh.accessLog, 'utf8');
  } catch { /* not written yet */ }
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}
