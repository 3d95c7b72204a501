// The protoc-gen-validate (PGV) constraints Envoy's protos annotate — `(validate.rules)` on
// fields, `(validate.required)` on oneofs — checked on a resource as Envoy would receive it.
// No Envoy binary runs here; this is how the pilot's output is held to what Envoy accepts.
//
// The shared root (protos.ts) may be rebuilt from a JSON descriptor that keeps only
// protobufjs's flattened `options`, which lose lists and empty messages (`duration.gt {}`);
// so the rules come from a root of our own, parsed from the .proto text, whose reflection
// objects keep `parsedOptions` whole.
import { existsSync, readdirSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import protobuf from 'protobufjs';
import { encodeMessage } from './codec.ts';
import type { ProtoJson } from './codec.ts';
import { formatDuration, fromJson, protoJsonName, toJson } from './json.ts';
import { PROTO_FILES, PROTO_INCLUDE_DIRS } from './protos.ts';

/** One value that breaks one of Envoy's validation rules. */
export interface RuleViolation {
  /** Where, in proto3 JSON names from the message's root: `RouteConfiguration.virtualHosts[0].domains`. */
  readonly path: string;
  /** The rule as the proto writes it: `string.min_len`, `repeated.min_items`, `(validate.required)`. */
  readonly rule: string;
  readonly message: string;
}

/**
 * A rule this checker cannot evaluate, met on a value it applies to (an unset proto3 scalar
 * counts, at its default, as PGV checks it): a clean report proves nothing about this rule.
 */
export interface UnimplementedRule {
  readonly path: string;
  readonly rule: string;
}

/** A value whose content could not be checked (an Any of a type not in Envoy's protos here). */
export interface UncheckedValue {
  readonly path: string;
  readonly reason: string;
}

export interface RuleReport {
  readonly violations: RuleViolation[];
  readonly unimplemented: UnimplementedRule[];
  readonly unchecked: UncheckedValue[];
  /** How many (value, rule) pairs were evaluated: shows a clean report was not a vacuous one. */
  evaluated: number;
}

/** `path: message (rule)`, one line per violation. */
export function formatRuleViolation(v: RuleViolation): string {
  return `${v.path}: ${v.message} (${v.rule})`;
}

/**
 * Checks a resource in the JSON form the pilot generates: it is encoded with the shared codec
 * (as the pilot puts it on the wire), decoded with Envoy's protos and checked, Any payloads
 * included.
 */
export function checkResource(typeUrl: string, json: ProtoJson): RuleReport {
  return checkEncoded(typeUrl, encodeMessage(typeUrl, json));
}

/** Checks protobuf bytes of the given type (a type URL or fully qualified name). */
export function checkEncoded(typeUrl: string, bytes: Uint8Array): RuleReport {
  const type = ruleType(typeUrl);
  if (!type) throw new Error(`${typeUrl}: not a type in Envoy's protos`);
  return checkDecoded(type, type.decode(bytes));
}

/**
 * Checks a decoded protobufjs message against the rules on its Type. The Type must come from
 * a root parsed from .proto text with `keepCase` (as `ruleType` returns), where fields keep
 * their `parsedOptions`; a Type rebuilt from a JSON descriptor has none, and would pass anything.
 */
export function checkDecoded(type: protobuf.Type, message: protobuf.Message | Record<string, unknown>): RuleReport {
  const report: RuleReport = { violations: [], unimplemented: [], unchecked: [], evaluated: 0 };
  checkMessage(type, message as Record<string, unknown>, type.name, report);
  return report;
}

// ---- the rules root ----

let root: protobuf.Root | undefined;
const loadedPackageDirs = new Set<string>();

function resolveImport(_origin: string, target: string): string {
  if (path.isAbsolute(target)) return target;
  for (const dir of PROTO_INCLUDE_DIRS) {
    const candidate = path.join(dir, target);
    if (existsSync(candidate)) return candidate;
  }
  return target;
}

function rulesRoot(): protobuf.Root {
  if (!root) {
    const r = new protobuf.Root();
    r.resolvePath = resolveImport;
    r.loadSync(PROTO_FILES.filter((f) => PROTO_INCLUDE_DIRS.some((d) => existsSync(path.join(d, f)))), { keepCase: true });
    r.resolveAll();
    root = r;
  }
  return root;
}

function lookup(name: string): protobuf.Type | undefined {
  try {
    return rulesRoot().lookupType(`.${name}`);
  } catch {
    return undefined;
  }
}

/**
 * The Type (with its rules) for a type URL or name; an extension the shared protos do not
 * list is loaded from its package directory on first use, as the pilot does for EnvoyFilter values.
 */
export function ruleType(nameOrUrl: string): protobuf.Type | undefined {
  const name = nameOrUrl.slice(nameOrUrl.lastIndexOf('/') + 1);
  const found = lookup(name);
  if (found) return found;
  const pkg = name.split('.').slice(0, -1);
  for (const includeDir of PROTO_INCLUDE_DIRS) {
    const dir = path.join(includeDir, ...pkg);
    if (!existsSync(dir) || loadedPackageDirs.has(dir)) continue;
    loadedPackageDirs.add(dir);
    const files = readdirSync(dir).filter((f) => f.endsWith('.proto')).map((f) => path.join(...pkg, f));
    try {
      rulesRoot().loadSync(files, { keepCase: true });
      rulesRoot().resolveAll();
    } catch {
      // a package that does not load leaves the type unknown: reported as unchecked
    }
  }
  return lookup(name);
}

// ---- rules as protobufjs keeps them ----

type Rules = { readonly [key: string]: unknown };

/** A reflection object's options as the parser kept them: one object per option statement. */
function parsedOptions(obj: protobuf.ReflectionObject): Rules[] {
  const parsed = obj.parsedOptions as unknown;
  return Array.isArray(parsed) ? (parsed as Rules[]) : [];
}

const fieldRulesCache = new WeakMap<protobuf.Field, Rules | null>();

/** The `(validate.rules)` of a field, merged from each option statement that sets part of it. */
function fieldRules(field: protobuf.Field): Rules | undefined {
  let rules = fieldRulesCache.get(field);
  if (rules === undefined) {
    rules = null;
    for (const option of parsedOptions(field)) {
      const value = option['(validate.rules)'];
      if (value !== undefined && value !== null && typeof value === 'object') rules = deepMerge(rules ?? {}, value as Rules);
    }
    fieldRulesCache.set(field, rules);
  }
  return rules ?? undefined;
}

function deepMerge(a: Rules, b: Rules): Rules {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isRules(prev) && isRules(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

function isRules(v: unknown): v is Rules {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function hasOption(obj: protobuf.ReflectionObject, name: string): boolean {
  return parsedOptions(obj).some((o) => o[name] === true) || obj.options?.[name] === true;
}

/** A repeated rule value (`in`, `not_in`) written once or as a list. */
function list(v: unknown): unknown[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

// ---- the walk ----

type Msg = Record<string, unknown>;

const WRAPPER_KINDS: Readonly<Record<string, string>> = {
  '.google.protobuf.DoubleValue': 'double', '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.Int64Value': 'int64', '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int32Value': 'int32', '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.BoolValue': 'bool', '.google.protobuf.StringValue': 'string',
  '.google.protobuf.BytesValue': 'bytes',
};
const TYPED_STRUCTS = new Set(['.udpa.type.v1.TypedStruct', '.xds.type.v3.TypedStruct']);

function isSet(msg: Msg, field: protobuf.Field): boolean {
  const v = msg[field.name];
  if (field.map) return v !== null && typeof v === 'object' && Object.keys(v).length > 0;
  if (field.repeated) return Array.isArray(v) && v.length > 0;
  return Object.hasOwn(msg, field.name) && v !== null && v !== undefined;
}

function checkMessage(type: protobuf.Type, msg: Msg, at: string, report: RuleReport): void {
  if (type.fullName === '.google.protobuf.Any') return checkAnyPayload(msg, at, report);
  // The well-known types carry no rules; Any above is the one whose content matters.
  if (type.fullName.startsWith('.google.protobuf.')) return;
  if (hasOption(type, '(validate.disabled)') || hasOption(type, '(validate.ignored)')) return;
  for (const oneof of type.oneofsArray) {
    if (!hasOption(oneof, '(validate.required)')) continue;
    report.evaluated++;
    if (!oneof.fieldsArray.some((f) => isSet(msg, f))) {
      const names = oneof.fieldsArray.map((f) => protoJsonName(f.name)).join(', ');
      report.violations.push({ path: at, rule: '(validate.required)', message: `one of ${names} must be set (oneof ${oneof.name})` });
    }
  }
  for (const field of type.fieldsArray) {
    // A oneof member (or proto3 `optional` field) is validated only when it is the one set.
    if (field.partOf && !isSet(msg, field)) continue;
    field.resolve();
    const fieldAt = `${at}.${protoJsonName(field.name)}`;
    const rules = fieldRules(field);
    if (field.map) checkMap(field, rules, (msg[field.name] ?? {}) as Msg, fieldAt, report);
    else if (field.repeated) checkRepeated(field, rules, (msg[field.name] ?? []) as unknown[], fieldAt, report);
    else checkValue(field, rules, Object.hasOwn(msg, field.name) ? msg[field.name] : field.defaultValue, isSet(msg, field), fieldAt, report);
  }
}

/** One value of a field (a singular field, a list item or a map value) against its rules. */
function checkValue(field: protobuf.Field, rules: Rules | undefined, value: unknown, present: boolean, at: string, report: RuleReport): void {
  const t = field.resolvedType;
  if (t instanceof protobuf.Type) {
    const msg = present ? (value as Msg) : undefined;
    let skip = false;
    for (const [kind, r] of Object.entries(rules ?? {})) {
      report.evaluated++;
      if (!isRules(r)) {
        report.unimplemented.push({ path: at, rule: kind });
        continue;
      }
      if (kind === 'message') {
        for (const key of Object.keys(r)) if (key !== 'required' && key !== 'skip') report.unimplemented.push({ path: at, rule: `message.${key}` });
        if (r['required'] === true && !msg) report.violations.push({ path: at, rule: 'message.required', message: 'value is required' });
        if (r['skip'] === true) skip = true;
      } else if (kind === 'duration' && t.fullName === '.google.protobuf.Duration') {
        checkTime('duration', r, msg, at, report);
      } else if (kind === 'timestamp' && t.fullName === '.google.protobuf.Timestamp') {
        checkTime('timestamp', r, msg, at, report);
      } else if (kind === 'any' && t.fullName === '.google.protobuf.Any') {
        checkAnyRules(r, msg, at, report);
      } else if (kind === 'any' && Object.keys(r).every((k) => k === 'required')) {
        // `any.required` on a field that is not an Any (ExtensionConfigSource.config_source):
        // PGV generates the presence check of message.required for it
        if (r['required'] === true && !msg) report.violations.push({ path: at, rule: 'any.required', message: 'value is required' });
      } else if (WRAPPER_KINDS[t.fullName] === kind) {
        // Rules on a wrapper apply to the wrapped value, when the wrapper is set.
        if (msg) {
          const inner = t.fields['value'];
          if (inner) checkScalar(kind, r, Object.hasOwn(msg, 'value') ? msg['value'] : inner.defaultValue, at, report);
        }
      } else {
        report.unimplemented.push({ path: at, rule: `${kind} on ${t.fullName.slice(1)}` });
      }
    }
    if (msg && !skip) checkMessage(t, msg, at, report);
    return;
  }
  for (const [kind, r] of Object.entries(rules ?? {})) {
    report.evaluated++;
    if (!isRules(r)) {
      report.unimplemented.push({ path: at, rule: kind });
      continue;
    }
    if (t instanceof protobuf.Enum) {
      if (kind === 'enum') checkEnum(t, r, Number(value ?? 0), at, report);
      else report.unimplemented.push({ path: at, rule: `${kind} on enum ${t.fullName.slice(1)}` });
    } else {
      checkScalar(kind, r, value, at, report);
    }
  }
}

function checkRepeated(field: protobuf.Field, rules: Rules | undefined, items: unknown[], at: string, report: RuleReport): void {
  let itemRules: Rules | undefined;
  for (const [kind, r] of Object.entries(rules ?? {})) {
    report.evaluated++;
    if (kind !== 'repeated' || !isRules(r)) {
      report.unimplemented.push({ path: at, rule: `${kind} on a repeated field` });
      continue;
    }
    for (const key of Object.keys(r)) if (!REPEATED_KEYS.has(key)) report.unimplemented.push({ path: at, rule: `repeated.${key}` });
    if (r['ignore_empty'] === true && items.length === 0) return;
    const min = r['min_items'];
    if (min !== undefined && items.length < Number(min)) report.violations.push({ path: at, rule: 'repeated.min_items', message: `value must contain at least ${String(min)} item(s)` });
    const max = r['max_items'];
    if (max !== undefined && items.length > Number(max)) report.violations.push({ path: at, rule: 'repeated.max_items', message: `value must contain no more than ${String(max)} item(s)` });
    if (r['unique'] === true) {
      const seen = new Set<string>();
      for (const [i, item] of items.entries()) {
        const key = uniqueKey(item);
        if (seen.has(key)) report.violations.push({ path: `${at}[${i}]`, rule: 'repeated.unique', message: 'repeated value must contain unique items' });
        seen.add(key);
      }
    }
    if (isRules(r['items'])) itemRules = r['items'];
  }
  for (const [i, item] of items.entries()) checkValue(field, itemRules, item, true, `${at}[${i}]`, report);
}

function uniqueKey(v: unknown): string {
  if (v instanceof Uint8Array) return `b:${Buffer.from(v).toString('base64')}`;
  if (typeof v === 'object' && v !== null) return `o:${JSON.stringify(v)}`;
  return `${typeof v}:${String(v)}`;
}

function checkMap(field: protobuf.Field, rules: Rules | undefined, entries: Msg, at: string, report: RuleReport): void {
  const keys = Object.keys(entries);
  let keyRules: Rules | undefined;
  let valueRules: Rules | undefined;
  let noSparse = false;
  for (const [kind, r] of Object.entries(rules ?? {})) {
    report.evaluated++;
    if (kind !== 'map' || !isRules(r)) {
      report.unimplemented.push({ path: at, rule: `${kind} on a map field` });
      continue;
    }
    for (const key of Object.keys(r)) if (!MAP_KEYS.has(key)) report.unimplemented.push({ path: at, rule: `map.${key}` });
    if (r['ignore_empty'] === true && keys.length === 0) return;
    const min = r['min_pairs'];
    if (min !== undefined && keys.length < Number(min)) report.violations.push({ path: at, rule: 'map.min_pairs', message: `value must contain at least ${String(min)} pair(s)` });
    const max = r['max_pairs'];
    if (max !== undefined && keys.length > Number(max)) report.violations.push({ path: at, rule: 'map.max_pairs', message: `value must contain no more than ${String(max)} pair(s)` });
    noSparse = r['no_sparse'] === true;
    if (isRules(r['keys'])) keyRules = r['keys'];
    if (isRules(r['values'])) valueRules = r['values'];
  }
  for (const key of keys) {
    const entryAt = `${at}[${JSON.stringify(key)}]`;
    if (keyRules) {
      for (const [kind, r] of Object.entries(keyRules)) {
        report.evaluated++;
        if (isRules(r)) checkScalar(kind, r, mapKey(field instanceof protobuf.MapField ? field.keyType : 'string', key), `${entryAt} (key)`, report);
        else report.unimplemented.push({ path: entryAt, rule: `map.keys.${kind}` });
      }
    }
    const value = entries[key];
    const present = value !== null && value !== undefined;
    if (noSparse && !present && field.resolvedType instanceof protobuf.Type) {
      report.violations.push({ path: entryAt, rule: 'map.no_sparse', message: 'map values cannot be unset' });
    }
    checkValue(field, valueRules, present ? value : field.defaultValue, present, entryAt, report);
  }
}

/** A decoded map key as its value: protobufjs keys 64-bit integers by an 8-character hash. */
function mapKey(keyType: string, key: string): unknown {
  if (keyType === 'string') return key;
  if (keyType === 'bool') return key === 'true';
  if (/^-?\d+$/.test(key)) return BigInt(key);
  return BigInt(protobuf.util.longFromHash(key, keyType === 'uint64' || keyType === 'fixed64').toString());
}

// ---- scalars ----

const NUMERIC_KINDS = new Set(['float', 'double', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64']);
const NUMERIC_KEYS = new Set(['const', 'lt', 'lte', 'gt', 'gte', 'in', 'not_in', 'ignore_empty']);
// email, uri and uri_ref are not implemented: Envoy's protos do not use them, and their
// exact grammar (Go's net/mail and net/url) is not worth guessing at. They are reported.
const STRING_KEYS = new Set(['const', 'len', 'min_len', 'max_len', 'len_bytes', 'min_bytes', 'max_bytes', 'pattern', 'prefix', 'suffix', 'contains', 'not_contains', 'in', 'not_in', 'hostname', 'ip', 'ipv4', 'ipv6', 'address', 'uuid', 'well_known_regex', 'strict', 'ignore_empty']);
const BYTES_KEYS = new Set(['const', 'len', 'min_len', 'max_len', 'pattern', 'prefix', 'suffix', 'contains', 'in', 'not_in', 'ip', 'ipv4', 'ipv6', 'ignore_empty']);
const ENUM_KEYS = new Set(['const', 'defined_only', 'in', 'not_in']);
const REPEATED_KEYS = new Set(['min_items', 'max_items', 'unique', 'items', 'ignore_empty']);
const MAP_KEYS = new Set(['min_pairs', 'max_pairs', 'no_sparse', 'keys', 'values', 'ignore_empty']);
const ANY_KEYS = new Set(['required', 'in', 'not_in']);
const DURATION_KEYS = new Set(['required', 'const', 'lt', 'lte', 'gt', 'gte', 'in', 'not_in']);
const TIMESTAMP_KEYS = new Set(['required', 'const', 'lt', 'lte', 'gt', 'gte', 'lt_now', 'gt_now', 'within']);

function checkScalar(kind: string, r: Rules, value: unknown, at: string, report: RuleReport): void {
  if (NUMERIC_KINDS.has(kind)) return checkNumber(kind, r, value, at, report);
  if (kind === 'string') return checkString(r, typeof value === 'string' ? value : '', at, report);
  if (kind === 'bytes') return checkBytes(r, value instanceof Uint8Array ? value : new Uint8Array(), at, report);
  if (kind === 'bool') {
    for (const key of Object.keys(r)) if (key !== 'const') report.unimplemented.push({ path: at, rule: `bool.${key}` });
    if (r['const'] !== undefined && Boolean(value) !== r['const']) report.violations.push({ path: at, rule: 'bool.const', message: `value must equal ${String(r['const'])}` });
    return;
  }
  report.unimplemented.push({ path: at, rule: kind });
}

function checkEnum(t: protobuf.Enum, r: Rules, value: number, at: string, report: RuleReport): void {
  for (const key of Object.keys(r)) if (!ENUM_KEYS.has(key)) report.unimplemented.push({ path: at, rule: `enum.${key}` });
  const name = (n: unknown): string => `${String(n)}${t.valuesById[Number(n)] !== undefined ? ` (${t.valuesById[Number(n)]})` : ''}`;
  if (r['const'] !== undefined && value !== Number(r['const'])) report.violations.push({ path: at, rule: 'enum.const', message: `value must equal ${name(r['const'])}` });
  if (r['defined_only'] === true && t.valuesById[value] === undefined) report.violations.push({ path: at, rule: 'enum.defined_only', message: `value ${value} must be one of the defined enum values` });
  const inList = list(r['in']).map(Number);
  if (inList.length > 0 && !inList.includes(value)) report.violations.push({ path: at, rule: 'enum.in', message: `value must be in list [${inList.map(name).join(', ')}]` });
  const notIn = list(r['not_in']).map(Number);
  if (notIn.includes(value)) report.violations.push({ path: at, rule: 'enum.not_in', message: `value must not be in list [${notIn.map(name).join(', ')}]` });
}

/** A numeric value as the comparable it is: bigint for the integer kinds, number for float and double. */
function numeric(kind: string, v: unknown): number | bigint {
  if (kind === 'float' || kind === 'double') return Number(v ?? 0);
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(Math.trunc(v));
  if (typeof v === 'string') return BigInt(v);
  if (v !== null && typeof v === 'object') return BigInt(String(v)); // a Long
  return 0n;
}

function checkNumber(kind: string, r: Rules, raw: unknown, at: string, report: RuleReport): void {
  for (const key of Object.keys(r)) if (!NUMERIC_KEYS.has(key)) report.unimplemented.push({ path: at, rule: `${kind}.${key}` });
  const value = numeric(kind, raw);
  if (r['ignore_empty'] === true && Number(value) === 0) return;
  const bound = (key: string): number | bigint | undefined => (r[key] === undefined ? undefined : numeric(kind, r[key]));
  const show = String;
  const c = bound('const');
  if (c !== undefined && value !== c) report.violations.push({ path: at, rule: `${kind}.const`, message: `value must equal ${show(c)}` });
  checkRange(kind, { lt: bound('lt'), lte: bound('lte'), gt: bound('gt'), gte: bound('gte') }, value, show, at, report);
  const inList = list(r['in']).map((v) => numeric(kind, v));
  if (inList.length > 0 && !inList.includes(value)) report.violations.push({ path: at, rule: `${kind}.in`, message: `value must be in list [${inList.map(show).join(', ')}]` });
  const notIn = list(r['not_in']).map((v) => numeric(kind, v));
  if (notIn.includes(value)) report.violations.push({ path: at, rule: `${kind}.not_in`, message: `value must not be in list [${notIn.map(show).join(', ')}]` });
}

interface Bounds<T> { lt?: T | undefined; lte?: T | undefined; gt?: T | undefined; gte?: T | undefined }

/**
 * PGV's range semantics: an upper and a lower bound make a range, inside when upper > lower
 * and outside (an exclusive range) when not; one bound alone is a plain comparison.
 */
function checkRange<T extends number | bigint>(kind: string, b: Bounds<T>, v: T, show: (x: T) => string, at: string, report: RuleReport): void {
  const fail = (rule: string, message: string): void => void report.violations.push({ path: at, rule: `${kind}.${rule}`, message });
  const { lt, lte, gt, gte } = b;
  if (lt !== undefined) {
    if (gt !== undefined) {
      if (lt > gt ? v <= gt || v >= lt : v >= lt && v <= gt) fail('gt,lt', lt > gt ? `value must be inside range (${show(gt)}, ${show(lt)})` : `value must be outside range [${show(lt)}, ${show(gt)}]`);
    } else if (gte !== undefined) {
      if (lt > gte ? v < gte || v >= lt : v >= lt && v < gte) fail('gte,lt', lt > gte ? `value must be inside range [${show(gte)}, ${show(lt)})` : `value must be outside range [${show(lt)}, ${show(gte)})`);
    } else if (v >= lt) {
      fail('lt', `value must be less than ${show(lt)}`);
    }
  } else if (lte !== undefined) {
    if (gt !== undefined) {
      if (lte > gt ? v <= gt || v > lte : v > lte && v <= gt) fail('gt,lte', lte > gt ? `value must be inside range (${show(gt)}, ${show(lte)}]` : `value must be outside range (${show(lte)}, ${show(gt)}]`);
    } else if (gte !== undefined) {
      if (lte > gte ? v < gte || v > lte : v > lte && v < gte) fail('gte,lte', lte > gte ? `value must be inside range [${show(gte)}, ${show(lte)}]` : `value must be outside range (${show(lte)}, ${show(gte)})`);
    } else if (v > lte) {
      fail('lte', `value must be less than or equal to ${show(lte)}`);
    }
  } else if (gt !== undefined) {
    if (v <= gt) fail('gt', `value must be greater than ${show(gt)}`);
  } else if (gte !== undefined) {
    if (v < gte) fail('gte', `value must be greater than or equal to ${show(gte)}`);
  }
}

// Header rules as PGV defines them: RFC 7230 tokens and field values when strict (the default),
// and only NUL, CR and LF refused when `strict: false`, as Envoy's protos mostly ask.
const HEADER_NAME = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
// eslint-disable-next-line no-control-regex -- control characters are what these refuse
const HEADER_VALUE = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;
// eslint-disable-next-line no-control-regex -- as above
const HEADER_LOOSE = /^[^\u0000\u000A\u000D]*$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const patternCache = new Map<string, RegExp | null>();

/** An RE2 pattern as a JavaScript RegExp (the syntax Envoy's patterns use is common to both), or null. */
function pattern(source: string): RegExp | null {
  let re = patternCache.get(source);
  if (re === undefined) {
    try {
      re = new RegExp(source, 'u');
    } catch {
      re = null;
    }
    patternCache.set(source, re);
  }
  return re;
}

/** PGV's hostname check: at most 253 characters, dot-separated labels of 1–63 alphanumerics or inner hyphens. */
function hostnameProblem(host: string): string | undefined {
  if (host.length > 253) return 'hostname cannot exceed 253 characters';
  for (const part of host.replace(/\.$/, '').toLowerCase().split('.')) {
    if (part.length === 0 || part.length > 63) return 'hostname part must be non-empty and cannot exceed 63 characters';
    if (part.startsWith('-')) return 'hostname parts cannot begin with hyphens';
    if (part.endsWith('-')) return 'hostname parts cannot end with hyphens';
    if (!/^[a-z0-9-]+$/.test(part)) return 'hostname parts can only contain alphanumeric characters or hyphens';
  }
  return undefined;
}

function checkString(r: Rules, value: string, at: string, report: RuleReport): void {
  for (const key of Object.keys(r)) if (!STRING_KEYS.has(key)) report.unimplemented.push({ path: at, rule: `string.${key}` });
  if (r['ignore_empty'] === true && value === '') return;
  const fail = (rule: string, message: string): void => void report.violations.push({ path: at, rule: `string.${rule}`, message });
  const chars = [...value].length;
  const bytes = Buffer.byteLength(value, 'utf8');
  const n = (key: string): number | undefined => (r[key] === undefined ? undefined : Number(r[key]));
  const q = JSON.stringify;
  if (r['const'] !== undefined && value !== r['const']) fail('const', `value must equal ${q(r['const'])}`);
  const len = n('len');
  if (len !== undefined && chars !== len) fail('len', `value length must be ${len} characters`);
  const minLen = n('min_len');
  if (minLen !== undefined && chars < minLen) fail('min_len', `value length must be at least ${minLen} characters`);
  const maxLen = n('max_len');
  if (maxLen !== undefined && chars > maxLen) fail('max_len', `value length must be at most ${maxLen} characters`);
  const lenBytes = n('len_bytes');
  if (lenBytes !== undefined && bytes !== lenBytes) fail('len_bytes', `value length must be ${lenBytes} bytes`);
  const minBytes = n('min_bytes');
  if (minBytes !== undefined && bytes < minBytes) fail('min_bytes', `value length must be at least ${minBytes} bytes`);
  const maxBytes = n('max_bytes');
  if (maxBytes !== undefined && bytes > maxBytes) fail('max_bytes', `value length must be at most ${maxBytes} bytes`);
  if (typeof r['pattern'] === 'string') {
    const re = pattern(r['pattern']);
    if (re === null) report.unimplemented.push({ path: at, rule: `string.pattern ${q(r['pattern'])} (not a JavaScript regular expression)` });
    else if (!re.test(value)) fail('pattern', `value does not match regex pattern ${q(r['pattern'])}`);
  }
  if (typeof r['prefix'] === 'string' && !value.startsWith(r['prefix'])) fail('prefix', `value does not have prefix ${q(r['prefix'])}`);
  if (typeof r['suffix'] === 'string' && !value.endsWith(r['suffix'])) fail('suffix', `value does not have suffix ${q(r['suffix'])}`);
  if (typeof r['contains'] === 'string' && !value.includes(r['contains'])) fail('contains', `value does not contain substring ${q(r['contains'])}`);
  if (typeof r['not_contains'] === 'string' && value.includes(r['not_contains'])) fail('not_contains', `value contains substring ${q(r['not_contains'])}`);
  const inList = list(r['in']).map(String);
  if (inList.length > 0 && !inList.includes(value)) fail('in', `value must be in list [${inList.map((s) => q(s)).join(', ')}]`);
  const notIn = list(r['not_in']).map(String);
  if (notIn.includes(value)) fail('not_in', `value must not be in list [${notIn.map((s) => q(s)).join(', ')}]`);
  if (r['hostname'] === true) {
    const problem = hostnameProblem(value);
    if (problem) fail('hostname', `value must be a valid hostname: ${problem}`);
  }
  if (r['ip'] === true && isIP(value) === 0) fail('ip', 'value must be a valid IP address');
  if (r['ipv4'] === true && isIP(value) !== 4) fail('ipv4', 'value must be a valid IPv4 address');
  if (r['ipv6'] === true && isIP(value) !== 6) fail('ipv6', 'value must be a valid IPv6 address');
  if (r['address'] === true && isIP(value) === 0 && hostnameProblem(value) !== undefined) fail('address', 'value must be a valid hostname, or ip address');
  if (r['uuid'] === true && !UUID.test(value)) fail('uuid', 'value must be a valid UUID');
  const known = r['well_known_regex'];
  if (known !== undefined) {
    const strict = r['strict'] !== false; // proto2 default: true
    let re: RegExp | undefined;
    if (known === 'HTTP_HEADER_NAME' || known === 1) re = strict ? HEADER_NAME : HEADER_LOOSE;
    else if (known === 'HTTP_HEADER_VALUE' || known === 2) re = strict ? HEADER_VALUE : HEADER_LOOSE;
    if (!re) report.unimplemented.push({ path: at, rule: `string.well_known_regex ${String(known)}` });
    else if (!re.test(value)) fail('well_known_regex', `value does not match ${String(known)}${strict ? '' : ' (strict: false)'}: ${String(re)}`);
  }
}

function checkBytes(r: Rules, value: Uint8Array, at: string, report: RuleReport): void {
  for (const key of Object.keys(r)) if (!BYTES_KEYS.has(key)) report.unimplemented.push({ path: at, rule: `bytes.${key}` });
  if (r['ignore_empty'] === true && value.length === 0) return;
  const fail = (rule: string, message: string): void => void report.violations.push({ path: at, rule: `bytes.${rule}`, message });
  const buf = Buffer.from(value);
  const asBytes = (v: unknown): Buffer => (typeof v === 'string' ? Buffer.from(v, 'latin1') : Buffer.from(v as Uint8Array));
  const n = (key: string): number | undefined => (r[key] === undefined ? undefined : Number(r[key]));
  if (r['const'] !== undefined && !buf.equals(asBytes(r['const']))) fail('const', 'value must equal the constant');
  const len = n('len');
  if (len !== undefined && buf.length !== len) fail('len', `value length must be ${len} bytes`);
  const minLen = n('min_len');
  if (minLen !== undefined && buf.length < minLen) fail('min_len', `value length must be at least ${minLen} bytes`);
  const maxLen = n('max_len');
  if (maxLen !== undefined && buf.length > maxLen) fail('max_len', `value length must be at most ${maxLen} bytes`);
  if (typeof r['pattern'] === 'string') {
    const re = pattern(r['pattern']);
    if (re === null) report.unimplemented.push({ path: at, rule: `bytes.pattern ${JSON.stringify(r['pattern'])} (not a JavaScript regular expression)` });
    else if (!re.test(buf.toString('utf8'))) fail('pattern', `value does not match regex pattern ${JSON.stringify(r['pattern'])}`);
  }
  if (r['prefix'] !== undefined && !buf.subarray(0, asBytes(r['prefix']).length).equals(asBytes(r['prefix']))) fail('prefix', 'value does not have the required prefix');
  if (r['suffix'] !== undefined && !buf.subarray(Math.max(0, buf.length - asBytes(r['suffix']).length)).equals(asBytes(r['suffix']))) fail('suffix', 'value does not have the required suffix');
  if (r['contains'] !== undefined && !buf.includes(asBytes(r['contains']))) fail('contains', 'value does not contain the required bytes');
  const inList = list(r['in']).map(asBytes);
  if (inList.length > 0 && !inList.some((b) => b.equals(buf))) fail('in', 'value must be in the list of allowed values');
  if (list(r['not_in']).map(asBytes).some((b) => b.equals(buf))) fail('not_in', 'value must not be in the list of refused values');
  if (r['ip'] === true && buf.length !== 4 && buf.length !== 16) fail('ip', 'value must be a valid IP address (4 or 16 bytes)');
  if (r['ipv4'] === true && buf.length !== 4) fail('ipv4', 'value must be a valid IPv4 address (4 bytes)');
  if (r['ipv6'] === true && buf.length !== 16) fail('ipv6', 'value must be a valid IPv6 address (16 bytes)');
}

// ---- Duration, Timestamp, Any ----

/** A Duration or Timestamp (or a rule's `{seconds, nanos}`) in nanoseconds. */
function nanos(v: unknown): bigint {
  if (!isRules(v)) return 0n;
  return BigInt(numeric('int64', v['seconds'] ?? 0)) * 1_000_000_000n + BigInt(numeric('int32', v['nanos'] ?? 0));
}

function showNanos(kind: string, n: bigint): string {
  const seconds = Number(n / 1_000_000_000n);
  const rest = Number(n % 1_000_000_000n);
  if (kind === 'duration') return formatDuration(seconds, rest);
  return new Date(seconds * 1000 + rest / 1e6).toISOString();
}

function checkTime(kind: 'duration' | 'timestamp', r: Rules, msg: Msg | undefined, at: string, report: RuleReport): void {
  const keys = kind === 'duration' ? DURATION_KEYS : TIMESTAMP_KEYS;
  for (const key of Object.keys(r)) if (!keys.has(key)) report.unimplemented.push({ path: at, rule: `${kind}.${key}` });
  if (!msg) {
    if (r['required'] === true) report.violations.push({ path: at, rule: `${kind}.required`, message: 'value is required' });
    return;
  }
  const value = nanos(msg);
  const show = (n: bigint): string => showNanos(kind, n);
  const bound = (key: string): bigint | undefined => (r[key] === undefined ? undefined : nanos(r[key]));
  const c = bound('const');
  if (c !== undefined && value !== c) report.violations.push({ path: at, rule: `${kind}.const`, message: `value must equal ${show(c)}` });
  checkRange(kind, { lt: bound('lt'), lte: bound('lte'), gt: bound('gt'), gte: bound('gte') }, value, show, at, report);
  const inList = list(r['in']).map(nanos);
  if (inList.length > 0 && !inList.includes(value)) report.violations.push({ path: at, rule: `${kind}.in`, message: `value must be in list [${inList.map(show).join(', ')}]` });
  const notIn = list(r['not_in']).map(nanos);
  if (notIn.includes(value)) report.violations.push({ path: at, rule: `${kind}.not_in`, message: `value must not be in list [${notIn.map(show).join(', ')}]` });
  if (kind === 'timestamp') {
    const now = BigInt(Date.now()) * 1_000_000n;
    if (r['lt_now'] === true && value >= now) report.violations.push({ path: at, rule: 'timestamp.lt_now', message: 'value must be less than now' });
    if (r['gt_now'] === true && value <= now) report.violations.push({ path: at, rule: 'timestamp.gt_now', message: 'value must be greater than now' });
    if (r['within'] !== undefined) {
      const within = nanos(r['within']);
      const diff = value > now ? value - now : now - value;
      if (diff > within) report.violations.push({ path: at, rule: 'timestamp.within', message: `value must be within ${formatDuration(Number(within / 1_000_000_000n), Number(within % 1_000_000_000n))} of now` });
    }
  }
}

function typeUrlOf(msg: Msg): string {
  return String(msg['type_url'] ?? '');
}

function checkAnyRules(r: Rules, msg: Msg | undefined, at: string, report: RuleReport): void {
  for (const key of Object.keys(r)) if (!ANY_KEYS.has(key)) report.unimplemented.push({ path: at, rule: `any.${key}` });
  if (!msg) {
    if (r['required'] === true) report.violations.push({ path: at, rule: 'any.required', message: 'value is required' });
    return;
  }
  const url = typeUrlOf(msg);
  const inList = list(r['in']).map(String);
  if (inList.length > 0 && !inList.includes(url)) report.violations.push({ path: at, rule: 'any.in', message: `type URL must be in list [${inList.join(', ')}]` });
  const notIn = list(r['not_in']).map(String);
  if (notIn.includes(url)) report.violations.push({ path: at, rule: 'any.not_in', message: `type URL must not be in list [${notIn.join(', ')}]` });
}

/**
 * An Any's payload is decoded with its type and checked too: Envoy validates a typed config
 * when it builds the extension from it. A TypedStruct's value is converted to its named
 * type the way Envoy does (through JSON) and checked as that type.
 */
function checkAnyPayload(msg: Msg, at: string, report: RuleReport): void {
  const url = typeUrlOf(msg);
  if (url === '') {
    report.unchecked.push({ path: at, reason: 'an Any without a type URL' });
    return;
  }
  const type = ruleType(url);
  if (!type) {
    report.unchecked.push({ path: at, reason: `${url} is not a type in Envoy's protos` });
    return;
  }
  let payload: Msg;
  try {
    payload = type.decode((msg['value'] ?? new Uint8Array()) as Uint8Array) as unknown as Msg;
  } catch (e) {
    report.violations.push({ path: at, rule: 'any', message: `payload does not decode as ${url}: ${(e as Error).message}` });
    return;
  }
  checkMessage(type, payload, at, report);
  if (TYPED_STRUCTS.has(type.fullName)) checkTypedStruct(type, payload, at, report);
}

function checkTypedStruct(type: protobuf.Type, payload: Msg, at: string, report: RuleReport): void {
  const url = typeUrlOf(payload);
  const inner = url === '' ? undefined : ruleType(url);
  if (!inner) {
    report.unchecked.push({ path: at, reason: url === '' ? 'a TypedStruct without a type URL' : `TypedStruct of ${url}, not a type in Envoy's protos` });
    return;
  }
  const structType = type.fields['value']?.resolvedType;
  if (!(structType instanceof protobuf.Type)) return;
  const typeOf = (u: string): protobuf.Type => {
    const t = ruleType(u);
    if (!t) throw new Error(`unknown type ${u}`);
    return t;
  };
  let decoded: Msg;
  try {
    const json = payload['value'] ? toJson(structType, payload['value'] as Msg, typeOf) : {};
    decoded = inner.decode(inner.encode(inner.fromObject(fromJson(inner, json, typeOf, at))).finish()) as unknown as Msg;
  } catch (e) {
    report.violations.push({ path: at, rule: 'any', message: `TypedStruct value is not a ${url}: ${(e as Error).message}` });
    return;
  }
  checkMessage(inner, decoded, at, report);
}
