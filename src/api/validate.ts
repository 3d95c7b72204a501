// validateResource: checks one resource the way Istio does: the envelope and metadata as the
// Kubernetes API server would, the spec against the CRD's structural schema and CEL rules,
// then Istio's own semantic rules (its validation webhook).
import { ANNOTATIONS_MAX_BYTES, DNS1123_SUBDOMAIN_MAX, checkLabelKey, checkLabelValue, isDNS1123Label, isDNS1123Subdomain } from './checks.ts';
import { describeUnknownKind } from './codec.ts';
import { ConfigError } from './errors.ts';
import { lookupKind, type SupportedKind } from './kinds.ts';
import type { Origin, Resource } from './resource.ts';
import { walk, type Issues } from './schema.ts';
import { SPEC_SCHEMAS } from './schemas.ts';
import { SEMANTIC_RULES } from './semantic.ts';
import { FAILOVER_THRESHOLD_ANNOTATION, parseFailoverThreshold } from './lane-group.ts';
import { validateSecret } from './secret.ts';

export { ConfigError } from './errors.ts';

const TOP_LEVEL = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);
const OBJECT_META = new Set([
  'name', 'namespace', 'labels', 'annotations', 'resourceVersion', 'creationTimestamp', 'generation', 'uid',
  'generateName', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'ownerReferences', 'finalizers', 'managedFields', 'selfLink',
]);
/** Kinds whose CRD marks spec as required. */
const SPEC_REQUIRED: ReadonlySet<string> = new Set(['ServiceEntry', 'WorkloadEntry', 'WorkloadGroup', 'WasmPlugin']);
const EMPTY_SPEC: Readonly<Record<string, unknown>> = Object.freeze({});

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Collects issues as ConfigErrors for one resource. */
class ResourceIssues implements Issues {
  readonly errors: ConfigError[] = [];
  private readonly file: string | undefined;
  private readonly index: number | undefined;
  private readonly kind: string;
  private readonly namespace: string;
  private readonly name: string;
  // Built on the first error only: most resources are valid.
  private key: string | undefined;

  constructor(kind: string, namespace: string, name: string, origin: Origin | undefined) {
    this.kind = kind;
    this.namespace = namespace;
    this.name = name;
    this.file = origin?.file;
    this.index = origin?.index;
  }

  private get resource(): string {
    return (this.key ??= `${this.kind}/${this.namespace}/${this.name}`);
  }

  get count(): number {
    return this.errors.length;
  }

  add(path: string, detail: string): void {
    const init: ConstructorParameters<typeof ConfigError>[0] = { resource: this.resource, path, detail };
    if (this.file !== undefined) init.file = this.file;
    if (this.index !== undefined) init.index = this.index;
    this.errors.push(new ConfigError(init));
  }
}

/**
 * Validates one resource; returns its errors (empty when valid). The resource is not
 * modified. origin, when given, is named in every error.
 */
export function validateResource(r: Resource, origin?: Origin): ConfigError[] {
  const raw = r as unknown as Record<string, unknown>;
  const meta: Record<string, unknown> = isObject(raw['metadata']) ? raw['metadata'] : {};
  const name = typeof meta['name'] === 'string' ? meta['name'] : '';
  const namespace = typeof meta['namespace'] === 'string' && meta['namespace'] !== '' ? meta['namespace'] : 'default';
  const kindName = typeof raw['kind'] === 'string' ? raw['kind'] : '';
  const issues = new ResourceIssues(kindName, namespace, name, origin);

  const apiVersion = typeof raw['apiVersion'] === 'string' ? raw['apiVersion'] : '';
  const info = lookupKind(apiVersion, kindName);
  if (info === undefined) {
    if (apiVersion === '') issues.add('apiVersion', 'Required value: a string such as networking.istio.io/v1');
    else if (kindName === '') issues.add('kind', 'Required value: a string such as VirtualService');
    else issues.add('', describeUnknownKind(apiVersion, kindName));
    return issues.errors;
  }
  for (const k in raw) if (!TOP_LEVEL.has(k)) issues.add(k, `unknown field "${k}"`);
  if (info.kind === 'Secret') {
    // Kubernetes' core Secret: its top-level fields travel as the spec (secret.ts).
    validateMetadata(raw['metadata'], issues);
    validateSecret(raw['spec'] ?? {}, issues);
    return issues.errors;
  }

  validateMetadata(raw['metadata'], issues);
  const annotations = isObject(meta['annotations']) ? meta['annotations'] : undefined;
  if (annotations !== undefined) {
    // Istio honours dry-run only on AuthorizationPolicy, and lets tests force a rejection.
    if (annotations['istio.io/dry-run'] !== undefined && kindName !== 'AuthorizationPolicy') {
      issues.add('metadata.annotations[istio.io/dry-run]', `${namespace}/${name} has unsupported annotation istio.io/dry-run, please remove the annotation`);
    }
    if (annotations['internal.istio.io/webhook-always-reject'] !== undefined) {
      issues.add('metadata.annotations[internal.istio.io/webhook-always-reject]', '"internal.istio.io/webhook-always-reject" annotation found, rejecting');
    }
    // lanes/active-active: the local-health threshold of locality failover on a DestinationRule
    const threshold = annotations[FAILOVER_THRESHOLD_ANNOTATION];
    if (threshold !== undefined) {
      const t = kindName === 'DestinationRule' && typeof threshold === 'string' ? parseFailoverThreshold(threshold) : { error: 'applies to DestinationRule only' };
      if (typeof t !== 'number') issues.add(`metadata.annotations[${FAILOVER_THRESHOLD_ANNOTATION}]`, t.error);
    }
  }

  const kind = info.kind as SupportedKind;
  let spec = raw['spec'];
  if (spec === undefined || spec === null) {
    if (SPEC_REQUIRED.has(kind)) {
      // written as null, the API server reports its type (as for any required field)
      issues.add('spec', spec === null ? 'Invalid value: "null": spec in body must be of type object: "null"' : 'Required value');
      return issues.errors;
    }
    spec = EMPTY_SPEC;
  }
  const structuralOk = walk(SPEC_SCHEMAS[kind], spec, 'spec', issues);
  // Istio's semantic rules assume a well-formed spec: they run once the schema holds,
  // as Istio's webhook only sees objects the API server's schema accepted.
  if (structuralOk && issues.errors.length === 0) {
    SEMANTIC_RULES[kind](spec as never, { namespace, name }, issues);
  }
  return issues.errors;
}

