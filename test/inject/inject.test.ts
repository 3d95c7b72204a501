// `sextant inject -f FILE` (istioctl kube-inject): the injected YAML matches the golden files,
// is valid Kubernetes (the API's schemas, no unknown field), keeps everything it does not
// change, and injecting twice changes nothing; sidecar.istio.io/inject "false" (label or
// annotation) and host-network pods are left alone; a pod it cannot read stops the command
// with a message naming the file, document and field, and no output. UPDATE_GOLDEN=1 rewrites.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fastJsonPatch from 'fast-json-patch';
import { parse, parseAllDocuments } from 'yaml';
import { injectObject, injectionPatch } from '../../src/inject/inject.ts';
import { diff, parsePointer, toPointer, type JsonValue } from '../../src/inject/inject-patch.ts';
import { DEFAULT_OPTIONS } from '../../src/inject/inject-template.ts';
import { injectYaml } from '../../src/inject/inject-yaml.ts';
import { kubernetesErrors, type K8sObject, type NamedObject } from './k8s-schema.ts';

const ENTRY = path.resolve(import.meta.dirname, '../../bin/sextant.mjs');
const GOLDEN = path.join(import.meta.dirname, 'golden');

function sextant(args: string[], input?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [ENTRY, ...args], { encoding: 'utf8', input });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every workload and pod of a YAML text, as objects for the schema checks. */
function objectsOf(text: string, file: string): NamedObject[] {
  const out: NamedObject[] = [];
  parseAllDocuments(text).forEach((d, i) => {
    const o = d.toJS() as K8sObject;
    const items = o.kind === 'List' ? (o['items'] as K8sObject[]) : [o];
    for (const item of items) out.push({ what: `${file} document ${i + 1}: ${item.kind} ${(item['metadata'] as { name: string }).name}`, object: item });
  });
  return out;
}

/** The golden cases: input file, flags, and the lines expected on stderr. */
const CASES: { input: string; flags: string[]; stderr: string[] }[] = [
  {
    input: 'deployment.yaml',
    flags: ['--pilot-address', 'pilot.mesh-primary.example.com:15010', '--cluster-id', 'cluster-b', '--network', 'net-1', '--dc', 'dc-b', '--region', 'sh', '--include-outbound-ports', '9080', '--preserve-source-ranges', '10.244.0.0/16'],
    stderr: [],
  },
  { input: 'deployment-annotations.yaml', flags: [], stderr: [] },
  {
    input: 'workloads.yaml',
    flags: [],
    stderr: [
      "warning: Job bank/nightly-report .spec.template: a Job's pod completes only when every container exits: end the sidecar when the job is done (curl -X POST http://127.0.0.1:15000/quitquitquit)",
      'warning: Job bank/nightly-report .spec.template: nothing to capture (no declared container port, no outbound ports, no DNS capture): no init container; the app reaches the sidecar only by calling it (declare containerPorts or set traffic.sidecar.istio.io/includeOutboundPorts)',
      "warning: CronJob bank/reconcile .spec.jobTemplate.spec.template: a Job's pod completes only when every container exits: end the sidecar when the job is done (curl -X POST http://127.0.0.1:15000/quitquitquit)",
      'Deployment default/batch-loader: not injected: label sidecar.istio.io/inject is "false"',
      'Deployment default/node-exporter: not injected: annotation sidecar.istio.io/inject is "false"',
      "DaemonSet default/cni: not injected: the pod uses the host network (hostNetwork: true): rules set there would capture the node's traffic",
    ],
  },
];

for (const c of CASES) {
  const golden = c.input.replace(/\.yaml$/, '.injected.yaml');
  test(`sextant inject -f ${c.input} ${c.flags.join(' ')} matches golden/${golden}`, () => {
    const r = sextant(['inject', '-f', path.join(GOLDEN, c.input), ...c.flags]);
    assert.equal(r.stderr, c.stderr.map((l) => `${l}\n`).join(''));
    assert.equal(r.code, 0);
    const file = path.join(GOLDEN, golden);
    if (process.env['UPDATE_GOLDEN'] === '1') writeFileSync(file, r.stdout);
    assert.ok(existsSync(file), `${file} is missing; run with UPDATE_GOLDEN=1 to create it`);
    assert.equal(r.stdout, readFileSync(file, 'utf8'));
  });
}

test('the injected golden files are valid Kubernetes objects: the API schemas hold and no field is unknown', async () => {
  const objects = CASES.flatMap((c) => {
    const golden = c.input.replace(/\.yaml$/, '.injected.yaml');
    return objectsOf(readFileSync(path.join(GOLDEN, golden), 'utf8'), golden);
  });
  assert.ok(objects.length >= 10);
  assert.deepEqual(await kubernetesErrors(objects), []);
});

