// The shapes of the registration API's request bodies, written once: checked on every request
// (types, bounds, required and unknown fields, each error naming the field) and turned into
// the OpenAPI document's schemas, so the two cannot disagree.
import { badRequest } from './errors.ts';

export type Shape =
  | { type: 'string'; description?: string; enum?: readonly string[]; pattern?: RegExp; patternText?: string; maxLength?: number; minLength?: number }
  | { type: 'integer'; description?: string; minimum: number; maximum: number }
  | { type: 'array'; description?: string; items: Shape; minItems?: number; maxItems: number }
  | { type: 'map'; description?: string; values: Shape; maxEntries: number; keyPattern?: RegExp; keyPatternText?: string }
  | { type: 'object'; description?: string; fields: Readonly<Record<string, Shape>>; required?: readonly string[] }
  /** Any JSON object: checked later by the resource's own validation (Istio's HTTPMatchRequest). */
  | { type: 'free-object'; description?: string };

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

const str = (description: string, extra: Partial<Extract<Shape, { type: 'string' }>> = {}): Shape => ({ type: 'string', description, maxLength: 253, ...extra });
const labels = (description: string): Shape => ({
  type: 'map', description, maxEntries: 64, keyPattern: LABEL_KEY, keyPatternText: LABEL_KEY.source, values: { type: 'string', maxLength: 63 },
});

export const PORT: Shape = {
  type: 'object',
  fields: {
    name: str('port name, e.g. http', { pattern: DNS_LABEL, patternText: DNS_LABEL.source, maxLength: 63 }),
    number: { type: 'integer', description: 'the service port', minimum: 1, maximum: 65535 },
    protocol: str('HTTP, HTTP2, GRPC, TCP, …; from the name prefix when omitted', { maxLength: 32 }),
  },
  required: ['name', 'number'],
};

export const SERVICE_BODY: Shape = {
  type: 'object',
  description: 'A service: becomes the ServiceEntry NAME in NAMESPACE, selecting its instances by app=NAME.',
  fields: {
    ports: { type: 'array', items: PORT, minItems: 1, maxItems: 100, description: 'the ports the service exposes' },
    hosts: { type: 'array', items: str('a host name'), minItems: 1, maxItems: 100, description: 'default: NAME.NAMESPACE.svc.cluster.local' },
    location: { type: 'string', enum: ['MESH_INTERNAL', 'MESH_EXTERNAL'], description: 'default MESH_INTERNAL' },
    resolution: { type: 'string', enum: ['STATIC', 'NONE', 'DNS', 'DNS_ROUND_ROBIN'], description: 'default STATIC (instances have IP addresses)' },
    exportTo: { type: 'array', items: str('a namespace, . or *'), maxItems: 100, description: 'namespaces that see the service; default all' },
  },
  required: ['ports'],
};

export const INSTANCE_BODY: Shape = {
  type: 'object',
  description: 'An instance: becomes the WorkloadEntry NAME-ID, labelled app=NAME.',
  fields: {
    address: str('IP address (or host name for DNS services) of the instance'),
    ports: { type: 'map', values: { type: 'integer', minimum: 1, maximum: 65535 }, maxEntries: 100, description: 'service port name → the port the instance listens on' },
    labels: labels('labels of the instance (app is set to the service name)'),
    locality: str('region/zone/subzone'),
    weight: { type: 'integer', minimum: 0, maximum: 4294967295, description: 'load balancing weight' },
    network: str('network of the instance'),
    cluster: str('cluster of the instance (label topology.istio.io/cluster)', { maxLength: 63 }),
    serviceAccount: str('service account of the instance'),
    state: { type: 'string', enum: ['in', 'out'], description: 'in traffic (default) or pulled out' },
  },
  required: ['address'],
};

export const SUBSET: Shape = {
  type: 'object',
  fields: {
    name: str('subset name, e.g. v2', { pattern: DNS_LABEL, patternText: DNS_LABEL.source, maxLength: 63 }),
    labels: labels('instance labels that make up the subset'),
    weight: { type: 'integer', minimum: 0, maximum: 100, description: 'percent of the traffic; the weights add up to 100' },
  },
  required: ['name', 'labels', 'weight'],
};

export const RELEASE_BODY: Shape = {
  type: 'object',
  description: 'A release step: the DestinationRule NAME (subsets) and VirtualService NAME (weighted split).',
  fields: {
    subsets: { type: 'array', items: SUBSET, minItems: 1, maxItems: 16, description: 'subsets and their share of the traffic' },
    match: { type: 'array', items: { type: 'free-object', description: "an Istio HTTPMatchRequest" }, minItems: 1, maxItems: 16, description: 'only requests matching one of these are split; the rest go to the first subset' },
  },
  required: ['subsets'],
};

/** An empty body (`{}`) for pull-in and pull-out. */
export const EMPTY_BODY: Shape = { type: 'object', fields: {} };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

