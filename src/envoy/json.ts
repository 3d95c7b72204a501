// Proto3 JSON mapping between Envoy's JSON form (what generators write and config_dump
// shows) and protobufjs messages: Duration as "1.5s", wrappers as bare values, Struct as
// plain JSON, Any as {"@type": url, ...fields}, enums by name, int64 as numbers.
import protobuf from 'protobufjs';

type Json = unknown;
type JsonObject = Record<string, unknown>;

const WRAPPERS = new Set([
  '.google.protobuf.DoubleValue', '.google.protobuf.FloatValue', '.google.protobuf.Int64Value',
  '.google.protobuf.UInt64Value', '.google.protobuf.Int32Value', '.google.protobuf.UInt32Value',
  '.google.protobuf.BoolValue', '.google.protobuf.StringValue', '.google.protobuf.BytesValue',
]);

/**
 * Proto3 JSON's name for a field: protobufjs keeps `_` before a digit (`consecutive_5xx`),
 * the JSON mapping drops it (`consecutive5xx`), as Envoy's config_dump prints it.
 */
export function protoJsonName(fieldName: string): string {
  return fieldName.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

const fieldIndex = new WeakMap<protobuf.Type, Map<string, protobuf.Field>>();

/** A field by its protobufjs name, its proto3 JSON name or its snake_case proto name. */
function fieldByName(type: protobuf.Type, key: string): protobuf.Field | undefined {
  let index = fieldIndex.get(type);
  if (!index) {
    index = new Map();
    for (const f of type.fieldsArray) {
      index.set(f.name, f);
      index.set(protoJsonName(f.name), f);
      index.set(f.name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), f);
    }
    fieldIndex.set(type, index);
  }
  return index.get(key);
}

/** Resolves a type URL or name to a Type in `root`; throws with the URL when unknown. */
export type TypeLookup = (url: string) => protobuf.Type;

