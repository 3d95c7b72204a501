// Checks an EnvoyFilter patch value against the Envoy message its applyTo patches, as Istio
// does by building the xDS object: wrong types, unknown enum values and two members of one
// oneof are errors. Like Istio, unknown fields are not errors (Envoy moves faster than any
// one build's protos), and Any payloads of types Sextant has no proto for are not inspected.
import protobuf from 'protobufjs';
import { ENVOY_FILTER_VALUE_TYPES, messageType } from '../envoy/index.ts';
import type { Issues } from './schema.ts';

const TYPE_BY_APPLY_TO = ENVOY_FILTER_VALUE_TYPES;

/** Nesting bound: patch values are small; a deeper value is malformed or hostile. */
const MAX_DEPTH = 64;

const WRAPPERS = new Set([
  '.google.protobuf.DoubleValue', '.google.protobuf.FloatValue', '.google.protobuf.Int64Value',
  '.google.protobuf.UInt64Value', '.google.protobuf.Int32Value', '.google.protobuf.UInt32Value',
  '.google.protobuf.BoolValue', '.google.protobuf.StringValue', '.google.protobuf.BytesValue',
]);
const DURATION = /^-?\d+(?:\.\d{1,9})?s$/;
const INTEGER = /^-?\d+$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function lookup(name: string): protobuf.Type | undefined {
  try {
    return messageType(name);
  } catch {
    return undefined;
  }
}

function snakeToCamel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Reports each problem of value as the Envoy message for applyTo, at path. */
export function checkPatchValue(applyTo: string, value: unknown, path: string, issues: Issues): void {
  const name = TYPE_BY_APPLY_TO[applyTo];
  if (name === undefined) return;
  const type = lookup(name);
  if (type === undefined) return;
  const prefix = `Envoy filter: patch value is not a valid ${name}`;
  checkMessage(type, value, path, (p, d) => issues.add(p, `${prefix}: ${d}`), 0);
}

type Report = (path: string, detail: string) => void;

function checkMessage(type: protobuf.Type, json: unknown, path: string, report: Report, depth: number): void {
  if (depth > MAX_DEPTH) {
    report(path, `nested more than ${MAX_DEPTH} levels`);
    return;
  }
  const name = type.fullName;
  if (WRAPPERS.has(name)) {
    const inner = isObject(json) && 'value' in json ? json['value'] : json;
    const field = type.fields['value'];
    if (field !== undefined) checkScalar(field, inner, path, report);
    return;
  }
  switch (name) {
    case '.google.protobuf.Duration':
      if (typeof json !== 'string' || !DURATION.test(json)) report(path, `expected a duration such as "1.5s", got ${JSON.stringify(json)}`);
      return;
    case '.google.protobuf.Timestamp':
      if (typeof json !== 'string' || Number.isNaN(Date.parse(json))) report(path, 'expected an RFC 3339 timestamp');
      return;
    case '.google.protobuf.Struct':
      if (!isObject(json)) report(path, 'expected an object');
      return;
    case '.google.protobuf.Value':
      return;
    case '.google.protobuf.ListValue':
      if (!Array.isArray(json)) report(path, 'expected a list');
      return;
    case '.google.protobuf.Any': {
      if (!isObject(json)) {
        report(path, 'expected an object with "@type"');
        return;
      }
      const url = json['@type'];
      if (typeof url !== 'string' || url === '') {
        report(path, 'an Any needs "@type"');
        return;
      }
      const inner = lookup(url.slice(url.lastIndexOf('/') + 1));
      if (inner === undefined) return; // a type Sextant has no proto for: not inspected
      const wellKnown = inner.fullName.startsWith('.google.protobuf.') && 'value' in json;
      checkMessage(inner, wellKnown ? json['value'] : json, path, report, depth + 1);
      return;
    }
    default:
      break;
  }
  if (!isObject(json)) {
    report(path, `expected an object for ${name.slice(1)}, got ${Array.isArray(json) ? 'a list' : JSON.stringify(json)}`);
    return;
  }
  const setOneofs = new Map<string, string>();
  for (const key in json) {
    if (key === '@type') continue;
    const field = type.fields[key] ?? type.fields[snakeToCamel(key)];
    if (field === undefined) continue; // unknown fields are dropped, as Istio does
    const value = json[key];
    if (value === null || value === undefined) continue;
    const p = `${path}.${key}`;
    const oneof = field.partOf;
    if (oneof !== null && !(oneof.name.startsWith('_') && oneof.fieldsArray.length === 1)) {
      const other = setOneofs.get(oneof.name);
      if (other !== undefined) report(p, `only one of ${other} and ${key} may be set (oneof ${oneof.name})`);
      else setOneofs.set(oneof.name, key);
    }
    field.resolve();
    if (field.map) {
      if (!isObject(value)) {
        report(p, 'expected a map (an object)');
        continue;
      }
      for (const k in value) checkField(field, value[k], `${p}[${k}]`, report, depth);
    } else if (field.repeated) {
      if (!Array.isArray(value)) {
        report(p, 'expected a list');
        continue;
      }
      value.forEach((v, i) => checkField(field, v, `${p}[${i}]`, report, depth));
    } else {
      checkField(field, value, p, report, depth);
    }
  }
}

function checkField(field: protobuf.Field, value: unknown, path: string, report: Report, depth: number): void {
  const t = field.resolvedType;
  if (t instanceof protobuf.Type) {
    checkMessage(t, value, path, report, depth + 1);
    return;
  }
  if (t instanceof protobuf.Enum) {
    if (typeof value === 'string' ? !(value in t.values) : !(typeof value === 'number' && Number.isInteger(value))) {
      report(path, `unknown enum value ${JSON.stringify(value)}: expected one of ${Object.keys(t.values).join(', ')}`);
    }
    return;
  }
  checkScalar(field, value, path, report);
}

function checkScalar(field: protobuf.Field, value: unknown, path: string, report: Report): void {
  switch (field.type) {
    case 'string':
      if (typeof value !== 'string') report(path, `expected a string, got ${JSON.stringify(value)}`);
      return;
    case 'bytes':
      if (typeof value !== 'string') report(path, 'expected base64 bytes as a string');
      return;
    case 'bool':
      if (typeof value !== 'boolean') report(path, `expected true or false, got ${JSON.stringify(value)}`);
      return;
    case 'double':
    case 'float':
      if (typeof value !== 'number' && !(typeof value === 'string' && (value === 'NaN' || value === 'Infinity' || value === '-Infinity' || !Number.isNaN(Number(value))))) {
        report(path, `expected a number, got ${JSON.stringify(value)}`);
      }
      return;
    default: {
      // Integer types; 64-bit ones may be strings in proto JSON.
      const ok = (typeof value === 'number' && Number.isInteger(value)) || (typeof value === 'string' && INTEGER.test(value));
      const unsigned = field.type.startsWith('u') || field.type.startsWith('fixed');
      if (!ok) report(path, `expected an integer, got ${JSON.stringify(value)}`);
      else if (unsigned && Number(value) < 0) report(path, `expected a non-negative integer, got ${JSON.stringify(value)}`);
    }
  }
}
