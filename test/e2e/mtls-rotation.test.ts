// Certificate rotation under load: both sidecars hold 20-second certificates and rotate at
// half their remaining life while ~200 requests a second cross them over mTLS; connections
// are renewed every 25 requests, so new handshakes use the new certificates while requests
// in flight on older connections finish. No request may fail.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startMtlsMesh } from './mtls-helpers.ts';

// addresses of its own: mtls.test.ts may run alongside
const CLIENT_EGRESS = '127.0.44.1';
const SERVER_ADDRESS = '127.0.43.3';
import type { MtlsMesh } from './mtls-helpers.ts';

let mesh: MtlsMesh | undefined;
after(async () => { await mesh?.close(); });

const POLICY = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 25}}}
`;

test('three rotations of both sidecars\' certificates under 200 requests/s: zero failed requests', { timeout: 120_000 }, async () => {
  mesh = await startMtlsMesh(POLICY, { ttlSeconds: 20, serverAddress: SERVER_ADDRESS, clientEgress: CLIENT_EGRESS });
  const m = mesh;
  const serials = { client: new Set([m.client.certificates!.current()!.serial]), server: new Set([m.server.certificates!.current()!.serial]) };
  m.client.certificates!.onRotate((s) => serials.client.add(s.serial));
  m.server.certificates!.onRotate((s) => serials.server.add(s.serial));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  let ok = 0;
  const failures: string[] = [];
  const one = (): Promise<void> => new Promise((resolve) => {
    const req = http.request({ host: CLIENT_EGRESS, port: 9080, path: '/load', agent, headers: { Host: 'reviews.default.svc.cluster.local:9080' } }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode === 200) ok++;
        else failures.push(`status ${res.statusCode} ${String(res.headers['x-envoy-response-flags'] ?? '')}`);
        resolve();
      });
    });
    req.on('error', (e) => { failures.push(e.message); resolve(); });
    req.end();
  });
  // 200 requests a second in 10 ms ticks, until each sidecar has rotated three times (at most 45 s)
  const started = Date.now();
  const inflight = new Set<Promise<void>>();
  while ((serials.client.size < 4 || serials.server.size < 4) && Date.now() - started < 45_000) {
    for (let i = 0; i < 2; i++) {
      const p = one();
      inflight.add(p);
      void p.then(() => inflight.delete(p));
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  await Promise.all(inflight);
  agent.destroy();
  const seconds = (Date.now() - started) / 1000;
  const rate = (ok + failures.length) / seconds;
  assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${ok + failures.length} requests failed`);
  assert.ok(serials.client.size >= 4 && serials.server.size >= 4, `rotations: client ${serials.client.size - 1}, server ${serials.server.size - 1} in ${seconds.toFixed(1)} s`);
  // 200/s are offered; a loaded 2-core machine (the load, both sidecars and the pilot share this process) serves fewer
  assert.ok(rate >= 120, `offered about 200 requests/s, served ${rate.toFixed(0)}/s`);
  // new connections took the new certificates: more full handshakes than rotations
  assert.ok((m.client.upstreamTls?.handshakes ?? 0) > 100, `handshakes: ${m.client.upstreamTls?.handshakes}`);
});