test('the output keeps every line of the input: injection only adds (comments, order, quoting, other documents)', () => {
  for (const c of CASES) {
    const input = readFileSync(path.join(GOLDEN, c.input), 'utf8');
    const output = readFileSync(path.join(GOLDEN, c.input.replace(/\.yaml$/, '.injected.yaml')), 'utf8');
    // Every input line is found in the output, in order (a comment may lose its extra spaces).
    const out = output.split('\n').map((l) => l.replace(/\s+#/, ' #'));
    let at = 0;
    for (const line of input.split('\n').map((l) => l.replace(/\s+#/, ' #'))) {
      const found = out.indexOf(line, at);
      assert.ok(found >= 0, `${c.input}: line ${JSON.stringify(line)} is missing or out of order in the output`);
      at = found + 1;
    }
    // Documents that are not injected come out byte for byte.
    const inDocs = input.split(/^---$/m);
    const outDocs = output.split(/^---$/m);
    assert.equal(outDocs.length, inDocs.length);
    inDocs.forEach((d, i) => {
      if (!/kind: (Service|ConfigMap)\b/.test(d) && !/inject: "false"|hostNetwork: true/.test(d)) return;
      if (/kind: List/.test(d)) return;
      assert.equal(outDocs[i], d, `${c.input} document ${i + 1} changed`);
    });
  }
});

test('the Deployment gets the init container last, the sidecar first with its postStart `sextant wait`, uid 1337, the pilot address, cluster id and data-centre env', () => {
  const out = parseAllDocuments(readFileSync(path.join(GOLDEN, 'deployment.injected.yaml'), 'utf8'))[1]!.toJS() as {
    spec: { template: { metadata: { annotations: Record<string, string> }; spec: { initContainers: { name: string; args: string[] }[]; containers: Record<string, unknown>[] } } };
  };
  const pod = out.spec.template.spec;
  assert.deepEqual(pod.containers.map((c) => c['name']), ['sextant-proxy', 'reviews']);
  const proxy = pod.containers[0] as { args: string[]; env: { name: string; value?: string }[]; lifecycle: unknown; readinessProbe: unknown; securityContext: { runAsUser: number }; ports: { containerPort: number }[] };
  assert.deepEqual(proxy.lifecycle, { postStart: { exec: { command: ['sextant', 'wait'] } } });
  assert.deepEqual(proxy.readinessProbe, { httpGet: { path: '/healthz/ready', port: 15021 }, periodSeconds: 2, timeoutSeconds: 3, failureThreshold: 30 });
  assert.equal(proxy.securityContext.runAsUser, 1337);
  assert.deepEqual(proxy.ports.map((p) => p.containerPort), [15090, 15021]);
  const env = Object.fromEntries(proxy.env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));
  assert.deepEqual(env, {
    PILOT_ADDRESS: 'pilot.mesh-primary.example.com:15010',
    ISTIO_META_CLUSTER_ID: 'cluster-b',
    ISTIO_META_NETWORK: 'net-1',
    SEXTANT_DC: 'dc-b',
    SEXTANT_REGION: 'sh',
    SEXTANT_PRESERVE_SOURCE_RANGES: '10.244.0.0/16',
    TMPDIR: '/var/lib/sextant',
  });
  assert.deepEqual(proxy.args.slice(0, 5), ['proxy', '--xds', '$(PILOT_ADDRESS)', '--id', 'sidecar~$(INSTANCE_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local']);
  assert.deepEqual(pod.initContainers.map((c) => c.name), ['sextant-init']);
  assert.deepEqual(pod.initContainers[0]!.args, ['iptables', '--proxy-uid', '1337', '--include-inbound-ports', '9080', '--include-outbound-ports', '9080']);
});

test('annotations choose the ports of `sextant iptables`: declared inbound ports only, outbound ports and exclusions, DNS capture', () => {
  const out = parse(readFileSync(path.join(GOLDEN, 'deployment-annotations.injected.yaml'), 'utf8')) as {
    spec: { template: { spec: { initContainers: { name: string; args: string[] }[] } } };
  };
  const init = out.spec.template.spec.initContainers;
  // The app's own init container runs first, before any rule exists.
  assert.deepEqual(init.map((c) => c.name), ['migrate', 'sextant-init']);
  assert.deepEqual(init[1]!.args, [
    'iptables', '--proxy-uid', '1337',
    '--include-inbound-ports', '8080',
    '--include-outbound-ports', '80,8080,9080',
    '--exclude-outbound-ports', '3306,6379',
    '--include-outbound-ip-ranges', '10.0.0.0/8,172.16.0.0/12',
    '--exclude-outbound-ip-ranges', '169.254.169.254/32,10.96.0.1/32',
    '--dns',
  ]);
});

test('`sextant iptables` accepts every injected init container\'s arguments (its --dry-run prints the rules)', () => {
  let checked = 0;
  for (const c of CASES) {
    for (const { object } of objectsOf(readFileSync(path.join(GOLDEN, c.input.replace(/\.yaml$/, '.injected.yaml')), 'utf8'), c.input)) {
      const spec = object['spec'] as { template?: unknown; jobTemplate?: { spec: { template: unknown } } } | undefined;
      const template = (object.kind === 'Pod' ? object : spec?.template ?? spec?.jobTemplate?.spec.template) as undefined | { spec?: { initContainers?: { name: string; command: string[]; args: string[]; env?: { name: string; value: string }[] }[] } };
      for (const init of template?.spec?.initContainers ?? []) {
        if (init.name !== 'sextant-init') continue;
        assert.deepEqual(init.command, ['sextant']);
        const env = Object.fromEntries((init.env ?? []).map((e) => [e.name, e.value]));
        const r = spawnSync(process.execPath, [ENTRY, ...init.args, '--dry-run'], { encoding: 'utf8', env: { ...process.env, ...env } });
        assert.equal(r.stderr, '', `${c.input}: sextant ${init.args.join(' ')}`);
        assert.equal(r.status, 0);
        assert.match(r.stdout, /^\*nat$/m);
        checked++;
      }
    }
  }
  assert.equal(checked, 6);
});

test('injecting twice changes nothing: the second run finds the injection and writes its input back unchanged', () => {
  for (const c of CASES) {
    const once = readFileSync(path.join(GOLDEN, c.input.replace(/\.yaml$/, '.injected.yaml')), 'utf8');
    const twice = sextant(['inject', '-f', '-', ...c.flags], once);
    assert.equal(twice.code, 0);
    assert.equal(twice.stdout, once, c.input);
    const injected = objectsOf(once, c.input).length;
    const already = twice.stderr.split('\n').filter((l) => l.includes('not injected: already injected')).length;
    assert.ok(already >= 1 && already <= injected, twice.stderr);
  }
  // Also when the status annotation was stripped: the sidecar container is recognised.
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ name: 'app', image: 'a' }] } };
  const injected = injectObject(pod, DEFAULT_OPTIONS).after as { metadata: { annotations: Record<string, string> } };
  delete injected.metadata.annotations['sidecar.istio.io/status'];
  const again = injectObject(injected as unknown as JsonValue, DEFAULT_OPTIONS);
  assert.equal(again.results[0]?.injected, false);
  assert.equal(again.results[0]?.reason, 'already injected (container sextant-proxy)');
  assert.deepEqual(again.after, injected);
});