/** JSON form → plain object protobufjs's fromObject accepts. `at` names the path for errors. */
export function fromJson(type: protobuf.Type, json: Json, lookup: TypeLookup, at: string): JsonObject {
  const wk = fromWellKnown(type, json, lookup, at);
  if (wk !== undefined) return wk;
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${at}: expected an object for ${type.fullName.slice(1)}`);
  }
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(json as JsonObject)) {
    if (key === '@type') continue;
    const field = fieldByName(type, key);
    if (!field) throw new Error(`${at}.${key}: no such field in ${type.fullName.slice(1)}`);
    if (value === null || value === undefined) continue;
    field.resolve();
    const path = `${at}.${key}`;
    if (field.map) {
      if (typeof value !== 'object') throw new Error(`${path}: expected a map`);
      const m: JsonObject = {};
      for (const [k, v] of Object.entries(value as JsonObject)) m[k] = fieldFromJson(field, v, lookup, `${path}.${k}`);
      out[field.name] = m;
    } else if (field.repeated) {
      if (!Array.isArray(value)) throw new Error(`${path}: expected a list`);
      out[field.name] = value.map((v, i) => fieldFromJson(field, v, lookup, `${path}[${i}]`));
    } else {
      out[field.name] = fieldFromJson(field, value, lookup, path);
    }
  }
  return out;
}

function fieldFromJson(field: protobuf.Field, value: Json, lookup: TypeLookup, at: string): unknown {
  const t = field.resolvedType;
  if (t instanceof protobuf.Type) return fromJson(t, value, lookup, at);
  if (t instanceof protobuf.Enum) {
    if (typeof value === 'string' && !(value in t.values)) throw new Error(`${at}: unknown enum value ${value}`);
    return value;
  }
  return value;
}

function fromWellKnown(type: protobuf.Type, json: Json, lookup: TypeLookup, at: string): JsonObject | undefined {
  const name = type.fullName;
  if (WRAPPERS.has(name)) {
    if (typeof json === 'object' && json !== null && 'value' in json) return json as JsonObject;
    return { value: json };
  }
  switch (name) {
    case '.google.protobuf.Duration':
      return parseDuration(json, at);
    case '.google.protobuf.Timestamp': {
      const ms = typeof json === 'string' ? Date.parse(json) : NaN;
      if (Number.isNaN(ms)) throw new Error(`${at}: expected an RFC 3339 timestamp`);
      return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
    }
    case '.google.protobuf.Struct':
      if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error(`${at}: expected an object`);
      return { fields: Object.fromEntries(Object.entries(json).map(([k, v]) => [k, valueFromJson(v)])) };
    case '.google.protobuf.Value':
      return valueFromJson(json);
    case '.google.protobuf.ListValue':
      if (!Array.isArray(json)) throw new Error(`${at}: expected a list`);
      return { values: json.map(valueFromJson) };
    case '.google.protobuf.Any': {
      if (json === null || typeof json !== 'object') throw new Error(`${at}: expected an Any object`);
      const url = (json as JsonObject)['@type'];
      if (typeof url !== 'string') throw new Error(`${at}: Any without @type`);
      let inner: protobuf.Type;
      try {
        inner = lookup(url);
      } catch {
        throw new Error(`${at}: unknown type ${url}`);
      }
      const body = isWellKnown(inner) && 'value' in json ? (json as JsonObject)['value'] : json;
      const obj = fromJson(inner, body, lookup, at);
      return { type_url: url, typeUrl: url, value: inner.encode(inner.fromObject(obj)).finish() };
    }
    default:
      return undefined;
  }
}

function isWellKnown(t: protobuf.Type): boolean {
  return WRAPPERS.has(t.fullName) || ['.google.protobuf.Duration', '.google.protobuf.Timestamp', '.google.protobuf.Struct', '.google.protobuf.Value', '.google.protobuf.ListValue'].includes(t.fullName);
}

function valueFromJson(v: Json): JsonObject {
  if (v === null || v === undefined) return { nullValue: 0 };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(valueFromJson) } };
  return { structValue: { fields: Object.fromEntries(Object.entries(v as JsonObject).map(([k, x]) => [k, valueFromJson(x)])) } };
}

const DURATION_RE = /^(-?)(\d+)(?:\.(\d{1,9}))?s$/;

/** Parses proto3 JSON durations ("1s", "0.250s"). */
export function parseDuration(json: Json, at: string): JsonObject {
  if (typeof json === 'object' && json !== null && ('seconds' in json || 'nanos' in json)) return json as JsonObject;
  const m = typeof json === 'string' ? DURATION_RE.exec(json) : null;
  if (!m) throw new Error(`${at}: expected a duration such as "1.5s", got ${JSON.stringify(json)}`);
  const sign = m[1] === '-' ? -1 : 1;
  const nanos = Number((m[3] ?? '').padEnd(9, '0'));
  return { seconds: sign * Number(m[2]), nanos: sign * nanos };
}

/** Decoded protobufjs message → JSON form. */
export function toJson(type: protobuf.Type, msg: protobuf.Message | JsonObject, lookup: TypeLookup): Json {
  const wk = toWellKnown(type, msg as JsonObject, lookup);
  if (wk !== undefined) return wk;
  const out: JsonObject = {};
  const m = msg as JsonObject;
  for (const field of type.fieldsArray) {
    if (!Object.prototype.hasOwnProperty.call(m, field.name)) continue;
    const value = m[field.name];
    if (value === null || value === undefined) continue;
    field.resolve();
    if (field.map) {
      const entries = Object.entries(value as JsonObject);
      if (entries.length === 0) continue;
      out[protoJsonName(field.name)] = Object.fromEntries(entries.map(([k, v]) => [k, fieldToJson(field, v, lookup)]));
    } else if (field.repeated) {
      const list = value as unknown[];
      if (list.length === 0) continue;
      out[protoJsonName(field.name)] = list.map((v) => fieldToJson(field, v, lookup));
    } else {
      out[protoJsonName(field.name)] = fieldToJson(field, value, lookup);
    }
  }
  return out;
}

function fieldToJson(field: protobuf.Field, value: unknown, lookup: TypeLookup): unknown {
  const t = field.resolvedType;
  if (t instanceof protobuf.Type) return toJson(t, value as JsonObject, lookup);
  if (t instanceof protobuf.Enum) return typeof value === 'number' ? (t.valuesById[value] ?? value) : value;
  return scalarToJson(value);
}

function scalarToJson(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (typeof value === 'object' && value !== null && 'low' in value && 'high' in value) {
    const l = value as { low: number; high: number; unsigned?: boolean };
    return l.high * 0x100000000 + (l.unsigned || l.low >= 0 ? l.low >>> 0 : l.low >>> 0);
  }
  return value;
}

function toWellKnown(type: protobuf.Type, m: JsonObject, lookup: TypeLookup): Json | undefined {
  const name = type.fullName;
  if (WRAPPERS.has(name)) return scalarToJson(m['value'] ?? defaultWrapperValue(name));
  switch (name) {
    case '.google.protobuf.Duration': {
      const s = Number(scalarToJson(m['seconds'] ?? 0));
      const n = Number(m['nanos'] ?? 0);
      return formatDuration(s, n);
    }
    case '.google.protobuf.Timestamp': {
      const s = Number(scalarToJson(m['seconds'] ?? 0));
      return new Date(s * 1000 + Number(m['nanos'] ?? 0) / 1e6).toISOString();
    }
    case '.google.protobuf.Struct':
      return Object.fromEntries(Object.entries((m['fields'] ?? {}) as JsonObject).map(([k, v]) => [k, valueToJson(v as JsonObject)]));
    case '.google.protobuf.Value':
      return valueToJson(m);
    case '.google.protobuf.ListValue':
      return ((m['values'] ?? []) as JsonObject[]).map(valueToJson);
    case '.google.protobuf.Any': {
      const url = String(m['type_url'] ?? m['typeUrl'] ?? '');
      const inner = lookup(url);
      const decoded = inner.decode((m['value'] ?? new Uint8Array()) as Uint8Array);
      const body = toJson(inner, decoded, lookup);
      if (isWellKnown(inner)) return { '@type': url, value: body };
      return { '@type': url, ...(body as JsonObject) };
    }
    default:
      return undefined;
  }
}

function defaultWrapperValue(name: string): unknown {
  if (name === '.google.protobuf.BoolValue') return false;
  if (name === '.google.protobuf.StringValue') return '';
  if (name === '.google.protobuf.BytesValue') return '';
  return 0;
}

function valueToJson(v: JsonObject): Json {
  if (Object.hasOwn(v, 'numberValue')) return v['numberValue'];
  if (Object.hasOwn(v, 'stringValue')) return v['stringValue'];
  if (Object.hasOwn(v, 'boolValue')) return v['boolValue'];
  if (Object.hasOwn(v, 'structValue')) return Object.fromEntries(Object.entries(((v['structValue'] as JsonObject)['fields'] ?? {}) as JsonObject).map(([k, x]) => [k, valueToJson(x as JsonObject)]));
  if (Object.hasOwn(v, 'listValue')) return (((v['listValue'] as JsonObject)['values'] ?? []) as JsonObject[]).map(valueToJson);
  return null;
}

/** Formats seconds+nanos as proto3 JSON ("10s", "0.250s"). */
export function formatDuration(seconds: number, nanos: number): string {
  if (nanos === 0) return `${seconds}s`;
  const total = seconds + nanos / 1e9;
  return `${Number(total.toFixed(9))}s`;
}