function validateMetadata(m: unknown, issues: Issues): void {
  if (!isObject(m)) {
    issues.add('metadata', 'Required value: a mapping with at least name');
    return;
  }
  for (const k in m) if (!OBJECT_META.has(k)) issues.add(`metadata.${k}`, `unknown field "${k}"`);
  const name = m['name'];
  if (typeof name !== 'string' || name === '') issues.add('metadata.name', 'Required value: a non-empty string');
  else if (name.length > DNS1123_SUBDOMAIN_MAX) issues.add('metadata.name', `Invalid value: ${JSON.stringify(name)}: must be no more than ${DNS1123_SUBDOMAIN_MAX} characters`);
  else if (!isDNS1123Subdomain(name)) {
    issues.add('metadata.name', `Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`);
  }
  const ns = m['namespace'];
  if (typeof ns === 'string' && ns.length > 63) issues.add('metadata.namespace', `Invalid value: ${JSON.stringify(ns)}: must be no more than 63 characters`);
  else if (ns !== undefined && ns !== null && (typeof ns !== 'string' || (ns !== '' && !isDNS1123Label(ns)))) {
    issues.add('metadata.namespace', `Invalid value: ${JSON.stringify(ns)}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`);
  }
  const labels = m['labels'];
  if (labels !== undefined && labels !== null) {
    if (!isObject(labels)) issues.add('metadata.labels', 'Invalid value: expected a mapping of strings');
    else {
      for (const k in labels) {
        const v = labels[k];
        const ke = checkLabelKey(k);
        if (ke !== undefined) issues.add(`metadata.labels[${k}]`, ke);
        if (typeof v !== 'string') issues.add(`metadata.labels[${k}]`, 'Invalid value: label values must be strings');
        else {
          const ve = checkLabelValue(v);
          if (ve !== undefined) issues.add(`metadata.labels[${k}]`, ve);
        }
      }
    }
  }
  const annotations = m['annotations'];
  if (annotations !== undefined && annotations !== null) {
    if (!isObject(annotations)) issues.add('metadata.annotations', 'Invalid value: expected a mapping of strings');
    else {
      // As Kubernetes' ValidateAnnotations: keys are qualified names (checked in lower case),
      // and keys and values together are at most 256 KiB.
      let bytes = 0;
      for (const k in annotations) {
        const v = annotations[k];
        const ke = checkLabelKey(k.toLowerCase());
        if (ke !== undefined) issues.add(`metadata.annotations[${k}]`, ke.replace('label key', 'annotation key').replace(JSON.stringify(k.toLowerCase()), JSON.stringify(k)));
        if (typeof v !== 'string') issues.add(`metadata.annotations[${k}]`, 'Invalid value: annotation values must be strings');
        else bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
      }
      if (bytes > ANNOTATIONS_MAX_BYTES) {
        issues.add('metadata.annotations', `Too long: may not be more than ${ANNOTATIONS_MAX_BYTES} bytes (keys and values are ${bytes} bytes)`);
      }
    }
  }
}