test('sidecar.istio.io/inject "false": as label or annotation the pod is left alone; the label wins over the annotation (as in Istio)', () => {
  const pod = (labels: Record<string, string>, annotations: Record<string, string>): JsonValue => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', labels, annotations }, spec: { containers: [{ name: 'app', image: 'a' }] } });
  const injected = (p: JsonValue): boolean | undefined => injectionPatch(p, DEFAULT_OPTIONS).results[0]?.injected;
  assert.equal(injected(pod({ 'sidecar.istio.io/inject': 'false' }, {})), false);
  assert.equal(injected(pod({}, { 'sidecar.istio.io/inject': 'false' })), false);
  assert.equal(injected(pod({}, { 'sidecar.istio.io/inject': 'no' })), false);
  assert.equal(injected(pod({ 'sidecar.istio.io/inject': 'true' }, { 'sidecar.istio.io/inject': 'false' })), true);
  assert.equal(injected(pod({}, { 'sidecar.istio.io/inject': 'true' })), true);
  assert.equal(injected(pod({}, {})), true);
  // A pod of kube-system is never injected.
  assert.equal(injectionPatch({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'kube-system' }, spec: { containers: [{ name: 'a' }] } }, DEFAULT_OPTIONS).results[0]?.injected, false);
  // Not a workload: no result, nothing changed.
  const service = { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' } };
  assert.deepEqual(injectionPatch(service, DEFAULT_OPTIONS), { patch: [], after: service, results: [] });
});

test('interceptionMode NONE: no init container (nothing to capture), the sidecar still first and held by `sextant wait`', () => {
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', annotations: { 'sidecar.istio.io/interceptionMode': 'NONE' } }, spec: { containers: [{ name: 'app' }] } };
  const after = injectObject(pod, DEFAULT_OPTIONS).after as { spec: { initContainers?: unknown; containers: { name: string; args: string[]; lifecycle: unknown }[] } };
  assert.equal(after.spec.initContainers, undefined);
  assert.deepEqual(after.spec.containers.map((c) => c.name), ['sextant-proxy', 'app']);
  assert.ok(after.spec.containers[0]!.args.includes('INTERCEPTION_MODE=NONE'));
  assert.deepEqual(after.spec.containers[0]!.lifecycle, { postStart: { exec: { command: ['sextant', 'wait'] } } });
});

