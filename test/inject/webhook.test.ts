// `sextant injector`, the mutating admission webhook, answered over HTTPS as the API server
// calls it: a real AdmissionReview v1 for a pod (as Kubernetes sends it: generateName,
// ownerReferences, the service-account volume) gets a JSONPatch that, applied by an
// independent RFC 6902 implementation, yields the pod `sextant inject` writes; an injected or
// opted-out pod gets no patch; a request it cannot read is admitted with a warning (failure
// policy Ignore) or refused (Fail); there is no plaintext port; a rotated certificate is served
// without a restart.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import fastJsonPatch, { type Operation } from 'fast-json-patch';
import { pino } from 'pino';
import { DEFAULT_OPTIONS } from '../../src/inject/inject-template.ts';
import { startInjector } from '../../src/inject/webhook.ts';
import { freePort } from '../helpers/ports.ts';
import { kubernetesErrors, type K8sObject } from './k8s-schema.ts';

const ENTRY = path.resolve(import.meta.dirname, '../../bin/sextant.mjs');
const REVIEW = JSON.parse(readFileSync(path.join(import.meta.dirname, 'fixtures', 'admission-review-pod.json'), 'utf8')) as {
  request: { uid: string; object: Record<string, unknown>; [k: string]: unknown };
  [k: string]: unknown;
};
const FLAGS = ['--pilot-address', 'pilot.primary.example.com:15010', '--cluster-id', 'remote-1', '--dc', 'dc-a'];

let dir: string;
let ca: Buffer;
const injectors: { fail: string; ignore: string } = { fail: '', ignore: '' };
const children: ChildProcess[] = [];

