// The mesh CA: a root generated once and kept, CreateCertificate over gRPC on the pilot's
// port, identities checked against the caller's metadata and bootstrap token.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { loadSigningRoot, CaConfigError, generateRoot } from '../../../src/pilot/ca/index.ts';
import { startPilot } from '../../../src/pilot/index.ts';
import { CaClient } from '../../../src/proxy/tls/ca-client.ts';
import { generateKeyAndCsr } from '../../../src/proxy/tls/csr.ts';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'sextant-ca-'));
  dirs.push(d);
  return d;
}

const ID = 'spiffe://cluster.local/ns/default/sa/reviews';
const META = { NAMESPACE: 'default', SERVICE_ACCOUNT: 'reviews' };

test('the root is generated on first start, kept in the directory and reused', async () => {
  const dir = path.join(tempDir(), 'ca');
  const first = await loadSigningRoot({ dir, trustDomain: 'cluster.local' });
  assert.equal(first.source, 'generated');
  assert.equal(statSync(path.join(dir, 'root-key.pem')).mode & 0o777, 0o600);
  const again = await loadSigningRoot({ dir, trustDomain: 'cluster.local' });
  assert.equal(again.source, 'directory');
  assert.equal(again.rootPem, first.rootPem);
  const root = new X509Certificate(first.rootPem);
  assert.equal(root.ca, true);
  assert.equal(root.subject, 'O=cluster.local');
});

test('a platform CA is plugged from files; a key of another certificate is refused', async () => {
  const d = tempDir();
  const a = await generateRoot('cluster.local', 3600_000);
  const b = await generateRoot('cluster.local', 3600_000);
  writeFileSync(path.join(d, 'ca-cert.pem'), a.certPem);
  writeFileSync(path.join(d, 'ca-key.pem'), a.keyPem);
  writeFileSync(path.join(d, 'other-key.pem'), b.keyPem);
  const plugged = await loadSigningRoot({ dir: path.join(d, 'unused'), trustDomain: 'cluster.local', certFile: path.join(d, 'ca-cert.pem'), keyFile: path.join(d, 'ca-key.pem') });
  assert.equal(plugged.source, 'plugged');
  await assert.rejects(
    loadSigningRoot({ dir: d, trustDomain: 'cluster.local', certFile: path.join(d, 'ca-cert.pem'), keyFile: path.join(d, 'other-key.pem') }),
    (e: Error) => e instanceof CaConfigError && /the key does not belong to the certificate/.test(e.message),
  );
});

async function pilotWithCa(extra: { tokensFile?: string } = {}): Promise<{ address: string; httpAddress: string; rootPem: string; close: () => Promise<void> }> {
  const d = tempDir();
  const configDir = path.join(d, 'config');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(configDir);
  const pilot = await startPilot({
    configDir,
    xdsAddress: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    logger: pino({ level: 'silent' }),
    ca: { dir: path.join(d, 'ca'), ...extra },
  });
  await pilot.ready;
  return { address: pilot.xdsAddress, httpAddress: pilot.httpAddress, rootPem: readFileSync(path.join(d, 'ca', 'root-cert.pem'), 'utf8'), close: () => pilot.close() };
}

test('CreateCertificate on the xDS port signs the caller\'s own SPIFFE identity', async () => {
  const pilot = await pilotWithCa();
  const client = new CaClient(pilot.address);
  try {
    const { csrPem } = await generateKeyAndCsr(ID);
    const issued = await client.request({ csrPem, ttlSeconds: 3600, metadata: META });
    const leaf = new X509Certificate(issued.chainPem);
    assert.equal(leaf.subjectAltName, `URI:${ID}`);
    assert.ok(!leaf.subject, 'no subject: the SAN is the identity');
    assert.equal(leaf.ca, false);
    assert.ok(leaf.verify(new X509Certificate(pilot.rootPem).publicKey));
    assert.equal(issued.rootPem.trim(), pilot.rootPem.trim());
    const lifetime = Date.parse(leaf.validTo) - Date.now();
    assert.ok(lifetime > 3590_000 && lifetime <= 3600_000, `lifetime ${lifetime}`);
    const metrics = await (await fetch(`http://${pilot.httpAddress}/metrics`)).text();
    assert.match(metrics, /^citadel_server_csr_count 1$/m);
    assert.match(metrics, /^citadel_server_success_cert_issuance_count 1$/m);
  } finally {
    client.close();
    await pilot.close();
  }
});

