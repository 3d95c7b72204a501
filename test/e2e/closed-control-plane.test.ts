// The closed control plane: xDS and the CA only over TLS; a bootstrap token for the first
// certificate, then mTLS; a proxy gets only the config of its own identity's namespace.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { startPilot } from '../../src/pilot/index.ts';
import type { Pilot } from '../../src/pilot/index.ts';
import { startProxy } from '../../src/proxy/index.ts';
import type { Proxy } from '../../src/proxy/index.ts';
import { CaClient, controlPlaneCredentials } from '../../src/proxy/tls/ca-client.ts';
import { generateKeyAndCsr } from '../../src/proxy/tls/csr.ts';
import { loadSigningRoot, parseCsr, signWorkloadCertificate } from '../../src/pilot/ca/index.ts';
import { CLUSTER_TYPE, ENDPOINT_TYPE } from '../../src/envoy/index.ts';
import { AdsStream, nodeFor, resourceNames } from '../pilot/xds/ads-client.ts';

const silent = pino({ level: 'silent' });
const TOKEN_A = 'token-for-namespace-a-0123456789';
const TOKEN_B = 'token-for-namespace-b-0123456789';
const A_ID = 'spiffe://cluster.local/ns/a/sa/app-a';

const MESH = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shared, namespace: a}
spec:
  hosts: [shared.a.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.10}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: private, namespace: b}
spec:
  hosts: [private.b.svc.cluster.local]
  exportTo: ["."]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.11}]
