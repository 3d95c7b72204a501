// Kubernetes' size limits on object metadata (annotations 256 KiB in all, qualified-name keys,
// 63-character label values, 253-character names), DNS limits on hosts, and error messages
// that quote an over-long value by its first 128 characters and its size, never whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, abbreviate, parseDocuments, quote, validateResource, type ObjectMeta, type Resource } from '../../src/api/index.ts';

const MB = 1024 * 1024;
const A128 = 'a'.repeat(128);

function vs(metadata: Partial<ObjectMeta>, hosts = ['reviews']): Resource {
  return {
    apiVersion: 'networking.istio.io/v1', kind: 'VirtualService',
    metadata: { name: 'r', namespace: 'default', ...metadata } as ObjectMeta,
    spec: { hosts, http: [{ route: [{ destination: { host: 'reviews' } }] }] },
  };
}

const messages = (r: Resource): string[] => validateResource(r).map(String);

test('annotations: keys and values together at most 256 KiB, as Kubernetes counts them', () => {
  assert.deepEqual(messages(vs({ annotations: { note: 'x'.repeat(256 * 1024 - 4) } })), []);
  assert.deepEqual(messages(vs({ annotations: { note: 'x'.repeat(256 * 1024 - 3) } })),
    ['VirtualService/default/r: metadata.annotations: Too long: may not be more than 262144 bytes (keys and values are 262145 bytes)']);
  assert.deepEqual(messages(vs({ annotations: { a: 'x'.repeat(MB) } })),
    ['VirtualService/default/r: metadata.annotations: Too long: may not be more than 262144 bytes (keys and values are 1048577 bytes)']);
  // Bytes, not characters: 'é' is two bytes in UTF-8.
  assert.deepEqual(messages(vs({ annotations: { a: 'é'.repeat(128 * 1024) } })),
    ['VirtualService/default/r: metadata.annotations: Too long: may not be more than 262144 bytes (keys and values are 262145 bytes)']);
  // Many small annotations add up.
  const many = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, 'v'.repeat(1000)]));
  assert.match(messages(vs({ annotations: many }))[0]!, /^VirtualService\/default\/r: metadata\.annotations: Too long: may not be more than 262144 bytes \(keys and values are 30\d{4} bytes\)$/);
});

test('annotation keys are qualified names, checked in lower case as Kubernetes does', () => {
  assert.deepEqual(messages(vs({ annotations: { 'Example.COM/Owner': 'team-a', 'sidecar.istio.io/inject': 'true' } })), []);
  assert.deepEqual(messages(vs({ annotations: { 'bad key!': 'x' } })),
    ['VirtualService/default/r: metadata.annotations[bad key!]: annotation key "bad key!" is invalid: a name of up to 63 characters: alphanumerics, \'-\', \'_\' or \'.\', starting and ending with an alphanumeric']);
  assert.deepEqual(messages(vs({ annotations: { [`${'p'.repeat(254)}/x`]: 'v' } })),
    [`VirtualService/default/r: metadata.annotations[${'p'.repeat(128)}… (256 bytes)]: annotation key "${'p'.repeat(128)}"… (256 bytes): prefix part must be no more than 253 characters`]);
});

test('label keys: prefix a DNS subdomain of up to 253 characters, name up to 63', () => {
  const prefix = `${'p'.repeat(63)}.${'q'.repeat(63)}.${'r'.repeat(63)}.${'s'.repeat(61)}`;
  assert.equal(prefix.length, 253);
  assert.deepEqual(messages(vs({ labels: { [`${prefix}/${'n'.repeat(63)}`]: 'v' } })), []);
  assert.deepEqual(messages(vs({ labels: { [`${prefix}x/app`]: 'v' } })),
    [`VirtualService/default/r: metadata.labels[${`${prefix}x/app`.slice(0, 128)}… (258 bytes)]: label key "${prefix.slice(0, 128)}"… (258 bytes): prefix part must be no more than 253 characters`]);
  assert.deepEqual(messages(vs({ labels: { [`example.com/${'n'.repeat(64)}`]: 'v' } })),
    [`VirtualService/default/r: metadata.labels[example.com/${'n'.repeat(64)}]: label key "example.com/${'n'.repeat(64)}" is invalid: name part must be no more than 63 characters`]);
  assert.deepEqual(messages(vs({ labels: { 'Example.com/app': 'v' } })),
    ['VirtualService/default/r: metadata.labels[Example.com/app]: label key "Example.com/app": prefix must be a DNS-1123 subdomain']);
});

test('label values: at most 63 characters of (([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?', () => {
  assert.deepEqual(messages(vs({ labels: { a: 'v'.repeat(63), b: '', c: 'A.b_c-1' } })), []);
  assert.deepEqual(messages(vs({ labels: { a: 'v'.repeat(64) } })),
    [`VirtualService/default/r: metadata.labels[a]: label value "${'v'.repeat(64)}" is invalid: must be no more than 63 characters`]);
  assert.deepEqual(messages(vs({ labels: { a: '-v' } })),
    ['VirtualService/default/r: metadata.labels[a]: label value "-v" is invalid: up to 63 characters: alphanumerics, \'-\', \'_\' or \'.\', starting and ending with an alphanumeric']);
  assert.deepEqual(messages(vs({ labels: { a: 'v'.repeat(MB) } })),
    [`VirtualService/default/r: metadata.labels[a]: label value "${'v'.repeat(128)}"… (1048576 bytes) is invalid: must be no more than 63 characters`]);
});

