// AuthorizationPolicy end to end: `sextant pilot` reads the policies from its config
// directory and serves RBAC filters; the reviews sidecar enforces them on requests that
// arrive from callers on their own loopback addresses (the caller's real address) or through
// the productpage sidecar. Each case waits until the sidecar runs the case's listener, then
// asserts the exact status and body of every request.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startProxy } from '../../src/proxy/index.ts';
import type { Proxy } from '../../src/proxy/index.ts';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { silent, startBackend } from '../proxy/helpers/fixtures.ts';
import { spawnPilot } from '../helpers/pilot-process.ts';
import type { Backend } from '../proxy/helpers/fixtures.ts';
import { egressSidecar, ingressSidecar } from '../helpers/istio-yaml.ts';

const SERVER = '127.0.57.3';
const CLIENT = '127.0.58.1';
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

let dir: string;
let app: Backend;
let server: Proxy;
let client: Proxy;

const meshYaml = (appPort: number): string => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: shop}
spec: {address: ${SERVER}, labels: {app: reviews}, ports: {http: 9080}, serviceAccount: reviews}
---
${ingressSidecar({ name: 'reviews', namespace: 'shop', bind: SERVER, defaultEndpoint: `127.0.0.1:${appPort}` })}
---
${egressSidecar({ name: 'productpage', namespace: 'shop', bind: CLIENT })}
`;

interface Reply { status: number; body: string }

/** A request to `host:9080` sent from the loopback address `from`, with exactly these headers. */
function call(host: string, from: string, target: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host, port: 9080, localAddress: from, path: target, method: opts.method ?? 'GET', agent: false,
      headers: { Host: 'reviews.shop.svc.cluster.local:9080', ...opts.headers }, setHost: false,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function writePolicies(yaml: string): void {
  const tmp = path.join(path.dirname(dir), `.authz-${process.pid}.tmp`);
  writeFileSync(tmp, yaml);
  renameSync(tmp, path.join(dir, 'authz.yaml'));
}

/** Waits until the reviews sidecar's inbound listener carries exactly these RBAC policies (by name). */
async function untilServing(policyNames: readonly string[], rbacFilters: number, jwt = false): Promise<void> {
  const deadline = Date.now() + 20_000;
  let last = '';
  while (Date.now() < deadline) {
    last = server.config.listeners.get(`${SERVER}_9080`)?.sourceKey ?? '';
    const filters = last.split('"envoy.filters.http.rbac"').length - 1;
    const names = [...last.matchAll(/ns\[[^\]]*\]-policy\[[^\]]*\]-rule\[\d+\]/g)].map((m) => m[0]);
    if (filters === rbacFilters && last.includes('envoy.filters.http.jwt_authn') === jwt && new Set(names).size === policyNames.length && policyNames.every((n) => names.includes(n))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the reviews sidecar never served policies ${policyNames.join(', ')}: ${last}`);
}

const ALLOWED = (body: string): boolean => JSON.parse(body).name === 'reviews';
const DENIED: Reply = { status: 403, body: 'RBAC: access denied' };

