// A single-pass encoder from proto3 JSON form straight to protobuf bytes, walking the Envoy
// protos' reflection: the pilot encodes every resource it serves, and the general codec's
// JSON → object → bytes path is several times slower on large route tables. The output is
// byte-for-byte what encodeMessage produces (same field order); anything unusual throws
// FastEncodeUnsupported and the caller falls back to encodeMessage.
import protobuf from 'protobufjs';
import { messageType, protoJsonName } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';

export class FastEncodeUnsupported extends Error {}

type Json = unknown;
type JsonObject = Record<string, unknown>;

interface FieldInfo {
  field: protobuf.Field;
  id: number;
  /** Scalar type name (`string`, `int64`, …), or undefined for messages and enums. */
  scalar: string | undefined;
  enumValues: Record<string, number> | undefined;
  message: protobuf.Type | undefined;
  packed: boolean;
  map: boolean;
  keyType: string | undefined;
}

const fieldCache = new WeakMap<protobuf.Type, Map<string, FieldInfo>>();

function fieldsOf(type: protobuf.Type): Map<string, FieldInfo> {
  let m = fieldCache.get(type);
  if (m !== undefined) return m;
  m = new Map();
  for (const field of type.fieldsArray) {
    field.resolve();
    const rt = field.resolvedType;
    const info: FieldInfo = {
      field,
      id: field.id,
      scalar: rt === null ? field.type : undefined,
      enumValues: rt instanceof protobuf.Enum ? rt.values : undefined,
      message: rt instanceof protobuf.Type ? rt : undefined,
      packed: field.repeated && field.packed && rt === null ? field.type !== 'string' && field.type !== 'bytes' : field.repeated && field.packed && rt instanceof protobuf.Enum,
      map: field.map,
      keyType: field.map ? (field as unknown as protobuf.MapField).keyType : undefined,
    };
    m.set(field.name, info);
    const snake = field.name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    if (snake !== field.name) m.set(snake, info);
    const jsonName = protoJsonName(field.name);
    if (jsonName !== field.name) m.set(jsonName, info);
  }
  fieldCache.set(type, m);
  return m;
}

const WIRE: Record<string, number> = {
  double: 1, float: 5, int32: 0, uint32: 0, sint32: 0, fixed32: 5, sfixed32: 5,
  int64: 0, uint64: 0, sint64: 0, fixed64: 1, sfixed64: 1, bool: 0, string: 2, bytes: 2,
};

function writeScalar(w: protobuf.Writer, type: string, v: Json): void {
  switch (type) {
    case 'string':
      if (typeof v !== 'string') throw new FastEncodeUnsupported('string');
      w.string(v);
      return;
    case 'bool':
      if (typeof v !== 'boolean') throw new FastEncodeUnsupported('bool');
      w.bool(v);
      return;
    case 'bytes':
      w.bytes(typeof v === 'string' ? Buffer.from(v, 'base64') : (v as Uint8Array));
      return;
    default: {
      if (typeof v !== 'number' && typeof v !== 'string') throw new FastEncodeUnsupported(type);
      const n = typeof v === 'string' && !/64$/.test(type) ? Number(v) : v;
      (w as unknown as Record<string, (x: unknown) => protobuf.Writer>)[type]!(n);
    }
  }
}

function writeEnum(w: protobuf.Writer, values: Record<string, number>, v: Json): void {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? values[v] : undefined;
  if (n === undefined) throw new FastEncodeUnsupported('enum');
  w.int32(n);
}

const DURATION_RE = /^(-?)(\d+)(?:\.(\d{1,9}))?s$/;

function writeSecondsNanos(w: protobuf.Writer, seconds: number, nanos: number): void {
  w.uint32(8).int64(seconds);
  w.uint32(16).int32(nanos);
}

// protobufjs computes `fullName` on every read (walking the parents and joining): once per type here.
const fullNames = new WeakMap<protobuf.Type, string>();

function fullNameOf(type: protobuf.Type): string {
  let name = fullNames.get(type);
  if (name === undefined) fullNames.set(type, (name = type.fullName));
  return name;
}