`;

let dir: string;
let pilot: Pilot;
let rootPem: string;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sextant-closed-'));
  const configDir = path.join(dir, 'config');
  mkdirSync(configDir);
  writeFileSync(path.join(configDir, 'mesh.yaml'), MESH);
  const tokens = path.join(dir, 'tokens');
  writeFileSync(tokens, `${TOKEN_A} a\n${TOKEN_B} b\n`, { mode: 0o600 });
  pilot = await startPilot({
    configDir, xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', logger: silent, debounceAfterMs: 20,
    ca: { dir: path.join(dir, 'ca'), tokensFile: tokens },
    xdsTls: {},
  });
  await pilot.ready;
  rootPem = pilot.ca!.root.rootPem;
});

after(async () => {
  await pilot?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A workload certificate for `identity`, obtained over TLS with `token`. */
async function certificateFor(identity: string, namespace: string, sa: string, token: string): Promise<{ keyPem: string; chainPem: string }> {
  const client = new CaClient(pilot.xdsAddress, { rootPem });
  try {
    const { keyPem, csrPem } = await generateKeyAndCsr(identity);
    const issued = await client.request({ csrPem, ttlSeconds: 3600, metadata: { NAMESPACE: namespace, SERVICE_ACCOUNT: sa }, token });
    return { keyPem, chainPem: issued.chainPem };
  } finally {
    client.close();
  }
}

test('a sidecar of namespace a gets its certificate with its token, then its config over mTLS: a\'s services, never b\'s private ones', async () => {
  const proxy: Proxy = await startProxy({
    xds: pilot.xdsAddress, id: 'sidecar~127.0.0.20~app-a-1.a~a.svc.cluster.local', adminAddress: '127.0.0.1:0', logger: silent, drainMs: 50,
    ca: { serviceAccount: 'app-a', token: TOKEN_A, ttlSeconds: 3600 },
    xdsTls: { rootPem },
  });
  try {
    await proxy.whenReady();
    assert.equal(proxy.certificates?.current()?.identity, A_ID);
    const clusters = [...proxy.config.clusters.keys()];
    assert.ok(clusters.includes('outbound|80||shared.a.svc.cluster.local'), clusters.join(' '));
    assert.ok(!clusters.some((c) => c.includes('private.b')), clusters.join(' '));
  } finally {
    await proxy.drain(50);
  }
});

test('xDS without a client certificate is refused (UNAUTHENTICATED), and plaintext xDS does not connect', async () => {
  const noCert = new AdsStream(pilot.xdsAddress, 'sotw', controlPlaneCredentials({ rootPem }));
  try {
    noCert.send({ node: nodeFor('app-a-1', 'a'), typeUrl: CLUSTER_TYPE });
    const err = await noCert.failed();
    assert.equal(err.code, grpc.status.UNAUTHENTICATED);
    assert.match(err.details, /xDS needs a workload certificate from the mesh CA/);
  } finally {
    noCert.close();
  }
  const plain = new AdsStream(pilot.xdsAddress, 'sotw');
  try {
    plain.send({ node: nodeFor('app-a-1', 'a'), typeUrl: CLUSTER_TYPE });
    const err = await plain.failed();
    assert.equal(err.code, grpc.status.UNAVAILABLE);
  } finally {
    plain.close();
  }
});

test('a certificate of namespace a cannot obtain namespace b\'s config: the stream is refused (PERMISSION_DENIED)', async () => {
  const cert = await certificateFor(A_ID, 'a', 'app-a', TOKEN_A);
  const stream = new AdsStream(pilot.xdsAddress, 'sotw', controlPlaneCredentials({ rootPem, clientCertificate: () => cert }));
  try {
    stream.send({ node: nodeFor('impostor', 'b'), typeUrl: CLUSTER_TYPE });
    const err = await stream.failed();
    assert.equal(err.code, grpc.status.PERMISSION_DENIED);
    assert.equal(err.details, `${A_ID} may not obtain the config of namespace b (node sidecar~127.0.0.1~impostor.b~b.svc.cluster.local)`);
  } finally {
    stream.close();
  }
});

test('a certificate from another CA is refused even for the right namespace (UNAUTHENTICATED)', async () => {
  const foreignRoot = await loadSigningRoot({ dir: path.join(dir, 'foreign-ca'), trustDomain: 'cluster.local' });
  const { keyPem, csrPem } = await generateKeyAndCsr(A_ID);
  const { csr } = await parseCsr(csrPem);
  const chain = await signWorkloadCertificate(foreignRoot, csr, A_ID, 3600_000);
  const stream = new AdsStream(pilot.xdsAddress, 'sotw', controlPlaneCredentials({ rootPem, clientCertificate: () => ({ keyPem, chainPem: chain[0]! }) }));
  try {
    stream.send({ node: nodeFor('app-a-3', 'a'), typeUrl: CLUSTER_TYPE });
    const err = await stream.failed();
    assert.equal(err.code, grpc.status.UNAUTHENTICATED);
    // TLS may drop a certificate the server's CA list does not name; either way it is not a mesh certificate
    assert.match(err.details, /^(the client certificate is not issued by the mesh CA|xDS needs a workload certificate from the mesh CA .*)$/);
  } finally {
    stream.close();
  }
});

test('asking by name for b\'s private endpoints from namespace a returns nothing; a\'s own are served', async () => {
  const cert = await certificateFor(A_ID, 'a', 'app-a', TOKEN_A);
  const stream = new AdsStream(pilot.xdsAddress, 'sotw', controlPlaneCredentials({ rootPem, clientCertificate: () => cert }));
  try {
    stream.send({ node: nodeFor('app-a-2', 'a'), typeUrl: ENDPOINT_TYPE, resourceNames: ['outbound|80||private.b.svc.cluster.local', 'outbound|80||shared.a.svc.cluster.local'] });
    const res = await stream.next();
    assert.deepEqual(resourceNames(res), ['outbound|80||shared.a.svc.cluster.local']);
  } finally {
    stream.close();
  }
});

test('the CA: no token is refused, a token for a cannot obtain an identity in b, a mesh certificate renews only its own identity', async () => {
  const client = new CaClient(pilot.xdsAddress, { rootPem });
  try {
    const { csrPem } = await generateKeyAndCsr(A_ID);
    await assert.rejects(client.request({ csrPem, ttlSeconds: 60, metadata: { NAMESPACE: 'a', SERVICE_ACCOUNT: 'app-a' } }), /a bootstrap token is required/);
    const inB = await generateKeyAndCsr('spiffe://cluster.local/ns/b/sa/app-b');
    await assert.rejects(client.request({ csrPem: inB.csrPem, ttlSeconds: 60, metadata: { NAMESPACE: 'b', SERVICE_ACCOUNT: 'app-b' }, token: TOKEN_A }), /the token does not allow identities in namespace b/);
  } finally {
    client.close();
  }
  const cert = await certificateFor(A_ID, 'a', 'app-a', TOKEN_A);
  const renewing = new CaClient(pilot.xdsAddress, { rootPem, clientCertificate: () => cert });
  try {
    const again = await generateKeyAndCsr(A_ID);
    const issued = await renewing.request({ csrPem: again.csrPem, ttlSeconds: 60, metadata: { NAMESPACE: 'a', SERVICE_ACCOUNT: 'app-a' } });
    assert.match(issued.chainPem, /BEGIN CERTIFICATE/);
    const other = await generateKeyAndCsr('spiffe://cluster.local/ns/a/sa/admin');
    await assert.rejects(renewing.request({ csrPem: other.csrPem, ttlSeconds: 60, metadata: { NAMESPACE: 'a', SERVICE_ACCOUNT: 'admin' } }),
      /a caller holding spiffe:\/\/cluster.local\/ns\/a\/sa\/app-a may renew only that identity, not spiffe:\/\/cluster.local\/ns\/a\/sa\/admin/);
  } finally {
    renewing.close();
  }
});

test('a pilot refuses to serve TLS xDS without bootstrap tokens (any caller could name any identity)', async () => {
  const d = mkdtempSync(path.join(tmpdir(), 'sextant-closed-notokens-'));
  try {
    mkdirSync(path.join(d, 'config'));
    await assert.rejects(startPilot({ configDir: path.join(d, 'config'), xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', logger: silent, ca: { dir: path.join(d, 'ca') }, xdsTls: {} }),
      /xDS over TLS needs bootstrap tokens for the CA \(--ca-tokens FILE\)/);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
