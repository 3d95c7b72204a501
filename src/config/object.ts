// What both backends do to a resource on its way in and out: argument checks, validation,
// the stored form (without resourceVersion), content comparison, freezing.
import { resourceKey, validateResource, type ConfigError, type Origin, type Resource } from '../api/index.ts';
import { InvalidArgumentError, ValidationFailedError } from './errors.ts';

/** Kind/namespace/name as used in errors and logs (same as the API's resourceKey). */
export function keyOf(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

/** Refuses key segments that could never name a resource, before they reach a path or an etcd key. */
export function checkSegments(kind: string, namespace: string, name: string): void {
  for (const [field, value] of [['kind', kind], ['namespace', namespace], ['name', name]] as const) {
    if (typeof value !== 'string' || value === '') throw new InvalidArgumentError(`${field} must be a non-empty string`);
    if (value.includes('/') || value.includes('\0') || value === '.' || value === '..') {
      throw new InvalidArgumentError(`${field} ${JSON.stringify(value)} may not contain '/' or NUL, nor be '.' or '..'`);
    }
  }
}

/**
 * Checks and validates a resource offered for writing: a missing namespace becomes "default"
 * (as kubectl does), then the whole resource is validated; throws ValidationFailedError with
 * every problem. Returns the key and the (shallow-copied) resource to store.
 */
export function prepareWrite(resource: Resource, origin?: Origin): { key: string; resource: Resource } {
  if (resource === null || typeof resource !== 'object' || Array.isArray(resource)) {
    throw new InvalidArgumentError('a resource must be an object with apiVersion, kind, metadata and spec');
  }
  const meta: unknown = resource.metadata;
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) {
    throw new InvalidArgumentError(`${resourceKey({ kind: String(resource.kind), metadata: {} })}: metadata must be an object with name and namespace`);
  }
  const metadata = { ...resource.metadata };
  if (metadata.namespace === undefined || metadata.namespace === '') metadata.namespace = 'default';
  const input: Resource = { ...resource, metadata };
  const key = resourceKey(input);
  const errors: ConfigError[] = validateResource(input, origin);
  if (errors.length > 0) throw new ValidationFailedError(key, errors);
  checkSegments(input.kind, metadata.namespace, metadata.name);
  return { key, resource: input };
}

/** The resource as persisted: everything but resourceVersion, which the store derives. */
export function storedForm(resource: Resource): Resource {
  const { resourceVersion: _rv, ...metadata } = resource.metadata;
  const stored: Resource = { apiVersion: resource.apiVersion, kind: resource.kind, metadata, spec: resource.spec };
  // A controller's status (AdaptiveLimit) is kept beside the spec, as Kubernetes keeps it.
  if (resource.status !== undefined && resource.status !== null) stored.status = resource.status;
  return stored;
}

/** A copy with the given resourceVersion. */
export function withVersion(resource: Resource, revision: number): Resource {
  return { ...resource, metadata: { ...resource.metadata, resourceVersion: String(revision) } };
}

/** JSON with object keys sorted, so equal content gives equal text whatever the key order. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

/** Whether two resources say the same thing (ignoring the fields the store sets). */
export function sameContent(a: Resource, b: Resource): boolean {
  return (
    a.apiVersion === b.apiVersion &&
    canonicalJson(a.metadata.labels ?? {}) === canonicalJson(b.metadata.labels ?? {}) &&
    canonicalJson(a.metadata.annotations ?? {}) === canonicalJson(b.metadata.annotations ?? {}) &&
    canonicalJson(a.spec) === canonicalJson(b.spec) &&
    canonicalJson(a.status ?? null) === canonicalJson(b.status ?? null)
  );
}

/** Whether the spec changed (which bumps metadata.generation, as Kubernetes does). */
export function sameSpec(a: Resource, b: Resource): boolean {
  return canonicalJson(a.spec) === canonicalJson(b.spec);
}

/** Freezes a resource deeply, so the objects a store hands out cannot be changed under it. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Orders resources by namespace, then name (the order list() returns). */
export function compareByNamespaceName(a: Resource, b: Resource): number {
  const an = a.metadata.namespace;
  const bn = b.metadata.namespace;
  if (an !== bn) return an < bn ? -1 : 1;
  const a1 = a.metadata.name;
  const b1 = b.metadata.name;
  return a1 < b1 ? -1 : a1 > b1 ? 1 : 0;
}
