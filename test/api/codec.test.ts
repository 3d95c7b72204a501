// Loading config as users write it for kubectl: multi-document YAML, JSON, List, directories,
// defaults, and errors that name the file and document.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadPaths, lookupKind, KINDS, parseDocuments, toYaml, validateResource, resourceKey } from '../../src/api/index.ts';

const VS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
`;

test('multi-document YAML: empty documents skipped but counted, a leading comment is no document, namespace defaults', () => {
  const text = `# leading comment\n---\n${VS}---\n---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: shop, labels: {app: reviews}}\nspec: {host: reviews}\n`;
  const r = parseDocuments(text, 'mesh.yaml');
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.documents.map((d) => [resourceKey(d.resource), d.origin.index]), [
    ['VirtualService/default/reviews', 0],
    ['DestinationRule/shop/reviews', 2],
  ]);
  assert.equal(r.documents[1]!.resource.apiVersion, 'networking.istio.io/v1beta1');
  assert.deepEqual(r.documents[1]!.resource.metadata.labels, { app: 'reviews' });
});

test('JSON documents, single objects and arrays', () => {
  const obj = { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'gw' }, spec: { servers: [] } };
  const one = parseDocuments(JSON.stringify(obj), 'gw.json');
  assert.equal(one.documents.length, 1);
  assert.equal(one.documents[0]!.resource.metadata.namespace, 'default');
  const many = parseDocuments(JSON.stringify([obj, { ...obj, metadata: { name: 'gw2', namespace: 'x' } }]), 'gws.json');
  assert.deepEqual(many.documents.map((d) => resourceKey(d.resource)), ['Gateway/default/gw', 'Gateway/x/gw2']);
});

test('kind: List expands its items', () => {
  const list = { apiVersion: 'v1', kind: 'List', items: [
    { apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'a' }, spec: { hosts: ['a.com'] } },
    { apiVersion: 'networking.istio.io/v1', kind: 'Frobnicator', metadata: { name: 'b' } },
  ] };
  const r = parseDocuments(JSON.stringify(list), 'list.json');
  assert.deepEqual(r.documents.map((d) => resourceKey(d.resource)), ['ServiceEntry/default/a']);
  assert.equal(r.errors.length, 1);
  assert.equal(r.errors[0]!.toString(), 'list.json:0 Frobnicator/default/b: items[1]: unsupported kind Frobnicator (networking.istio.io/v1): Sextant serves VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, WorkloadGroup, Sidecar, Gateway, EnvoyFilter, Telemetry, AuthorizationPolicy, PeerAuthentication, RequestAuthentication, Secret, AdaptiveLimit, LaneGroup, WasmPlugin, RouteTemplates, RateLimit, LazyScope, WorkloadScope');
});