test("includeInboundPorts '*' captures the declared ports only (M9), with a warning; the sidecar's own ports are never captured", () => {
  const pod: JsonValue = {
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', annotations: { 'traffic.sidecar.istio.io/includeInboundPorts': '*' } },
    spec: { containers: [{ name: 'app', ports: [{ containerPort: 8080 }, { containerPort: 15090 }, { containerPort: 53, protocol: 'UDP' }] }] },
  };
  const r = injectObject(pod, DEFAULT_OPTIONS);
  const init = (r.after as { spec: { initContainers: { args: string[] }[] } }).spec.initContainers[0]!;
  assert.deepEqual(init.args, ['iptables', '--proxy-uid', '1337', '--include-inbound-ports', '8080']);
  assert.deepEqual(r.results[0]?.warnings, [`Pod p.metadata.annotations["traffic.sidecar.istio.io/includeInboundPorts"]: '*' captures the containers' declared ports only (8080,15090); list the ports to capture others`]);
});

test('a pod that cannot be injected as written stops the command: exit 1, the file, document and field named, nothing on stdout', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-inject-'));
  try {
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  template:\n    metadata:\n      annotations:\n        traffic.sidecar.istio.io/includeOutboundPorts: "80,http"\n    spec:\n      containers: [{name: web}]\n');
    const r = sextant(['inject', '-f', file]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `error: ${file}: document 2: Deployment shop/web .spec.template.metadata.annotations["traffic.sidecar.istio.io/includeOutboundPorts"]: expected comma-separated ports, got "80,http"\n`);

    writeFileSync(file, 'kind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n');
    assert.equal(sextant(['inject', '-f', file]).stderr, `error: ${file}: document 1: Pod p.spec.containers: expected a list of at least one container\n`);
    writeFileSync(file, 'kind: Pod\nmetadata: {name: p\n');
    assert.match(sextant(['inject', '-f', file]).stderr, new RegExp(`^error: ${file.replaceAll('/', '\\/')}: document 1: invalid YAML: `));
    assert.equal(sextant(['inject', '-f', path.join(dir, 'nosuch.yaml')]).stderr, `error: cannot read ${path.join(dir, 'nosuch.yaml')}: ENOENT\n`);
    // Bad flag values are usage errors (exit 2), checked before anything is read.
    const usage = sextant(['inject', '-f', file, '--include-outbound-ports', '80;443']);
    assert.deepEqual([usage.code, usage.stderr], [2, 'error: invalid --include-outbound-ports: expected comma-separated ports, got "80;443"\n']);
    const mode = sextant(['inject', '-f', file, '--interception-mode', 'TPROXY']);
    assert.deepEqual([mode.code, mode.stderr], [2, 'error: invalid --interception-mode "TPROXY": expected REDIRECT or NONE\n']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the injection patch is RFC 6902: applied by an independent implementation (fast-json-patch) it yields the injected object', () => {
  for (const c of CASES) {
    for (const doc of parseAllDocuments(readFileSync(path.join(GOLDEN, c.input), 'utf8'))) {
      const before = doc.toJS() as JsonValue;
      const { patch } = injectionPatch(before, DEFAULT_OPTIONS);
      const applied = fastJsonPatch.applyPatch(structuredClone(before), fastJsonPatch.deepClone(patch), true, false).newDocument;
      assert.deepEqual(applied, injectObject(before, DEFAULT_OPTIONS).after);
    }
  }
  // Keys with / and ~ are escaped (RFC 6901).
  assert.equal(toPointer(['metadata', 'annotations', 'sidecar.istio.io/status', 'a~b']), '/metadata/annotations/sidecar.istio.io~1status/a~0b');
  assert.deepEqual(parsePointer('/metadata/annotations/sidecar.istio.io~1status/a~0b'), ['metadata', 'annotations', 'sidecar.istio.io/status', 'a~b']);
  assert.deepEqual(diff({ a: [1, 2] }, { a: [0, 1, 2, 3] }), [{ op: 'add', path: '/a/0', value: 0 }, { op: 'add', path: '/a/-', value: 3 }]);
  assert.deepEqual(diff({ a: [1, 2], b: 1 }, { a: [2, 1] }), [{ op: 'remove', path: '/b' }, { op: 'replace', path: '/a/0', value: 2 }, { op: 'replace', path: '/a/1', value: 1 }]);
});

test('injectYaml of an empty file, and of documents with no workload, returns the text unchanged', () => {
  assert.deepEqual(injectYaml('', DEFAULT_OPTIONS), { text: '', results: [] });
  const text = '# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata:\n    name: s   # odd indent\n...\n';
  assert.deepEqual(injectYaml(text, DEFAULT_OPTIONS), { text, results: [] });
});