const preview = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
};

/** Checks `value` against `shape`; throws a 400 ApiError naming the first field at fault. */
export function checkShape(value: unknown, shape: Shape, path = ''): void {
  const where = path === '' ? 'the body' : path;
  switch (shape.type) {
    case 'string': {
      if (typeof value !== 'string') throw badRequest(`${where}: expected a string, got ${preview(value)}`, path);
      if (shape.enum !== undefined && !shape.enum.includes(value)) throw badRequest(`${where}: expected one of ${shape.enum.join(', ')}, got ${preview(value)}`, path);
      if (shape.minLength !== undefined && value.length < shape.minLength) throw badRequest(`${where}: must not be empty`, path);
      if (shape.maxLength !== undefined && value.length > shape.maxLength) throw badRequest(`${where}: at most ${shape.maxLength} characters, got ${value.length}`, path);
      if (shape.pattern !== undefined && !shape.pattern.test(value)) throw badRequest(`${where}: ${preview(value)} must be lowercase letters, digits and '-', starting and ending with a letter or digit`, path);
      return;
    }
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) throw badRequest(`${where}: expected an integer, got ${preview(value)}`, path);
      if (value < shape.minimum || value > shape.maximum) throw badRequest(`${where}: must be between ${shape.minimum} and ${shape.maximum}, got ${value}`, path);
      return;
    case 'array':
      if (!Array.isArray(value)) throw badRequest(`${where}: expected a list, got ${preview(value)}`, path);
      if (shape.minItems !== undefined && value.length < shape.minItems) throw badRequest(`${where}: needs at least ${shape.minItems} item${shape.minItems === 1 ? '' : 's'}`, path);
      if (value.length > shape.maxItems) throw badRequest(`${where}: at most ${shape.maxItems} items, got ${value.length}`, path);
      value.forEach((item, i) => checkShape(item, shape.items, `${path}[${i}]`));
      return;
    case 'map': {
      if (!isObject(value)) throw badRequest(`${where}: expected an object of names to values, got ${preview(value)}`, path);
      const keys = Object.keys(value);
      if (keys.length > shape.maxEntries) throw badRequest(`${where}: at most ${shape.maxEntries} entries, got ${keys.length}`, path);
      for (const k of keys) {
        if (shape.keyPattern !== undefined && !shape.keyPattern.test(k)) throw badRequest(`${join(path, k)}: ${preview(k)} is not a valid label name`, join(path, k));
        checkShape(value[k], shape.values, join(path, k));
      }
      return;
    }
    case 'free-object':
      if (!isObject(value)) throw badRequest(`${where}: expected an object, got ${preview(value)}`, path);
      return;
    case 'object': {
      if (!isObject(value)) throw badRequest(`${where}: expected a JSON object, got ${preview(value)}`, path);
      for (const k of Object.keys(value)) {
        if (!(k in shape.fields)) {
          const known = Object.keys(shape.fields);
          throw badRequest(`${join(path, k)}: unknown field${known.length > 0 ? `; expected ${known.join(', ')}` : '; expected no fields'}`, join(path, k));
        }
      }
      for (const r of shape.required ?? []) if (value[r] === undefined) throw badRequest(`${join(path, r)}: required`, join(path, r));
      for (const [k, s] of Object.entries(shape.fields)) if (value[k] !== undefined) checkShape(value[k], s, join(path, k));
      return;
    }
  }
}

/** The shape as an OpenAPI 3 schema object. */
export function toOpenApi(shape: Shape): Record<string, unknown> {
  const d = shape.description !== undefined ? { description: shape.description } : {};
  switch (shape.type) {
    case 'string':
      return {
        type: 'string', ...d,
        ...(shape.enum !== undefined ? { enum: shape.enum } : {}),
        ...(shape.patternText !== undefined ? { pattern: shape.patternText } : {}),
        ...(shape.maxLength !== undefined ? { maxLength: shape.maxLength } : {}),
      };
    case 'integer':
      return { type: 'integer', ...d, minimum: shape.minimum, maximum: shape.maximum };
    case 'array':
      return { type: 'array', ...d, items: toOpenApi(shape.items), ...(shape.minItems !== undefined ? { minItems: shape.minItems } : {}), maxItems: shape.maxItems };
    case 'map':
      return {
        type: 'object', ...d, additionalProperties: toOpenApi(shape.values), maxProperties: shape.maxEntries,
        ...(shape.keyPatternText !== undefined ? { propertyNames: { pattern: shape.keyPatternText } } : {}),
      };
    case 'free-object':
      return { type: 'object', ...d };
    case 'object':
      return {
        type: 'object', ...d,
        properties: Object.fromEntries(Object.entries(shape.fields).map(([k, s]) => [k, toOpenApi(s)])),
        ...(shape.required !== undefined && shape.required.length > 0 ? { required: shape.required } : {}),
        additionalProperties: false,
      };
  }
}
