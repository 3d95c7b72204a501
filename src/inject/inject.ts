// The injection transform (istioctl kube-inject's): a workload, a pod or a List of them in,
// the same with the sidecar added out, as plain JSON. `sextant inject` applies it to YAML
// files, `sextant injector` to the pods of admission requests; both through `injectObject`.
import { diff, jsonEqual, type JsonValue, type PatchOperation } from './inject-patch.ts';
import {
  ANNOTATION, INIT_CONTAINER, InjectError, PROXY_CONTAINER, initContainer, injectAnswer, sidecarVolumeNames, sidecarVolumes,
  proxyContainer, sidecarSettings, type Container, type InjectOptions,
} from './inject-template.ts';

/** Where each kind keeps its pod template. Other kinds are not workloads and pass through. */
const TEMPLATE_PATH: Readonly<Record<string, readonly string[]>> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

/** Namespaces whose pods are never injected (as Istio's injector). */
const IGNORED_NAMESPACES = new Set(['kube-system', 'kube-public']);

export const INJECTABLE_KINDS: readonly string[] = Object.keys(TEMPLATE_PATH);

/** What happened to one workload (or pod). */
export interface WorkloadResult {
  kind: string;
  /** `namespace/name`, or the name alone when the namespace is not set. */
  name: string;
  injected: boolean;
  /** Why not, when not injected. */
  reason?: string;
  /** `true` when the reason is an injection already there (injecting twice changes nothing). */
  alreadyInjected?: boolean;
  warnings: string[];
}

type JsonObject = { [key: string]: JsonValue };

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringMap(v: JsonValue | undefined, field: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw new InjectError(field, 'expected a map of strings');
  for (const [k, x] of Object.entries(v)) if (typeof x !== 'string') throw new InjectError(`${field}[${JSON.stringify(k)}]`, `expected a string, got ${JSON.stringify(x)}`);
  return v as Record<string, string>;
}

/** Istio's rules for whether a pod gets a sidecar: undefined when it does, else why not. */
export function skipReason(labels: Record<string, string>, annotations: Record<string, string>, spec: JsonObject, namespace: string | undefined): { reason: string; alreadyInjected?: true } | undefined {
  if (annotations[ANNOTATION.status] !== undefined) return { reason: `already injected (annotation ${ANNOTATION.status})`, alreadyInjected: true };
  const containers = Array.isArray(spec['containers']) ? spec['containers'] : [];
  if (containers.some((c) => isObject(c) && c['name'] === PROXY_CONTAINER)) return { reason: `already injected (container ${PROXY_CONTAINER})`, alreadyInjected: true };
  if (spec['hostNetwork'] === true) return { reason: 'the pod uses the host network (hostNetwork: true): rules set there would capture the node\'s traffic' };
  if (namespace !== undefined && IGNORED_NAMESPACES.has(namespace)) return { reason: `pods in ${namespace} are never injected` };
  // The label wins over the annotation, as in Istio.
  const [where, value] = labels[ANNOTATION.inject] !== undefined ? ['label', labels[ANNOTATION.inject]] : ['annotation', annotations[ANNOTATION.inject]];
  if (injectAnswer(value) === false) return { reason: `${where} ${ANNOTATION.inject} is ${JSON.stringify(value)}` };
  return undefined;
}

export interface PodTemplateResult {
  /** The pod template after injection (the same object when not injected). */
  template: JsonValue;
  injected: boolean;
  reason?: string;
  alreadyInjected?: boolean;
  warnings: string[];
}

/**
 * Injects one pod template (`{metadata, spec}`, or a whole Pod). `at` names it in errors
 * (`Deployment default/reviews .spec.template`); `ownerKind` is the workload's kind, for the
 * warnings that depend on it (a Job's pod never completes while its sidecar runs).
 */