before(async () => {
  app = await startBackend('reviews');
  cleanups.push(app.close);
  dir = mkdtempSync(path.join(tmpdir(), 'sextant-authz-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'mesh.yaml'), meshYaml(app.port));
  const pilot = await spawnPilot({ configDir: dir });
  cleanups.push(pilot.close);
  const { xds } = pilot;
  server = await startProxy({ xds, id: `sidecar~${SERVER}~reviews-v1-aaaaa.shop~shop.svc.cluster.local`, labels: { app: 'reviews' }, adminAddress: '127.0.0.1:0', logger: silent, drainMs: 200 });
  client = await startProxy({ xds, id: `sidecar~${CLIENT}~productpage-v1-bbbbb.shop~shop.svc.cluster.local`, labels: { app: 'productpage' }, adminAddress: '127.0.0.1:0', logger: silent, drainMs: 200 });
  cleanups.push(() => server.drain(100), () => client.drain(100));
  await Promise.all([server.whenReady(), client.whenReady()]);
});

test('no policy: every request is allowed, directly and through the caller\'s sidecar', async () => {
  await untilServing([], 0);
  const direct = await call(SERVER, '127.0.58.9', '/reviews/1', { method: 'DELETE' });
  assert.equal(direct.status, 200);
  assert.ok(ALLOWED(direct.body));
  const viaSidecar = await call(CLIENT, CLIENT, '/reviews/1');
  assert.equal(viaSidecar.status, 200);
  assert.ok(ALLOWED(viaSidecar.body));
});

// A caller with the principal is allowed only over mutual TLS: authz-mtls.test.ts covers
// that side with workload certificates from the pilot's CA.
test('allow by principal: a plaintext caller has no principal, so it is denied', async () => {
  writePolicies(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-only, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/productpage"]}}]}]
`);
  await untilServing(['ns[shop]-policy[productpage-only]-rule[0]'], 1);
  assert.deepEqual(await call(SERVER, '127.0.58.9', '/reviews/1'), DENIED);
  assert.deepEqual(await call(SERVER, '127.0.58.9', '/reviews/1', { headers: { 'x-forwarded-client-cert': 'URI=spiffe://cluster.local/ns/shop/sa/productpage' } }), DENIED);
});

test('deny by remoteIpBlocks: the caller\'s real address decides, and x-forwarded-for when the request carries one', async () => {
  writePolicies(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: block-list, namespace: shop}
spec:
  action: DENY
  rules: [{from: [{source: {remoteIpBlocks: ["127.0.58.9", "127.0.59.0/24"]}}]}]
`);
  await untilServing(['ns[shop]-policy[block-list]-rule[0]'], 1);
  assert.deepEqual(await call(SERVER, '127.0.58.9', '/reviews/1'), DENIED);
  assert.deepEqual(await call(SERVER, '127.0.59.20', '/reviews/1'), DENIED);
  const other = await call(SERVER, '127.0.58.8', '/reviews/1');
  assert.equal(other.status, 200);
  // With no trusted hops configured the client is XFF's last entry (Envoy's rule for sidecars).
  assert.deepEqual(await call(SERVER, '127.0.58.8', '/reviews/1', { headers: { 'x-forwarded-for': '127.0.59.1' } }), DENIED);
});

test('path and method rules: the normalized path and the method must both match', async () => {
  writePolicies(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: read-reviews, namespace: shop}
spec:
  rules: [{to: [{operation: {methods: ["GET", "HEAD"], paths: ["/reviews/*", "/health"]}}]}]
`);
  await untilServing(['ns[shop]-policy[read-reviews]-rule[0]'], 1);
  const get = await call(SERVER, '127.0.58.9', '/reviews/1?full=1');
  assert.equal(get.status, 200);
  assert.ok(ALLOWED(get.body));
  assert.equal((await call(SERVER, '127.0.58.9', '/health')).status, 200);
  assert.deepEqual(await call(SERVER, '127.0.58.9', '/reviews/1', { method: 'POST' }), DENIED);
  assert.deepEqual(await call(SERVER, '127.0.58.9', '/ratings/1'), DENIED);
  assert.deepEqual(await call(SERVER, '127.0.58.9', '/reviews/../ratings/1'), DENIED);
  assert.deepEqual(await call(SERVER, '127.0.58.9', '/healthz'), DENIED);
});

test('DENY before ALLOW: a request both match is denied', async () => {
  writePolicies(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: shop}
spec: {rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
`);
  await untilServing(['ns[shop]-policy[allow-all]-rule[0]', 'ns[shop]-policy[no-admin]-rule[0]'], 2);
  assert.deepEqual(await call(SERVER, '127.0.58.9', '/admin/users'), DENIED);
  assert.deepEqual(await call(CLIENT, CLIENT, '/admin'), DENIED);
  assert.equal((await call(SERVER, '127.0.58.9', '/reviews/1')).status, 200);
  assert.equal((await call(CLIENT, CLIENT, '/reviews/1')).status, 200);
});

test('an ALLOW policy with no rules denies everything; removing it allows again', async () => {
  writePolicies(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: shop}
spec: {}
`);
  await untilServing(['ns[shop]-policy[deny-all]-rule[0]'], 1);
  assert.deepEqual(await call(SERVER, '127.0.58.9', '/reviews/1'), DENIED);
  assert.deepEqual(await call(CLIENT, CLIENT, '/reviews/1'), DENIED);
  rmSync(path.join(dir, 'authz.yaml'));
  await untilServing([], 0);
  assert.equal((await call(SERVER, '127.0.58.9', '/reviews/1')).status, 200);
});

test('RequestAuthentication with an AuthorizationPolicy on request principals: the JWT decides', async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] });
  const token = (sub: string): Promise<string> => new SignJWT({ sub }).setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer('https://issuer.example').setAudience('reviews').setExpirationTime('5m').sign(privateKey);
  writePolicies(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules: [{issuer: "https://issuer.example", audiences: [reviews], jwks: '${jwks}'}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: alice-only, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]}]
`);
  await untilServing(['ns[shop]-policy[alice-only]-rule[0]'], 1, true);
  const alice = await call(SERVER, '127.0.58.9', '/reviews/1', { headers: { authorization: `Bearer ${await token('alice')}` } });
  assert.equal(alice.status, 200);
  // The token is verified and not forwarded to the app (forwardOriginalToken is false).
  assert.equal(JSON.parse(alice.body).headers.map((h: string) => h.toLowerCase()).includes('authorization'), false);
  assert.deepEqual(await call(SERVER, '127.0.58.9', '/reviews/1', { headers: { authorization: `Bearer ${await token('bob')}` } }), DENIED);
  assert.deepEqual(await call(SERVER, '127.0.58.9', '/reviews/1'), DENIED);
  assert.deepEqual(await call(SERVER, '127.0.58.9', '/reviews/1', { headers: { authorization: 'Bearer e30.e30.forged' } }), { status: 401, body: 'Jwt verification fails' });
  const viaSidecar = await call(CLIENT, CLIENT, '/reviews/1', { headers: { authorization: `Bearer ${await token('alice')}` } });
  assert.equal(viaSidecar.status, 200);
  rmSync(path.join(dir, 'authz.yaml'));
  await untilServing([], 0);
});