test('unknown kinds, missing names and broken YAML are reported with file and index', () => {
  const text = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {namespace: x}\n---\nkey: [unclosed\n---\n- a list\n`;
  const r = parseDocuments(text, 'bad.yaml');
  assert.equal(r.documents.length, 0);
  const lines = r.errors.map(String);
  assert.equal(lines[0], 'bad.yaml:0 ConfigMap/default/c: unknown kind ConfigMap (v1): expected an Istio kind such as networking.istio.io/v1 VirtualService');
  assert.equal(lines[1], 'bad.yaml:1 Sidecar/x/: metadata.name: Required value: a non-empty string');
  assert.match(lines[2]!, /^bad\.yaml:2: invalid YAML: .* at line \d+, column \d+$/);
  assert.equal(lines[3], 'bad.yaml:3: a document must be a mapping with apiVersion, kind, metadata and spec');
  assert.equal(lines.length, 4);
});

test('documents the fast reader cannot read go to the full parser one by one, with file line numbers', () => {
  const doc = (n: string, extra = '') => `apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: ${n}\nspec:\n  hosts: [a.com]\n${extra}`;
  const text = [doc('plain'), doc('folded', '  subjectAltNames:\n  - >\n    folded\n    text\n'), doc('broken', '  addresses: [1.2.3.4\n'), doc('last')].join('---\n');
  const r = parseDocuments(text, 'mix.yaml');
  assert.deepEqual(r.documents.map((d) => [d.origin.index, d.resource.metadata.name]), [[0, 'plain'], [1, 'folded'], [3, 'last']]);
  assert.deepEqual((r.documents[1]!.resource.spec as { subjectAltNames: string[] }).subjectAltNames, ['folded text\n']);
  assert.deepEqual(r.errors.map(String), ['mix.yaml:2: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ] at line 26, column 1']);
});

test('IPv6 addresses in flow sequences read as kubectl reads them', () => {
  const r = parseDocuments('apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: v6}\nspec:\n  hosts: [a.com]\n  addresses: [1.2.3.4, 2001:db8::, "::1"]\n', 'v6.yaml');
  assert.deepEqual((r.documents[0]!.resource.spec as { addresses: string[] }).addresses, ['1.2.3.4', '2001:db8::', '::1']);
  assert.deepEqual(validateResource(r.documents[0]!.resource), []);
});

test('loadPaths walks directories recursively, in order, picking YAML and JSON files only', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-api-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(path.join(dir, 'b/nested'), { recursive: true });
  mkdirSync(path.join(dir, '.hidden'));
  writeFileSync(path.join(dir, 'a.yaml'), VS);
  writeFileSync(path.join(dir, 'b/nested/c.yml'), VS.replace('name: reviews', 'name: c'));
  writeFileSync(path.join(dir, 'b/d.json'), JSON.stringify({ apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name: 'd' }, spec: { address: '10.0.0.1' } }));
  writeFileSync(path.join(dir, 'b/notes.txt'), 'not config');
  writeFileSync(path.join(dir, '.hidden/e.yaml'), 'garbage: [');
  const r = await loadPaths([dir, path.join(dir, 'missing.yaml')]);
  assert.deepEqual(r.documents.map((d) => [path.relative(dir, d.origin.file), resourceKey(d.resource)]), [
    ['a.yaml', 'VirtualService/default/reviews'],
    ['b/d.json', 'WorkloadEntry/default/d'],
    ['b/nested/c.yml', 'VirtualService/default/c'],
  ]);
  assert.deepEqual(r.errors.map(String), [`${path.join(dir, 'missing.yaml')}: cannot read: ENOENT`]);
});

test('toYaml writes a document that parses back to the same resource', () => {
  const [d] = parseDocuments(VS, 'vs.yaml').documents;
  const text = toYaml(d!.resource);
  assert.match(text, /^apiVersion: networking\.istio\.io\/v1\nkind: VirtualService\nmetadata:\n {2}name: reviews\n {2}namespace: default\nspec:\n/);
  const [again] = parseDocuments(text, 'again.yaml').documents;
  assert.deepEqual(again!.resource, d!.resource);
});

test('kinds registry: canonical versions, aliases and plurals', () => {
  assert.equal(KINDS.length, 20);
  assert.deepEqual(lookupKind('networking.istio.io/v1alpha3', 'VirtualService'),
    { group: 'networking.istio.io', kind: 'VirtualService', versions: ['v1', 'v1beta1', 'v1alpha3'], canonicalVersion: 'v1', plural: 'virtualservices' });
  assert.equal(lookupKind('networking.istio.io/v1alpha3', 'EnvoyFilter')?.canonicalVersion, 'v1alpha3');
  assert.equal(lookupKind('networking.istio.io/v1', 'EnvoyFilter'), undefined);
  assert.equal(lookupKind('telemetry.istio.io/v1alpha1', 'Telemetry')?.plural, 'telemetries');
  assert.equal(lookupKind('security.istio.io/v1beta1', 'AuthorizationPolicy')?.plural, 'authorizationpolicies');
  assert.equal(lookupKind('networking.istio.io/v1beta1', 'ProxyConfig'), undefined);
});