test('an identity other than the caller\'s, outside the trust domain or with DNS names is refused', async () => {
  const pilot = await pilotWithCa();
  const client = new CaClient(pilot.address);
  try {
    const other = await generateKeyAndCsr('spiffe://cluster.local/ns/default/sa/admin');
    await assert.rejects(client.request({ csrPem: other.csrPem, ttlSeconds: 60, metadata: META }),
      /CreateCertificate failed: the CSR asks for spiffe:\/\/cluster.local\/ns\/default\/sa\/admin but the caller is spiffe:\/\/cluster.local\/ns\/default\/sa\/reviews/);
    const foreign = await generateKeyAndCsr('spiffe://evil.example/ns/default/sa/reviews');
    await assert.rejects(client.request({ csrPem: foreign.csrPem, ttlSeconds: 60, metadata: META }), /outside the trust domain cluster.local/);
    const own = await generateKeyAndCsr(ID);
    await assert.rejects(client.request({ csrPem: own.csrPem, ttlSeconds: 60, metadata: {} }), /must carry the caller's NAMESPACE and SERVICE_ACCOUNT/);
    await assert.rejects(client.request({ csrPem: 'not a csr', ttlSeconds: 60, metadata: META }), /the CSR does not parse/);
  } finally {
    client.close();
    await pilot.close();
  }
});

test('with a token file, a caller needs a token allowed for its namespace', async () => {
  const d = tempDir();
  const tokensFile = path.join(d, 'tokens');
  writeFileSync(tokensFile, '# bootstrap tokens\ndefault-token-0123456789 default\nother-token-0123456789 bookinfo\n');
  const pilot = await pilotWithCa({ tokensFile });
  const client = new CaClient(pilot.address);
  try {
    const { csrPem } = await generateKeyAndCsr(ID);
    await assert.rejects(client.request({ csrPem, ttlSeconds: 60, metadata: META }), /a bootstrap token is required/);
    await assert.rejects(client.request({ csrPem, ttlSeconds: 60, metadata: META, token: 'wrong-token-0123456789' }), /the bootstrap token is not valid/);
    await assert.rejects(client.request({ csrPem, ttlSeconds: 60, metadata: META, token: 'other-token-0123456789' }), /the token does not allow identities in namespace default/);
    const ok = await client.request({ csrPem, ttlSeconds: 60, metadata: META, token: 'default-token-0123456789' });
    assert.equal(new X509Certificate(ok.chainPem).subjectAltName, `URI:${ID}`);
  } finally {
    client.close();
    await pilot.close();
  }
});

test('the token file is followed: a namespace added is served, a token removed is refused, a broken file keeps the last good tokens', async () => {
  const d = tempDir();
  const tokensFile = path.join(d, 'tokens');
  writeFileSync(tokensFile, 'old-token-0123456789abc bookinfo\n');
  const pilot = await pilotWithCa({ tokensFile });
  const client = new CaClient(pilot.address);
  const ask = async (token: string): Promise<string> => {
    const { csrPem } = await generateKeyAndCsr(ID);
    return client.request({ csrPem, ttlSeconds: 60, metadata: META, token }).then((r) => new X509Certificate(r.chainPem).subjectAltName ?? '', (err: Error) => err.message);
  };
  const until = async (token: string, want: RegExp): Promise<string> => {
    const deadline = Date.now() + 10_000;
    let got = await ask(token);
    while (!want.test(got) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      got = await ask(token);
    }
    return got;
  };
  try {
    assert.match(await ask('old-token-0123456789abc'), /the token does not allow identities in namespace default/);
    // the platform grants default to a new token and drops the old one: no restart
    writeFileSync(tokensFile, 'new-token-0123456789abc default\n');
    assert.equal(await until('new-token-0123456789abc', /^URI:/), `URI:${ID}`);
    assert.match(await ask('old-token-0123456789abc'), /the bootstrap token is not valid/);
    // a file that no longer parses changes nothing
    writeFileSync(tokensFile, 'not a token file at all\n');
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(await ask('new-token-0123456789abc'), `URI:${ID}`);
  } finally {
    client.close();
    await pilot.close();
  }
});

test('two pilots starting on one empty directory end with one root, key and certificate of the same pair', async () => {
  const dir = path.join(tempDir(), 'ca');
  const [a, b] = await Promise.all([loadSigningRoot({ dir, trustDomain: 'cluster.local' }), loadSigningRoot({ dir, trustDomain: 'cluster.local' })]);
  assert.equal(a.rootPem, b.rootPem);
  const kept = await loadSigningRoot({ dir, trustDomain: 'cluster.local' });
  assert.equal(kept.rootPem, a.rootPem);
});