/** A CA and a server certificate for 127.0.0.1 and the injector's Service name, made by openssl. */
function makeCerts(into: string, name: string): void {
  const run = (...args: string[]): void => {
    const r = spawnSync('openssl', args, { cwd: into, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  if (!readFileSafe(path.join(into, 'ca.crt'))) run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=sextant test CA');
  writeFileSync(path.join(into, 'san.ext'), 'subjectAltName=DNS:sextant-injector.sextant-system.svc,IP:127.0.0.1\n');
  run('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=sextant-injector.sextant-system.svc');
  run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', 'san.ext');
}

function readFileSafe(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

interface Answer {
  status: number;
  review: { apiVersion: string; kind: string; response: { uid: string; allowed: boolean; patchType?: string; patch?: string; warnings?: string[]; status?: { code: number; message: string; reason: string } } };
}

function post(address: string, body: string, contentType = 'application/json', pathName = '/inject', method = 'POST'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const [host, port] = address.split(':');
    const req = https.request({ host, port: Number(port), path: pathName, method, ca, headers: { 'content-type': contentType, 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(method === 'GET' ? undefined : body);
  });
}

async function admit(address: string, review: unknown, contentType?: string): Promise<Answer> {
  const r = await post(address, typeof review === 'string' ? review : JSON.stringify(review), contentType);
  return { status: r.status, review: JSON.parse(r.body) as Answer['review'] };
}

function withPod(mutate: (pod: Record<string, unknown> & { metadata: Record<string, unknown>; spec: Record<string, unknown> }) => void, request: Record<string, unknown> = {}): unknown {
  const review = structuredClone(REVIEW);
  mutate(review.request.object as Parameters<typeof mutate>[0]);
  Object.assign(review.request, request);
  return review;
}

async function startCli(policy: 'Fail' | 'Ignore'): Promise<string> {
  const address = `127.0.0.1:${await freePort()}`;
  const child = spawn(process.execPath, [ENTRY, 'injector', '--address', address, '--tls-cert', path.join(dir, 'tls.crt'), '--tls-key', path.join(dir, 'tls.key'), '--failure-policy', policy, '--log-level', 'warn', ...FLAGS], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  child.stdout!.resume();
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`sextant injector exited ${child.exitCode}: ${stderr}`);
    try {
      if ((await post(address, '', undefined, '/ready', 'GET')).status === 200) return address;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`sextant injector did not become ready: ${stderr}`);
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-injector-'));
  makeCerts(dir, 'tls');
  ca = readFileSync(path.join(dir, 'ca.crt'));
  [injectors.fail, injectors.ignore] = await Promise.all([startCli('Fail'), startCli('Ignore')]);
});

after(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('a real AdmissionReview for a pod gets a JSONPatch that, applied, yields the same pod as `sextant inject`', async () => {
  const { status, review } = await admit(injectors.fail, REVIEW);
  assert.equal(status, 200);
  assert.equal(review.apiVersion, 'admission.k8s.io/v1');
  assert.equal(review.kind, 'AdmissionReview');
  assert.equal(review.response.uid, REVIEW.request.uid);
  assert.equal(review.response.allowed, true);
  assert.equal(review.response.patchType, 'JSONPatch');
  const patch = JSON.parse(Buffer.from(review.response.patch!, 'base64').toString('utf8')) as Operation[];
  // Only additions: the sidecar first, the init container, the volumes (its own, the mesh root, the bootstrap token), the annotations.
  assert.deepEqual(patch.map((o) => `${o.op} ${o.path}`), [
    'add /metadata/annotations',
    'add /spec/volumes/3',
    'add /spec/volumes/4',
    'add /spec/volumes/-',
    'add /spec/containers/0',
    'add /spec/initContainers',
  ]);
  const patched = fastJsonPatch.applyPatch(structuredClone(REVIEW.request.object), patch, true, false).newDocument;

  const cli = spawnSync(process.execPath, [ENTRY, 'inject', '-f', '-', ...FLAGS], { input: JSON.stringify(REVIEW.request.object), encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stderr);
  assert.deepEqual(patched, JSON.parse(cli.stdout), 'a JSON document comes out as JSON');

  // The patched pod is a valid Pod; the sidecar connects to the primary's pilot as cluster remote-1.
  const pod = structuredClone(patched) as K8sObject & { metadata: Record<string, unknown>; spec: { containers: { name: string; env: { name: string; value?: string }[] }[] } };
  delete pod.metadata['creationTimestamp'];
  assert.deepEqual(await kubernetesErrors([{ what: 'patched pod', object: pod }]), []);
  const env = Object.fromEntries(pod.spec.containers[0]!.env.map((e) => [e.name, e.value]));
  assert.equal(env['PILOT_ADDRESS'], 'pilot.primary.example.com:15010');
  assert.equal(env['ISTIO_META_CLUSTER_ID'], 'remote-1');
  assert.equal(env['SEXTANT_DC'], 'dc-a');
  assert.deepEqual(pod.spec.containers.map((c) => c.name), ['sextant-proxy', 'reviews']);
});

test('an injected pod, an opted-out pod, an update and a subresource are admitted without a patch', async () => {
  const first = await admit(injectors.fail, REVIEW);
  const injected = fastJsonPatch.applyPatch(structuredClone(REVIEW.request.object), JSON.parse(Buffer.from(first.review.response.patch!, 'base64').toString()) as Operation[], true, false).newDocument;
  const reviews = [
    withPod((p) => Object.assign(p, injected)),
    withPod((p) => { (p.metadata['labels'] as Record<string, string>)['sidecar.istio.io/inject'] = 'false'; }),
    withPod((p) => { p.metadata['annotations'] = { 'sidecar.istio.io/inject': 'false' }; }),
    withPod((p) => { p.spec['hostNetwork'] = true; }),
    withPod(() => undefined, { operation: 'UPDATE' }),
    withPod(() => undefined, { subResource: 'status' }),
  ];
  for (const [i, r] of reviews.entries()) {
    const { review } = await admit(injectors.fail, r);
    assert.deepEqual(review.response, { uid: REVIEW.request.uid, allowed: true }, `case ${i}`);
  }
});

/** Requests the injector cannot serve, and the reason its answer gives. */
const BAD: { what: string; body: unknown; contentType?: string; uid: string; reason: string }[] = [
  { what: 'a body that is not JSON', body: '{"kind": "AdmissionRev', uid: '', reason: 'bad request: the body is not JSON' },
  { what: 'a body that is not JSON-typed', body: REVIEW, contentType: 'text/plain', uid: REVIEW.request.uid, reason: 'bad request: Content-Type "text/plain" is not application/json' },
  { what: 'an AdmissionReview v1beta1', body: { ...REVIEW, apiVersion: 'admission.k8s.io/v1beta1' }, uid: REVIEW.request.uid, reason: 'bad request: expected kind AdmissionReview, apiVersion admission.k8s.io/v1; got "AdmissionReview", "admission.k8s.io/v1beta1"' },
  { what: 'a review without a uid', body: withPod(() => undefined, { uid: undefined }), uid: '', reason: 'bad request: request.uid is missing' },
  { what: 'a Deployment', body: withPod(() => undefined, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }), uid: REVIEW.request.uid, reason: 'bad request: this webhook injects pods; it was sent "Deployment"' },
  {
    what: 'a pod with a bad annotation',
    body: withPod((p) => { p.metadata['annotations'] = { 'traffic.sidecar.istio.io/includeInboundPorts': '9080,70000' }; }),
    uid: REVIEW.request.uid,
    reason: 'cannot inject the pod: Pod bookinfo/reviews-v2-65c4dc6fdc-*.metadata.annotations["traffic.sidecar.istio.io/includeInboundPorts"]: port 70000 is out of range 1-65535',
  },
];

for (const b of BAD) {
  test(`${b.what}: refused (400) under failure policy Fail, admitted with a warning under Ignore`, async () => {
    const fail = await admit(injectors.fail, typeof b.body === 'string' ? b.body : JSON.stringify(b.body), b.contentType);
    assert.equal(fail.status, 200);
    assert.equal(fail.review.kind, 'AdmissionReview');
    assert.equal(fail.review.response.uid, b.uid);
    assert.equal(fail.review.response.allowed, false);
    assert.equal(fail.review.response.patch, undefined);
    assert.equal(fail.review.response.status?.code, 400);
    assert.equal(fail.review.response.status?.reason, 'BadRequest');
    assert.ok(fail.review.response.status?.message.startsWith(`sextant injector: ${b.reason}`), fail.review.response.status?.message);

    const ignore = await admit(injectors.ignore, typeof b.body === 'string' ? b.body : JSON.stringify(b.body), b.contentType);
    assert.equal(ignore.review.response.uid, b.uid);
    assert.equal(ignore.review.response.allowed, true);
    assert.equal(ignore.review.response.patch, undefined);
    assert.equal(ignore.review.response.warnings?.length, 1);
    assert.ok(ignore.review.response.warnings![0]!.startsWith(`sextant injector: ${b.reason}`), ignore.review.response.warnings![0]);
    assert.ok(ignore.review.response.warnings![0]!.endsWith('; admitted without a sidecar (failure policy Ignore)'));
  });
}

test('HTTPS only: plaintext HTTP gets no answer; /inject takes POST only; /ready and /metrics are served', async () => {
  const [host, port] = injectors.fail.split(':');
  const plain = await new Promise<string>((resolve) => {
    const req = http.request({ host, port: Number(port), path: '/inject', method: 'POST' }, (res) => resolve(`HTTP ${res.statusCode}`));
    req.on('error', (err) => resolve(err.message));
    req.end('{}');
  });
  assert.doesNotMatch(plain, /^HTTP 2/);
  assert.equal((await post(injectors.fail, '', undefined, '/inject', 'GET')).status, 405);
  assert.equal((await post(injectors.fail, '{}', undefined, '/mutate')).status, 404);
  const metrics = await post(injectors.ignore, '', undefined, '/metrics', 'GET');
  assert.match(metrics.body, /^sidecar_injection_requests_total \d+$/m);
  assert.match(metrics.body, /^sidecar_injection_failure_total\{type="bad-request"\} \d+$/m);
});

test('the injector refuses to start without a readable certificate: exit 1 naming the file; without --tls-cert: exit 2', () => {
  const missing = spawnSync(process.execPath, [ENTRY, 'injector', '--address', '127.0.0.1:0', '--tls-cert', path.join(dir, 'nosuch.crt'), '--tls-key', path.join(dir, 'tls.key')], { encoding: 'utf8' });
  assert.equal(missing.status, 1);
  assert.equal(missing.stderr, `error: sextant injector: cannot read the TLS certificate ${path.join(dir, 'nosuch.crt')}: ENOENT\n`);
  const usage = spawnSync(process.execPath, [ENTRY, 'injector'], { encoding: 'utf8' });
  assert.equal(usage.status, 2);
  assert.equal(usage.stderr, "error: required option '--tls-cert <file>' not specified (see 'sextant injector --help')\n");
  const policy = spawnSync(process.execPath, [ENTRY, 'injector', '--tls-cert', 'a', '--tls-key', 'b', '--failure-policy', 'open'], { encoding: 'utf8' });
  assert.deepEqual([policy.status, policy.stderr], [2, 'error: invalid --failure-policy "open": expected Ignore or Fail\n']);
});

test('a rotated certificate is served to new connections without a restart', async () => {
  const own = mkdtempSync(path.join(os.tmpdir(), 'sextant-injector-rotate-'));
  const injector = await (async () => {
    for (const f of ['ca.crt', 'ca.key']) writeFileSync(path.join(own, f), readFileSync(path.join(dir, f)));
    makeCerts(own, 'tls');
    return startInjector({
      address: '127.0.0.1:0', certFile: path.join(own, 'tls.crt'), keyFile: path.join(own, 'tls.key'),
      inject: DEFAULT_OPTIONS, failurePolicy: 'Fail', logger: pino({ level: 'silent' }), certCheckMs: 50,
    });
  })();
  const served = (): Promise<string> => new Promise((resolve, reject) => {
    const [host, port] = injector.address.split(':');
    const s = tls.connect({ host, port: Number(port), ca }, () => {
      resolve(s.getPeerX509Certificate()!.fingerprint256);
      s.end();
    });
    s.on('error', reject);
  });
  try {
    const before = await served();
    assert.equal(before, new X509Certificate(readFileSync(path.join(own, 'tls.crt'))).fingerprint256);
    // A new pair, swapped in as Kubernetes updates a mounted Secret: written aside, renamed into place.
    makeCerts(own, 'next');
    renameSync(path.join(own, 'next.key'), path.join(own, 'tls.key'));
    renameSync(path.join(own, 'next.crt'), path.join(own, 'tls.crt'));
    const next = new X509Certificate(readFileSync(path.join(own, 'tls.crt'))).fingerprint256;
    assert.notEqual(next, before);
    const deadline = Date.now() + 5000;
    while ((await served()) !== next) {
      assert.ok(Date.now() < deadline, 'the new certificate was not served within 5 s');
      await sleep(50);
    }
  } finally {
    await injector.close();
    rmSync(own, { recursive: true, force: true });
  }
});
