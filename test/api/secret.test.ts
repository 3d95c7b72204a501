// Kubernetes' v1 Secret as gateway credentials: read and written in Kubernetes' shape, checked
// as the API server checks it (plus the PEM material Istio would read), redacted for display,
// and never quoted in an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseDocuments, redactSecret, toYaml, validateResource } from '../../src/api/index.ts';
import type { Resource } from '../../src/api/index.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'sextant-secret-'));
spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'k.pem', '-out', 'c.pem', '-subj', '/CN=a.example.com', '-days', '1'], { cwd: dir });
const cert = readFileSync(path.join(dir, 'c.pem'), 'utf8');
const key = readFileSync(path.join(dir, 'k.pem'), 'utf8');
rmSync(dir, { recursive: true, force: true });
const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const b64 = (s: string): string => Buffer.from(s).toString('base64');

function one(yaml: string): Resource {
  const r = parseDocuments(yaml, 'secret.yaml');
  assert.deepEqual(r.errors.map(String), []);
  assert.equal(r.documents.length, 1);
  return r.documents[0]!.resource;
}

function errors(yaml: string): string[] {
  const r = parseDocuments(yaml, 'secret.yaml');
  if (r.errors.length > 0) return r.errors.map(String);
  return validateResource(r.documents[0]!.resource, r.documents[0]!.origin).map(String);
}

const tls = (data: Record<string, string>, type = 'kubernetes.io/tls'): string => `apiVersion: v1
kind: Secret
metadata: {name: cred, namespace: istio-system}
type: ${type}
data:
${Object.entries(data).map(([k, v]) => `  "${k}": "${v}"`).join('\n')}
`;

test('a kubernetes.io/tls Secret is read into the spec and written back in Kubernetes\' shape', () => {
  const r = one(tls({ 'tls.crt': b64(cert), 'tls.key': b64(key) }));
  assert.deepEqual(Object.keys(r), ['apiVersion', 'kind', 'metadata', 'spec']);
  assert.deepEqual(Object.keys(r.spec as object), ['type', 'data']);
  assert.deepEqual(validateResource(r), []);
  const yaml = toYaml(r);
  assert.match(yaml, /^apiVersion: v1\nkind: Secret\nmetadata:\n {2}name: cred\n {2}namespace: istio-system\ntype: kubernetes.io\/tls\ndata:\n {2}tls\.crt: /);
  assert.equal(yaml.includes('spec:'), false);
  assert.deepEqual(one(yaml), r);
  // stringData and the generic layout (cert/key/cacert) are read too.
  assert.deepEqual(errors(`apiVersion: v1\nkind: Secret\nmetadata: {name: g}\nstringData:\n  cert: |\n${cert.split('\n').map((l) => `    ${l}`).join('\n')}\n  key: |\n${key.split('\n').map((l) => `    ${l}`).join('\n')}\n`), []);
});

test('what Kubernetes refuses, and unusable PEM, is refused naming the field and never its value', () => {
  const got = [
    ...errors(tls({ 'tls.crt': b64(cert) })),
    ...errors(tls({ 'tls.crt': b64(cert), 'tls.key': b64(otherKey) })),
    ...errors(tls({ 'tls.crt': b64('not a certificate'), 'tls.key': b64(key) })),
    ...errors(tls({ 'tls.crt': '***', 'tls.key': b64(key), 'bad key!': b64('x') }, 'Opaque')),
    ...errors(`apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nspec: {data: {}}\n`),
  ];
  assert.deepEqual(got, [
    'secret.yaml:0 Secret/istio-system/cred: data[tls.key]: Required value',
    'secret.yaml:0 Secret/istio-system/cred: data[tls.key]: Invalid value: the key does not belong to the certificate in tls.crt',
    'secret.yaml:0 Secret/istio-system/cred: data[tls.crt]: Invalid value: no PEM certificate (-----BEGIN CERTIFICATE-----) found',
    'secret.yaml:0 Secret/istio-system/cred: data[tls.crt]: Invalid value: not base64 (stringData takes plain text)',
    "secret.yaml:0 Secret/istio-system/cred: data[bad key!]: Invalid value: a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
    'secret.yaml:0 Secret/default/s: spec: unknown field "spec": a Secret has no spec; write type, data and stringData at the top level',
  ]);
  for (const e of got) for (const line of [...key.split('\n'), ...otherKey.split('\n')].filter((l) => l.length > 20 && !l.startsWith('-----'))) assert.equal(e.includes(line), false);
});

test('redaction keeps the keys and hides every value', () => {
  const r = one(tls({ 'tls.crt': b64(cert), 'tls.key': b64(key) }));
  const shown = redactSecret(r);
  assert.deepEqual(shown.spec, { type: 'kubernetes.io/tls', data: { 'tls.crt': '[redacted]', 'tls.key': '[redacted]' } });
  assert.notDeepEqual(r.spec, shown.spec, 'the original is untouched');
});
