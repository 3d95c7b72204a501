// The admission filter's config (`sextant.filters.http.admission`, a TypedStruct of
// `sextant.filters.http.admission.v1.Admission`), as the pilot generates it for each inbound
// port an AdaptiveLimit covers. Every field is checked here; an unknown field or a value out
// of range refuses the listener (NACK) with the field, so nothing is half understood.
import type { ProtoJson } from '../../../envoy/index.ts';
import { TYPED_STRUCT_TYPE, XDS_TYPED_STRUCT_TYPE } from '../../../envoy/index.ts';
import { ConfigError } from '../../config/fields.ts';

export const ADMISSION_FILTER = 'sextant.filters.http.admission';
export const ADMISSION_TYPE = 'type.googleapis.com/sextant.filters.http.admission.v1.Admission';

export interface AdmissionConfig {
  /** `namespace/name` of the AdaptiveLimit. */
  rule: string;
  /** The runtime key holding the admitted concurrency (Envoy's circuit-breaker key). */
  limitRuntimeKey: string;
  /** The inbound cluster the key names (`inbound|PORT||`), what load reports are about. */
  cluster: string;
  /** Admitted concurrency while no lease is held; 0 = unlimited. */
  failSafeLimit: number;
  floor: number;
  /** 0 = no ceiling. */
  ceiling: number;
  queueSize: number;
  queueTimeoutMs: number;
  /** Lower-case header naming a request's tier. */
  tierHeader: string;
  tiers: number;
  tier0ReservePercent: number;
  /** false: shadow mode (would-be rejects counted, nothing refused). */
  enforce: boolean;
  rejectStatus: number;
  rejectBody: string;
  /** 0 = no local reflex. */
  reflexLatencyTargetMs: number;
  reflexMaxCutPercent: number;
}

/** Bounds that keep a mistaken config from making the gate unbounded. */
export const ADMISSION_BOUNDS = Object.freeze({ maxQueueSize: 100_000, maxTiers: 16, maxQueueTimeoutMs: 600_000, maxLimit: 1_000_000 });

const FIELDS = new Set(['rule', 'limitRuntimeKey', 'failSafeLimit', 'floor', 'ceiling', 'queueSize', 'queueTimeoutMs', 'tierHeader', 'tiers', 'tier0ReservePercent', 'enforce', 'reject', 'reflex']);
const CB_KEY = /^circuit_breakers\.(.+)\.(?:default|high)\.max_requests$/;

/** Compiles the filter's typed_config (a TypedStruct; its value in camelCase or snake_case). */
export function compileAdmission(tc: ProtoJson, at: string): AdmissionConfig {
  const type = String(tc['@type'] ?? '');
  if (type !== TYPED_STRUCT_TYPE && type !== XDS_TYPED_STRUCT_TYPE) throw new ConfigError(`${at}: the admission filter's config must be a TypedStruct of ${ADMISSION_TYPE}`);
  const raw = (tc['value'] ?? {}) as ProtoJson;
  const v: ProtoJson = {};
  for (const [k, x] of Object.entries(raw)) {
    const key = k.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
    if (!FIELDS.has(key)) throw new ConfigError(`${at}.value.${k}: no such field in the admission filter's config`);
    v[key] = x;
  }
  const where = `${at}.value`;
  const rule = str(v, 'rule', where, true);
  const limitRuntimeKey = str(v, 'limitRuntimeKey', where, true);
  const floor = int(v, 'floor', where, 1, 0, ADMISSION_BOUNDS.maxLimit);
  const ceiling = int(v, 'ceiling', where, 0, 0, ADMISSION_BOUNDS.maxLimit);
  if (ceiling > 0 && ceiling < floor) throw new ConfigError(`${where}.ceiling: ${ceiling} is below the floor ${floor}`);
  const tiers = int(v, 'tiers', where, 1, 1, ADMISSION_BOUNDS.maxTiers);
  const reject = obj(v, 'reject', where, ['status', 'body']);
  const reflex = obj(v, 'reflex', where, ['latencyTargetMs', 'maxCutPercent']);
  const rejectStatus = int(reject, 'status', `${where}.reject`, 503, 400, 599);
  const header = str(v, 'tierHeader', where, false).toLowerCase();
  if (header !== '' && !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(header)) throw new ConfigError(`${where}.tierHeader: ${JSON.stringify(header)} is not a header name`);
  const m = CB_KEY.exec(limitRuntimeKey);
  return {
    rule,
    limitRuntimeKey,
    cluster: m?.[1] ?? rule,
    failSafeLimit: int(v, 'failSafeLimit', where, 0, 0, ADMISSION_BOUNDS.maxLimit),
    floor,
    ceiling,
    queueSize: int(v, 'queueSize', where, 0, 0, ADMISSION_BOUNDS.maxQueueSize),
    queueTimeoutMs: int(v, 'queueTimeoutMs', where, 0, 0, ADMISSION_BOUNDS.maxQueueTimeoutMs),
    tierHeader: header === '' ? 'x-sextant-priority' : header,
    tiers,
    tier0ReservePercent: num(v, 'tier0ReservePercent', where, 0, 0, 100),
    enforce: bool(v, 'enforce', where, false),
    rejectStatus,
    rejectBody: str(reject, 'body', `${where}.reject`, false),
    reflexLatencyTargetMs: num(reflex, 'latencyTargetMs', `${where}.reflex`, 0, 0, 3_600_000),
    reflexMaxCutPercent: num(reflex, 'maxCutPercent', `${where}.reflex`, 0, 0, 100),
  };
}

function str(o: ProtoJson, k: string, at: string, required: boolean): string {
  const v = o[k];
  if (v === undefined || v === null || v === '') {
    if (required) throw new ConfigError(`${at}.${k}: required`);
    return '';
  }
  if (typeof v !== 'string') throw new ConfigError(`${at}.${k}: expected a string, got ${JSON.stringify(v)}`);
  return v;
}

function num(o: ProtoJson, k: string, at: string, absent: number, min: number, max: number): number {
  const v = o[k];
  if (v === undefined || v === null) return absent;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new ConfigError(`${at}.${k}: expected a number in ${min}..${max}, got ${JSON.stringify(v)}`);
  return v;
}

function int(o: ProtoJson, k: string, at: string, absent: number, min: number, max: number): number {
  const v = num(o, k, at, absent, min, max);
  if (!Number.isInteger(v)) throw new ConfigError(`${at}.${k}: expected a whole number, got ${v}`);
  return v;
}

function bool(o: ProtoJson, k: string, at: string, absent: boolean): boolean {
  const v = o[k];
  if (v === undefined || v === null) return absent;
  if (typeof v !== 'boolean') throw new ConfigError(`${at}.${k}: expected true or false, got ${JSON.stringify(v)}`);
  return v;
}

function obj(o: ProtoJson, k: string, at: string, fields: readonly string[]): ProtoJson {
  const v = o[k];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${at}.${k}: expected an object`);
  const out: ProtoJson = {};
  for (const [f, x] of Object.entries(v as ProtoJson)) {
    const key = f.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
    if (!fields.includes(key)) throw new ConfigError(`${at}.${k}.${f}: no such field`);
    out[key] = x;
  }
  return out;
}
