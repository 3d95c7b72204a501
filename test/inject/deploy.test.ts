// The Kubernetes manifests of deploy/ (pilot and injector): every object is valid against the
// Kubernetes API's schemas (kubernetes-models: ajv-compiled JSON schemas, and its TypeScript
// types for fields the API does not have, which `kubectl apply` refuses), and the pieces fit
// together: Services select the Deployments' pods and name their ports, the webhook calls the
// injector's Service on the path it serves, the sidecars are pointed at the pilot's Service,
// the mesh config is one the pilot reads without a warning, every flag exists, and the control
// plane's own pods are never injected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseMeshConfig } from '../../src/pilot/mesh-config/index.ts';
import { injectYaml } from '../../src/inject/inject-yaml.ts';
import { DEFAULT_OPTIONS } from '../../src/inject/inject-template.ts';
import { INJECT_PATH } from '../../src/inject/webhook.ts';
import { kubernetesErrors, type K8sObject, type NamedObject } from './k8s-schema.ts';

const DEPLOY = path.resolve(import.meta.dirname, '../../deploy');
const ENTRY = path.resolve(import.meta.dirname, '../../bin/sextant.mjs');

interface Meta { name: string; namespace?: string; labels?: Record<string, string> }
interface Container { name: string; command?: string[]; args?: string[]; ports?: { name?: string; containerPort: number }[]; volumeMounts?: { name: string; mountPath: string }[] }
interface Deployment extends K8sObject {
  metadata: Meta;
  spec: { selector: { matchLabels: Record<string, string> }; template: { metadata: Meta; spec: { containers: Container[]; volumes?: { name: string; configMap?: { name: string }; secret?: { secretName: string } }[] } } };
}
interface Service extends K8sObject { metadata: Meta; spec: { selector: Record<string, string>; ports: { name: string; port: number; targetPort: string | number }[] } }

const files = readdirSync(DEPLOY).filter((f) => f.endsWith('.yaml')).sort();
const objects: NamedObject[] = files.flatMap((f) => parseAllDocuments(readFileSync(path.join(DEPLOY, f), 'utf8')).map((d) => {
  assert.deepEqual(d.errors, [], f);
  const o = d.toJS() as K8sObject & { metadata: Meta };
  return { what: `deploy/${f}: ${o.kind} ${o.metadata.name}`, object: o };
}));
const all = objects.map((o) => o.object);
const ofKind = <T extends K8sObject>(kind: string): T[] => all.filter((o) => o.kind === kind) as T[];
const named = <T extends K8sObject>(kind: string, name: string): T => {
  const o = ofKind<T>(kind).find((x) => (x['metadata'] as Meta).name === name);
  assert.ok(o, `no ${kind} ${name} in deploy/`);
  return o;
};
const argAfter = (c: Container, flag: string): string | undefined => {
  const args = c.args ?? [];
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};

test('deploy/ holds the Namespace, ServiceAccounts, Deployments, Services, ConfigMaps and the MutatingWebhookConfiguration', () => {
  assert.deepEqual(files, ['injector.yaml', 'namespace.yaml', 'pilot.yaml']);
  const kinds = objects.map((o) => `${o.object.kind}/${(o.object['metadata'] as Meta).name}`).sort();
  assert.deepEqual(kinds, [
    'ConfigMap/sextant-config', 'ConfigMap/sextant-mesh',
    'Deployment/sextant-injector', 'Deployment/sextant-pilot',
    'MutatingWebhookConfiguration/sextant-sidecar-injector',
    'Namespace/sextant-system',
    'Service/sextant-injector', 'Service/sextant-pilot',
    'ServiceAccount/sextant-injector', 'ServiceAccount/sextant-pilot',
  ]);
});

test('every object is valid against the Kubernetes API schemas, with no unknown field', async () => {
  assert.deepEqual(await kubernetesErrors(objects), []);
});

test('control: the checks find a misspelt field and a bad value in a manifest', async () => {
  const webhook = structuredClone(named<K8sObject & { webhooks: Record<string, unknown>[] }>('MutatingWebhookConfiguration', 'sextant-sidecar-injector'));
  webhook.webhooks[0]!['sideEffects'] = 'Maybe';
  const deployment = structuredClone(named<Deployment>('Deployment', 'sextant-pilot'));
  (deployment.spec.template.spec.containers[0] as unknown as Record<string, unknown>)['readinesProbe'] = { httpGet: { path: '/ready', port: 15014 } };
  const errors = await kubernetesErrors([{ what: 'webhook', object: webhook }, { what: 'deployment', object: deployment }]);
  assert.ok(errors.some((e) => e.startsWith('webhook: ') && e.includes('sideEffects')), errors.join('\n'));
  assert.ok(errors.some((e) => e.startsWith('deployment: ') && e.includes("'\"readinesProbe\"' does not exist in type 'IContainer'")), errors.join('\n'));
});

test('each Service selects its Deployment\'s pods and names ports they declare; each Deployment selects its own template', () => {
  for (const d of ofKind<Deployment>('Deployment')) {
    const labels = d.spec.template.metadata.labels ?? {};
    for (const [k, v] of Object.entries(d.spec.selector.matchLabels)) assert.equal(labels[k], v, `${d.metadata.name}: selector ${k}`);
  }
  for (const s of ofKind<Service>('Service')) {
    const pods = ofKind<Deployment>('Deployment').filter((d) => d.metadata.namespace === s.metadata.namespace && Object.entries(s.spec.selector).every(([k, v]) => d.spec.template.metadata.labels?.[k] === v));
    assert.equal(pods.length, 1, `Service ${s.metadata.name} selects ${pods.length} Deployments`);
    const ports = pods[0]!.spec.template.spec.containers.flatMap((c) => c.ports ?? []);
    for (const p of s.spec.ports) {
      assert.ok(ports.some((cp) => cp.name === p.targetPort || cp.containerPort === p.targetPort), `Service ${s.metadata.name} port ${p.name}: no container port ${p.targetPort}`);
    }
  }
});

