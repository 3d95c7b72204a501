// AuthorizationPolicy on identities over mutual TLS: the caller's SPIFFE identity from its
// workload certificate (the pilot as CA, PeerAuthentication STRICT) is what `principals` and
// `namespaces` match, over HTTP and TCP; a denial is 403 "RBAC: access denied" with Envoy's
// flag and details in the server's access log.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { send } from '../proxy/helpers/fixtures.ts';
import { accessLogLines, startMtlsMesh } from './mtls-helpers.ts';
import type { MtlsMesh } from './mtls-helpers.ts';

const SERVER = '127.0.61.3';
const CLIENT = '127.0.62.1';
const STRICT = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
`;
const HOST = { Host: 'reviews.default.svc.cluster.local:9080' };

let mesh: MtlsMesh;
before(async () => { mesh = await startMtlsMesh(STRICT, { serverAddress: SERVER, clientEgress: CLIENT }); });
after(async () => { await mesh?.close(); });

/** Applies STRICT plus `policy` and waits until the server sidecar's HTTP and TCP listeners carry its rule names. */
async function withPolicy(name: string, spec: string, also = ''): Promise<void> {
  await mesh.setPolicy(`${STRICT}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ${name}, namespace: default}
spec: ${spec}
${also}`, () => [9080, 9091].every((port) => (mesh.server.config.listeners.get(`${SERVER}_${port}`)?.sourceKey ?? '').includes(`policy[${name}]`)));
}

function tcpExchange(text: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(9091, CLIENT, () => s.write(text));
    let got = '';
    const timer = setTimeout(() => s.destroy(), 2000);
    s.on('data', (c) => { got += c.toString(); if (got.length >= text.length + 5) s.destroy(); });
    s.on('error', () => undefined);
    s.on('close', () => { clearTimeout(timer); resolve(got); });
  });
}

test('allow by principal: the caller\'s certificate identity is allowed, over HTTP and TCP', async () => {
  await withPolicy('productpage-only', '{rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/productpage"]}}]}]}');
  const r = await send(9080, '/reviews/1', HOST, { host: CLIENT });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).url, '/reviews/1');
  assert.equal(await tcpExchange('ping'), 'echo:ping');
});

test('a principal that is not the caller\'s: 403 "RBAC: access denied", flag RBAC and details in the access log; TCP closed', async () => {
  await withPolicy('ratings-only', '{rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/ratings"]}}]}]}');
  const r = await send(9080, '/denied', HOST, { host: CLIENT });
  assert.deepEqual([r.status, r.body], [403, 'RBAC: access denied']);
  assert.equal(await tcpExchange('ping'), '');
  await new Promise((res) => setTimeout(res, 300));
  const line = accessLogLines(mesh).find((l) => l['path'] === '/denied');
  assert.ok(line, 'the denial is in the server sidecar\'s access log');
  assert.deepEqual([line['response_code'], line['response_flags'], line['response_code_details'], line['downstream_peer_uri_san']],
    [403, 'RBAC', 'rbac_access_denied_matched_policy[none]', 'spiffe://cluster.local/ns/default/sa/productpage']);
});

test('namespaces match the caller\'s identity; a DENY on the caller\'s service account wins over an ALLOW', async () => {
  await withPolicy('same-namespace', '{rules: [{from: [{source: {namespaces: ["default"]}}]}]}');
  assert.equal((await send(9080, '/reviews/1', HOST, { host: CLIENT })).status, 200);
  await withPolicy('other-namespace', '{rules: [{from: [{source: {namespaces: ["other"]}}]}]}');
  assert.deepEqual(await send(9080, '/reviews/1', HOST, { host: CLIENT }).then((r) => [r.status, r.body]), [403, 'RBAC: access denied']);
  await withPolicy('deny-productpage', '{action: DENY, rules: [{from: [{source: {serviceAccounts: ["productpage"]}}]}]}', `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: default}
spec: {rules: [{}]}
`);
  const filters = (mesh.server.config.listeners.get(`${SERVER}_9080`)?.sourceKey ?? '').split('"envoy.filters.http.rbac"').length - 1;
  assert.equal(filters, 2, 'a DENY and an ALLOW filter');
  assert.deepEqual(await send(9080, '/reviews/1', HOST, { host: CLIENT }).then((r) => [r.status, r.body]), [403, 'RBAC: access denied']);
});