/** Writes the body of a message of `type` from its JSON form (well-known types included). */
function writeMessage(w: protobuf.Writer, type: protobuf.Type, json: Json): void {
  const name = fullNameOf(type);
  if (name.startsWith('.google.protobuf.')) {
    switch (name) {
      case '.google.protobuf.Duration': {
        if (typeof json !== 'string') throw new FastEncodeUnsupported('duration');
        const m = DURATION_RE.exec(json);
        if (m === null) throw new FastEncodeUnsupported('duration');
        const sign = m[1] === '-' ? -1 : 1;
        writeSecondsNanos(w, sign * Number(m[2]), sign * Number((m[3] ?? '').padEnd(9, '0')));
        return;
      }
      case '.google.protobuf.DoubleValue': case '.google.protobuf.FloatValue': case '.google.protobuf.Int64Value':
      case '.google.protobuf.UInt64Value': case '.google.protobuf.Int32Value': case '.google.protobuf.UInt32Value':
      case '.google.protobuf.BoolValue': case '.google.protobuf.StringValue': case '.google.protobuf.BytesValue': {
        const value = typeof json === 'object' && json !== null && 'value' in json ? (json as JsonObject)['value'] : json;
        if (value === null || value === undefined) return;
        const f = fieldsOf(type).get('value')!;
        w.uint32((1 << 3) | WIRE[f.scalar!]!);
        writeScalar(w, f.scalar!, value);
        return;
      }
      case '.google.protobuf.Struct':
        if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new FastEncodeUnsupported('struct');
        for (const [k, v] of Object.entries(json as JsonObject)) {
          w.uint32(10).fork().uint32(10).string(k).uint32(18).fork();
          writeValue(w, v);
          w.ldelim().ldelim();
        }
        return;
      case '.google.protobuf.Value':
        writeValue(w, json);
        return;
      case '.google.protobuf.ListValue':
        if (!Array.isArray(json)) throw new FastEncodeUnsupported('list');
        for (const v of json) {
          w.uint32(10).fork();
          writeValue(w, v);
          w.ldelim();
        }
        return;
      case '.google.protobuf.Any': {
        if (json === null || typeof json !== 'object') throw new FastEncodeUnsupported('any');
        const url = (json as JsonObject)['@type'];
        if (typeof url !== 'string') throw new FastEncodeUnsupported('any');
        const inner = messageType(url);
        const body = fullNameOf(inner).startsWith('.google.protobuf.') && 'value' in json ? (json as JsonObject)['value'] : json;
        w.uint32(10).string(url);
        w.uint32(18).fork();
        writeMessage(w, inner, body);
        w.ldelim();
        return;
      }
      case '.google.protobuf.Timestamp':
      case '.google.protobuf.FieldMask':
        throw new FastEncodeUnsupported(name);
      default:
        break; // Empty and other plain messages
    }
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new FastEncodeUnsupported('object');
  const fields = fieldsOf(type);
  const present: [FieldInfo, unknown][] = [];
  for (const key in json as JsonObject) {
    if (key === '@type') continue;
    const value = (json as JsonObject)[key];
    const info = fields.get(key);
    if (info === undefined) throw new FastEncodeUnsupported(`field ${key}`);
    if (value === null || value === undefined) continue;
    present.push([info, value]);
  }
  // protobufjs writes fields in id order; so must we, for identical bytes (and hashes).
  if (present.length > 1) present.sort((a, b) => a[0].id - b[0].id);
  for (const [info, value] of present) writeField(w, info, value);
}

function writeField(w: protobuf.Writer, info: FieldInfo, value: unknown): void {
  const id = info.id;
  if (info.map) {
    if (typeof value !== 'object' || info.keyType !== 'string') throw new FastEncodeUnsupported('map');
    for (const [k, v] of Object.entries(value as JsonObject)) {
      if (v === null || v === undefined) continue;
      w.uint32((id << 3) | 2).fork().uint32(10).string(k);
      writeSingle(w, info, 2, v);
      w.ldelim();
    }
    return;
  }
  if (info.field.repeated) {
    if (!Array.isArray(value)) throw new FastEncodeUnsupported('repeated');
    if (info.packed) {
      if (value.length === 0) return;
      w.uint32((id << 3) | 2).fork();
      for (const v of value) {
        if (info.enumValues !== undefined) writeEnum(w, info.enumValues, v);
        else writeScalar(w, info.scalar!, v);
      }
      w.ldelim();
      return;
    }
    for (const v of value) writeSingle(w, info, id, v);
    return;
  }
  writeSingle(w, info, id, value);
}

function writeSingle(w: protobuf.Writer, info: FieldInfo, id: number, v: unknown): void {
  if (info.message !== undefined) {
    w.uint32((id << 3) | 2).fork();
    writeMessage(w, info.message, v);
    w.ldelim();
  } else if (info.enumValues !== undefined) {
    w.uint32(id << 3);
    writeEnum(w, info.enumValues, v);
  } else {
    w.uint32((id << 3) | WIRE[info.scalar!]!);
    writeScalar(w, info.scalar!, v);
  }
}

function writeValue(w: protobuf.Writer, v: Json): void {
  if (v === null || v === undefined) w.uint32(8).int32(0);
  else if (typeof v === 'number') w.uint32(17).double(v);
  else if (typeof v === 'string') w.uint32(26).string(v);
  else if (typeof v === 'boolean') w.uint32(32).bool(v);
  else if (Array.isArray(v)) {
    w.uint32(50).fork();
    for (const x of v) {
      w.uint32(10).fork();
      writeValue(w, x);
      w.ldelim();
    }
    w.ldelim();
  } else {
    w.uint32(42).fork();
    for (const [k, x] of Object.entries(v as JsonObject)) {
      w.uint32(10).fork().uint32(10).string(k).uint32(18).fork();
      writeValue(w, x);
      w.ldelim().ldelim();
    }
    w.ldelim();
  }
}

/** Encodes a resource in JSON form; throws FastEncodeUnsupported for what it does not handle. */
export function fastEncode(typeUrl: string, json: ProtoJson): Uint8Array {
  const w = protobuf.Writer.create();
  writeMessage(w, messageType(typeUrl), json);
  return w.finish();
}

/** A resource encoded as field 2 (`resources`) of a DiscoveryResponse holding it as an Any. */
export interface EncodedField {
  /** `resources` field: tag, length, Any {type_url, value}. */
  field: Buffer;
  /** The resource's own bytes (a view into `field`). */
  message: Buffer;
}

/**
 * fastEncode, with the Any and the response field written around the resource by the same
 * writer: one buffer per resource instead of a copy for each wrapping. Throws as fastEncode.
 */
export function fastEncodeField(typeUrl: string, json: ProtoJson): EncodedField {
  const w = protobuf.Writer.create();
  w.uint32(18).fork().uint32(10).string(typeUrl).uint32(18).fork();
  writeMessage(w, messageType(typeUrl), json);
  w.ldelim().ldelim();
  const out = w.finish();
  const field = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  // Walk the two headers to where the resource starts: tag 2, length, tag 1 + type_url, tag 2, length.
  let pos = 1;
  pos = skipVarint(field, pos);
  pos++; // Any.type_url tag
  const [typeUrlLength, afterLength] = readVarint(field, pos);
  pos = afterLength + typeUrlLength + 1; // Any.value tag
  const [length, start] = readVarint(field, pos);
  if (start + length !== field.length) throw new FastEncodeUnsupported(`${typeUrl}: unexpected Any framing`);
  return { field, message: field.subarray(start) };
}

function readVarint(buf: Uint8Array, pos: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (;;) {
    const b = buf[pos++];
    if (b === undefined) throw new FastEncodeUnsupported('truncated varint');
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
}

function skipVarint(buf: Uint8Array, pos: number): number {
  return readVarint(buf, pos)[1];
}