export function injectPodTemplate(template: JsonValue, o: InjectOptions, at: string, namespace?: string, ownerKind?: string): PodTemplateResult {
  if (!isObject(template)) throw new InjectError(at, 'expected a pod template (an object with metadata and spec)');
  const meta = template['metadata'] ?? {};
  if (!isObject(meta)) throw new InjectError(`${at}.metadata`, 'expected an object');
  const spec = template['spec'];
  if (!isObject(spec)) throw new InjectError(`${at}.spec`, 'expected an object (the pod spec)');
  const labels = stringMap(meta['labels'], `${at}.metadata.labels`);
  const annotations = stringMap(meta['annotations'], `${at}.metadata.annotations`);
  const containers = spec['containers'];
  if (!Array.isArray(containers) || containers.length === 0) throw new InjectError(`${at}.spec.containers`, 'expected a list of at least one container');
  containers.forEach((c, i) => {
    if (!isObject(c) || typeof c['name'] !== 'string' || c['name'] === '') throw new InjectError(`${at}.spec.containers[${i}].name`, 'expected a container with a name');
    const ports = c['ports'];
    if (ports !== undefined && ports !== null && (!Array.isArray(ports) || !ports.every(isObject))) throw new InjectError(`${at}.spec.containers[${i}].ports`, 'expected a list of ports');
  });
  for (const key of ['initContainers', 'volumes'] as const) {
    if (spec[key] !== undefined && spec[key] !== null && !Array.isArray(spec[key])) throw new InjectError(`${at}.spec.${key}`, 'expected a list');
  }

  const skip = skipReason(labels, annotations, spec, namespace);
  if (skip !== undefined) return { template, injected: false, warnings: [], ...skip };

  const settings = sidecarSettings(annotations, containers as unknown as Container[], o, at);
  const warnings = [...settings.warnings];
  if (ownerKind === 'Job' || ownerKind === 'CronJob') {
    warnings.push(`${at}: a Job's pod completes only when every container exits: end the sidecar when the job is done (curl -X POST http://127.0.0.1:${o.ports.admin}/quitquitquit)`);
  }
  let capture = settings.mode !== 'NONE';
  if (capture && settings.inboundPorts.length === 0 && (settings.outboundPorts ?? []).length === 0 && !settings.dnsCapture) {
    // `sextant iptables` refuses an empty rule set: without ports there is nothing to set up.
    capture = false;
    warnings.push(`${at}: nothing to capture (no declared container port, no outbound ports, no DNS capture): no init container; the app reaches the sidecar only by calling it (declare containerPorts or set ${ANNOTATION.includeOutboundPorts})`);
  }
  const initContainers = Array.isArray(spec['initContainers']) ? spec['initContainers'] : [];
  const volumes = Array.isArray(spec['volumes']) ? spec['volumes'] : [];
  const status = {
    initContainers: capture ? [INIT_CONTAINER] : null,
    containers: [PROXY_CONTAINER],
    volumes: sidecarVolumeNames(o),
    imagePullSecrets: null,
    revision: 'default',
  };
  const added: Record<string, string> = { [ANNOTATION.status]: JSON.stringify(status) };
  // `kubectl logs` and `exec` pick the app, not the sidecar that now comes first.
  if (annotations[ANNOTATION.defaultContainer] === undefined) added[ANNOTATION.defaultContainer] = String((containers[0] as JsonObject)['name']);
  if (!Object.keys(annotations).some((k) => k.startsWith('prometheus.io/'))) {
    Object.assign(added, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(o.ports.stats), 'prometheus.io/path': '/stats/prometheus' });
  }
  const newSpec: JsonObject = {
    ...spec,
    // Last: the app's own init containers run before any rule exists, so their calls are
    // never sent to a sidecar that is not running yet.
    ...(capture ? { initContainers: [...initContainers, initContainer(settings, o)] } : {}),
    // First: the kubelet starts containers in order and holds the next until postStart returns.
    containers: [proxyContainer(settings, o, labels), ...containers],
    volumes: [...volumes, ...sidecarVolumes(o)],
  };
  const newMeta: JsonObject = { ...meta, annotations: { ...annotations, ...added } };
  return { template: { ...template, metadata: newMeta, spec: newSpec }, injected: true, warnings };
}

function objectName(obj: JsonObject): { name: string; namespace: string | undefined } {
  const meta = isObject(obj['metadata']) ? obj['metadata'] : {};
  const name = typeof meta['name'] === 'string' ? meta['name'] : typeof meta['generateName'] === 'string' ? `${meta['generateName']}*` : '(unnamed)';
  const namespace = typeof meta['namespace'] === 'string' ? meta['namespace'] : undefined;
  return { name: namespace !== undefined ? `${namespace}/${name}` : name, namespace };
}

function getIn(obj: JsonValue, path: readonly string[]): JsonValue | undefined {
  let cur: JsonValue | undefined = obj;
  for (const k of path) cur = isObject(cur) ? cur[k] : undefined;
  return cur;
}

function setIn(obj: JsonObject, path: readonly string[], value: JsonValue): JsonObject {
  if (path.length === 0) return value as JsonObject;
  const [k, ...rest] = path as [string, ...string[]];
  return { ...obj, [k]: setIn(isObject(obj[k]) ? obj[k] : {}, rest, value) };
}

export interface ObjectResult {
  /** The object after injection (equal to the input when nothing was injected). */
  after: JsonValue;
  results: WorkloadResult[];
}

/**
 * Injects a Kubernetes object: a workload of INJECTABLE_KINDS, or a List (`kind: List` or
 * `…List`) of them, recursively; anything else comes back unchanged. `namespace` applies to
 * objects that name none (an admission request's namespace). Throws an InjectError naming
 * the object and field when a workload cannot be read.
 */
export function injectObject(obj: JsonValue, o: InjectOptions, namespace?: string): ObjectResult {
  if (!isObject(obj)) return { after: obj, results: [] };
  const kind = typeof obj['kind'] === 'string' ? obj['kind'] : '';
  if ((kind === 'List' || kind.endsWith('List')) && Array.isArray(obj['items'])) {
    const results: WorkloadResult[] = [];
    const items = obj['items'].map((item) => {
      const r = injectObject(item, o, namespace);
      results.push(...r.results);
      return r.after;
    });
    return { after: results.some((r) => r.injected) ? { ...obj, items } : obj, results };
  }
  const path = TEMPLATE_PATH[kind];
  if (path === undefined) return { after: obj, results: [] };
  const id = objectName(obj);
  const ns = id.namespace ?? namespace;
  const at = `${kind} ${id.name}${path.length > 0 ? ` .${path.join('.')}` : ''}`;
  const template = path.length === 0 ? obj : getIn(obj, path);
  if (template === undefined) throw new InjectError(at, 'missing: a workload needs a pod template');
  const r = injectPodTemplate(template, o, at, ns, kind);
  const result: WorkloadResult = { kind, name: id.name, injected: r.injected, warnings: r.warnings };
  if (r.reason !== undefined) result.reason = r.reason;
  if (r.alreadyInjected) result.alreadyInjected = true;
  return { after: r.injected ? setIn(obj, path, r.template) : obj, results: [result] };
}

/** The JSON Patch turning `obj` into its injected form (empty when nothing is injected). */
export function injectionPatch(obj: JsonValue, o: InjectOptions, namespace?: string): { patch: PatchOperation[]; after: JsonValue; results: WorkloadResult[] } {
  const r = injectObject(obj, o, namespace);
  return { patch: jsonEqual(obj, r.after) ? [] : diff(obj, r.after), after: r.after, results: r.results };
}