test('the webhook calls the injector\'s Service on the path it serves, for pods being created, with AdmissionReview v1', () => {
  const webhook = named<K8sObject & { webhooks: { name: string; admissionReviewVersions: string[]; sideEffects: string; clientConfig: { service: { name: string; namespace: string; path: string; port: number } }; rules: { operations: string[]; resources: string[] }[] }[] }>('MutatingWebhookConfiguration', 'sextant-sidecar-injector');
  const service = named<Service>('Service', 'sextant-injector');
  const injector = named<Deployment>('Deployment', 'sextant-injector').spec.template.spec.containers[0]!;
  assert.equal(webhook.webhooks.length, 2);
  for (const w of webhook.webhooks) {
    assert.deepEqual(w.admissionReviewVersions, ['v1']);
    assert.equal(w.sideEffects, 'None');
    assert.deepEqual(w.clientConfig.service, { name: service.metadata.name, namespace: service.metadata.namespace, path: INJECT_PATH, port: service.spec.ports[0]!.port });
    assert.deepEqual(w.rules.map((r) => [r.operations, r.resources]), [[['CREATE'], ['pods']]]);
  }
  // The Service's target is the port the injector listens on.
  const listen = Number(argAfter(injector, '--address')!.split(':')[1]);
  assert.ok(injector.ports!.some((p) => p.name === service.spec.ports[0]!.targetPort && p.containerPort === listen));
});

test('sidecars are pointed at the pilot\'s Service; the mesh config is read by the pilot without a warning and names the same address', () => {
  const pilotService = named<Service>('Service', 'sextant-pilot');
  const pilot = named<Deployment>('Deployment', 'sextant-pilot').spec.template.spec.containers[0]!;
  const xdsPort = Number(argAfter(pilot, '--xds-address')!.split(':')[1]);
  const servicePort = pilotService.spec.ports.find((p) => p.name === 'grpc-xds')!;
  assert.equal(servicePort.port, xdsPort);
  const address = `${pilotService.metadata.name}.${pilotService.metadata.namespace}.svc:${xdsPort}`;
  const injector = named<Deployment>('Deployment', 'sextant-injector').spec.template.spec.containers[0]!;
  assert.equal(argAfter(injector, '--pilot-address'), address);
  assert.equal(DEFAULT_OPTIONS.pilotAddress, address, 'the injection default points at deploy/\'s pilot');
  const mesh = named<K8sObject & { data: { mesh: string } }>('ConfigMap', 'sextant-mesh');
  const parsed = parseMeshConfig(mesh.data.mesh, 'deploy/pilot.yaml ConfigMap sextant-mesh');
  assert.deepEqual(parsed.warnings, []);
  assert.equal(parsed.config.rootNamespace, 'sextant-system');
  assert.equal((mesh.data.mesh.match(/discoveryAddress: (\S+)/) ?? [])[1], address);
});

test('every container runs a sextant command with flags it has; files it reads are on the volumes mounted there', () => {
  for (const d of ofKind<Deployment>('Deployment')) {
    const pod = d.spec.template.spec;
    for (const c of pod.containers) {
      assert.deepEqual(c.command, ['sextant']);
      const [sub, ...args] = c.args ?? [];
      const help = spawnSync(process.execPath, [ENTRY, sub!, '--help'], { encoding: 'utf8' });
      assert.equal(help.status, 0, `sextant ${sub} --help: ${help.stderr}`);
      for (const flag of args.filter((a) => a.startsWith('--'))) assert.ok(help.stdout.includes(`${flag} `), `${d.metadata.name}: sextant ${sub} has no ${flag}`);
      const mounted = (file: string): string | undefined => c.volumeMounts?.find((m) => file.startsWith(`${m.mountPath}/`))?.name;
      for (const flag of ['--config-dir', '--mesh-config', '--tls-cert', '--tls-key']) {
        const file = argAfter(c, flag);
        if (file === undefined) continue;
        const volume = flag === '--config-dir' ? c.volumeMounts?.find((m) => m.mountPath === file)?.name : mounted(file);
        assert.ok(volume !== undefined, `${d.metadata.name}: ${flag} ${file} is on no mounted volume`);
        assert.ok(pod.volumes?.some((v) => v.name === volume), `${d.metadata.name}: volume ${volume} is not declared`);
      }
      for (const m of c.volumeMounts ?? []) assert.ok(pod.volumes?.some((v) => v.name === m.name), `${d.metadata.name}: mount ${m.name} has no volume`);
    }
    // A ConfigMap volume names a ConfigMap of deploy/.
    for (const v of pod.volumes ?? []) if (v.configMap) named('ConfigMap', v.configMap.name);
  }
});

test('the control plane\'s own pods are never injected', () => {
  for (const f of files) {
    const text = readFileSync(path.join(DEPLOY, f), 'utf8');
    const r = injectYaml(text, DEFAULT_OPTIONS, f);
    assert.equal(r.text, text);
    assert.ok(r.results.every((x) => !x.injected && x.reason === 'label sidecar.istio.io/inject is "false"'), JSON.stringify(r.results));
  }
});