test('metadata.name: a DNS subdomain of at most 253 characters; namespace a label of at most 63', () => {
  const name253 = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
  assert.deepEqual(messages(vs({ name: name253 })), []);
  assert.deepEqual(messages(vs({ name: `${name253}e` })),
    [`VirtualService/default/${'a'.repeat(63)}.${'b'.repeat(63)}.… (254 bytes): metadata.name: Invalid value: "${'a'.repeat(63)}.${'b'.repeat(63)}."… (254 bytes): must be no more than 253 characters`]);
  assert.deepEqual(messages(vs({ namespace: 'n'.repeat(64) })),
    [`VirtualService/${'n'.repeat(64)}/r: metadata.namespace: Invalid value: "${'n'.repeat(64)}": must be no more than 63 characters`]);
});

test('hosts: DNS limits where Istio checks hosts (255 in all, 63 per label), quoted short', () => {
  const label63 = 'h'.repeat(63);
  assert.deepEqual(messages(vs({}, [`${label63}.example.com`])), []);
  assert.deepEqual(messages(vs({}, [`${label63}h.example.com`])),
    [`VirtualService/default/r: spec.hosts[0]: domain name "${label63}h.example.com" invalid (label "${label63}h" invalid)`]);
  assert.deepEqual(messages(vs({}, [`${'h'.repeat(MB)}.com`])),
    [`VirtualService/default/r: spec.hosts[0]: domain name "${'h'.repeat(128)}"… (1048580 bytes) too long (max 255)`]);
  const se: Resource = {
    apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'd', namespace: 'default' },
    spec: { host: 'x'.repeat(MB) },
  };
  assert.deepEqual(messages(se), [`DestinationRule/default/d: spec.host: domain name "${'x'.repeat(128)}"… (1048576 bytes) too long (max 255)`]);
});

test('an error repeats at most 128 characters of any value, with the value\'s size', () => {
  assert.equal(abbreviate('short'), 'short');
  assert.equal(abbreviate(A128), A128);
  assert.equal(abbreviate(`${A128}b`), `${A128}… (129 bytes)`);
  assert.equal(quote(`${A128}"b`), `${JSON.stringify(`${A128}`)}… (130 bytes)`);
  assert.equal(quote('€'.repeat(200)), `"${'€'.repeat(128)}"… (600 bytes)`);
  // A surrogate pair is never split.
  assert.equal(abbreviate(`${'a'.repeat(127)}😀tail`), `${'a'.repeat(127)}… (135 bytes)`);
  const e = new ConfigError({ file: 'x.yaml', index: 0, resource: 'ServiceEntry/default/se', path: `spec.endpoints[0].labels[${'k'.repeat(200)}]`, detail: `unquoted ${'z'.repeat(MB)} and quoted "${'q'.repeat(300)}" end` });
  assert.equal(e.path, `spec.endpoints[0].labels[${'k'.repeat(128)}… (200 bytes)]`);
  assert.equal(e.detail, `unquoted ${'z'.repeat(128)}… (1048576 bytes) and quoted "${'q'.repeat(128)}"… (300 bytes) end`);
  assert.equal(e.message, `x.yaml:0 ServiceEntry/default/se: ${e.path}: ${e.detail}`);
});

test('a YAML document with a megabyte line: its parse error stays short', () => {
  const { errors } = parseDocuments(`apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [${'"'}${'h'.repeat(MB)}]}\n`, 'big.yaml');
  assert.equal(errors.length, 1);
  assert.ok(errors[0]!.message.length < 1000, `${errors[0]!.message.length} characters`);
  assert.match(errors[0]!.message, /^big\.yaml:0: invalid YAML: /);
});

test('`sextant validate` prints a 1 MB host as one short line', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-limits-'));
  try {
    const file = path.join(dir, 'se.yaml');
    const se = (metadata: string, host: string): string =>
      `apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: ${metadata}\nspec:\n  hosts: [${host}]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n`;
    writeFileSync(file, [
      se(`{name: noted, namespace: default, annotations: {note: ${'n'.repeat(MB)}}}`, 'ok.example.com'),
      se('{name: big, namespace: default}', `${'h'.repeat(MB)}.example.com`),
    ].join('---\n'));
    const r = spawnSync(process.execPath, [path.resolve(import.meta.dirname, '../../bin/sextant.mjs'), 'validate', '-f', file], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, [
      `${file}:0 ServiceEntry/default/noted: metadata.annotations: Too long: may not be more than 262144 bytes (keys and values are 1048580 bytes)`,
      `${file}:1 ServiceEntry/default/big: spec.hosts[0]: domain name "${'h'.repeat(128)}"… (1048588 bytes) too long (max 255)`,
      '',
    ].join('\n'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
