// The control plane's own certificate and the caller identity it reads from client certificates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { pino } from 'pino';
import { loadSigningRoot, parseCsr, PeerIdentityError, signWorkloadCertificate, startServingCertificate, verifiedPeerIdentity } from '../../../src/pilot/ca/index.ts';
import { generateKeyAndCsr } from '../../../src/proxy/tls/csr.ts';

const ID = 'spiffe://cluster.local/ns/a/sa/app';

function peer(pem: string): PeerCertificate {
  return { raw: new X509Certificate(pem).raw } as PeerCertificate;
}

async function leafFrom(root: Awaited<ReturnType<typeof loadSigningRoot>>, identity: string, ttlMs = 3600_000, now = Date.now()): Promise<string> {
  const { csrPem } = await generateKeyAndCsr(identity);
  const { csr } = await parseCsr(csrPem);
  return (await signWorkloadCertificate(root, csr, identity, ttlMs, now))[0]!;
}

test('a client certificate is believed only when the mesh CA issued it, it is valid now, and it names one identity of the trust domain', async () => {
  const d = mkdtempSync(path.join(tmpdir(), 'sextant-serving-'));
  try {
    const mesh = await loadSigningRoot({ dir: path.join(d, 'mesh'), trustDomain: 'cluster.local' });
    const other = await loadSigningRoot({ dir: path.join(d, 'other'), trustDomain: 'cluster.local' });
    assert.deepEqual(verifiedPeerIdentity(peer(await leafFrom(mesh, ID)), mesh, 'cluster.local'), { trustDomain: 'cluster.local', namespace: 'a', serviceAccount: 'app' });
    assert.equal(verifiedPeerIdentity(undefined, mesh, 'cluster.local'), undefined);
    const foreign = await leafFrom(other, ID);
    assert.throws(() => verifiedPeerIdentity(peer(foreign), mesh, 'cluster.local'), (e: Error) => e instanceof PeerIdentityError && e.message === 'the client certificate is not issued by the mesh CA');
    const expired = await leafFrom(mesh, ID, 60_000, Date.now() - 3600_000);
    assert.throws(() => verifiedPeerIdentity(peer(expired), mesh, 'cluster.local'), /the client certificate is not valid now/);
    const evil = await leafFrom(mesh, 'spiffe://evil.example/ns/a/sa/app');
    assert.throws(() => verifiedPeerIdentity(peer(evil), mesh, 'cluster.local'), /outside the trust domain cluster.local/);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('the pilot\'s serving certificate names its SPIFFE identity, istiod\'s service name and the listen host, for server auth only', async () => {
  const d = mkdtempSync(path.join(tmpdir(), 'sextant-serving-'));
  try {
    const root = await loadSigningRoot({ dir: d, trustDomain: 'cluster.local' });
    const serving = await startServingCertificate({ root, trustDomain: 'cluster.local', hosts: ['10.1.2.3', 'pilot.example.com', '0.0.0.0'], logger: pino({ level: 'silent' }), ttlMs: 3600_000 });
    try {
      const leaf = new X509Certificate(serving.current().certPem);
      const sans = leaf.subjectAltName ?? '';
      for (const n of ['URI:spiffe://cluster.local/ns/istio-system/sa/istiod', 'DNS:istiod.istio-system.svc', 'DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:10.1.2.3', 'DNS:pilot.example.com']) assert.ok(sans.includes(n), `${n} in ${sans}`);
      assert.ok(!sans.includes('0.0.0.0'), 'a wildcard listen address is not a name');
      assert.ok(leaf.verify(new X509Certificate(root.rootPem).publicKey));
      assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);
      const life = Date.parse(leaf.validTo) - Date.now();
      assert.ok(life > 3500_000 && life <= 3600_000, `lifetime ${life}`);
    } finally {
      serving.close();
    }
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
