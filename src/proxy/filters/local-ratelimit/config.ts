// Envoy's LocalRateLimit message (`envoy.filters.http.local_ratelimit`) compiled once per
// config update: the token buckets' shapes, the descriptors, shadow mode (filter_enabled /
// filter_enforced runtime fractions), the answer and its headers. Written directly or inside
// a TypedStruct (as Istio's EnvoyFilter examples write it, snake_case); fields this proxy
// cannot honour refuse the config with the field, as Envoy refuses what it cannot run.
import type { ProtoJson } from '../../../envoy/index.ts';
import { decodeMessage, encodeMessage, messageType, TYPED_STRUCT_TYPE, XDS_TYPED_STRUCT_TYPE } from '../../../envoy/index.ts';
import { ConfigError, durationMs } from '../../config/fields.ts';
import { compileHeaderOps } from '../../router/header-ops.ts';
import type { HeaderOps } from '../../router/header-ops.ts';
import type { BucketParams } from './token-bucket.ts';

export const LOCAL_RATELIMIT_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit';
/** The filter name Envoy and Istio give it; per-route configs are found under a filter's name. */
export const LOCAL_RATELIMIT_FILTER = 'envoy.filters.http.local_ratelimit';
/** Envoy's wrapper for a per-route config (`config`, `is_optional`, `disabled`). */
export const ROUTE_FILTER_CONFIG_TYPE = 'type.googleapis.com/envoy.config.route.v3.FilterConfig';

/** A RuntimeFractionalPercent: the default fraction and the runtime key that may override it. */
export interface RuntimePercent {
  runtimeKey: string | undefined;
  numerator: number;
  denominator: number;
}

/** One configured descriptor: its entries (in order) and its own bucket. */
export interface DescriptorLimit {
  /** The entries as one string (key=value pairs in order), how request descriptors are matched. */
  key: string;
  entries: readonly { key: string; value: string }[];
  bucket: BucketParams;
  /** Its bucket's identity in the proxy's table (the filter's identity and the key). */
  bucketId: string;
}

export type VhRateLimits = 'OVERRIDE' | 'INCLUDE' | 'IGNORE';

/** A compiled LocalRateLimit. `identity` names its buckets: the same identity after an update keeps their balances. */
export interface LocalRateLimitConfig {
  identity: string;
  statPrefix: string;
  /** The answer's status (Envoy: a code below 400 becomes 429). */
  status: number;
  /** The default bucket; undefined: none (Envoy then has no tokens at all). */
  bucket: BucketParams | undefined;
  /** Undefined: the filter is consulted for no request (Envoy's default of 0 %). */
  filterEnabled: RuntimePercent | undefined;
  /** Undefined: nothing is enforced (shadow mode: counted only). */
  filterEnforced: RuntimePercent | undefined;
  requestHeadersWhenNotEnforced: HeaderOps | undefined;
  responseHeaders: HeaderOps | undefined;
  /** Sorted by fill rate, strictest first (Envoy's order of consumption). */
  descriptors: readonly DescriptorLimit[];
  descriptorsByKey: ReadonlyMap<string, DescriptorLimit>;
  stage: number;
  perConnection: boolean;
  xRateLimitHeaders: boolean;
  vhRateLimits: VhRateLimits;
  alwaysConsumeDefaultBucket: boolean;
  /** A gRPC request is answered RESOURCE_EXHAUSTED instead of UNAVAILABLE. */
  grpcResourceExhausted: boolean;
}

/** Envoy's floor for fill_interval ("local rate limit token bucket fill timer must be >= 50ms"). */
const MIN_FILL_INTERVAL_MS = 50;
const DENOMINATORS: Readonly<Record<string, number>> = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 };

/**
 * The LocalRateLimit in `tc` (a typed_config: the message itself, a TypedStruct of it), in
 * proto3 JSON form. A TypedStruct's value is checked field by field against Envoy's message.
 */
export function localRateLimitMessage(tc: ProtoJson, at: string): ProtoJson {
  const type = String(tc['@type'] ?? '');
  if (type === TYPED_STRUCT_TYPE || type === XDS_TYPED_STRUCT_TYPE) {
    const value = (tc['value'] ?? {}) as ProtoJson;
    try {
      return decodeMessage(LOCAL_RATELIMIT_TYPE, encodeMessage(LOCAL_RATELIMIT_TYPE, value));
    } catch (err) {
      throw new ConfigError(`${at}.value: ${(err as Error).message.replace(/^[A-Za-z.]*LocalRateLimit\.?/, '')}`);
    }
  }
  return tc;
}

/** Compiles a LocalRateLimit (`perRoute`: a route's typed_per_filter_config, which must have a bucket). */
export function compileLocalRateLimit(tc: ProtoJson, at: string, identity: string, perRoute: boolean): LocalRateLimitConfig {
  const m = localRateLimitMessage(tc, at);
  const statPrefix = String(m['statPrefix'] ?? '');
  if (statPrefix === '') throw new ConfigError(`${at}.statPrefix: required (the stats are named <stat_prefix>.http_local_rate_limit.*)`);
  if (m['localClusterRateLimit'] !== undefined) throw new ConfigError(`${at}.localClusterRateLimit: sharing a limit over the local cluster's members is not supported by this proxy`);
  const bucket = m['tokenBucket'] === undefined ? undefined : compileBucket(m['tokenBucket'] as ProtoJson, `${at}.tokenBucket`);
  if (perRoute && bucket === undefined) throw new ConfigError(`${at}.tokenBucket: a per-route local rate limit needs a token bucket`);
  const perConnection = m['localRateLimitPerDownstreamConnection'] === true;
  const descriptors = ((m['descriptors'] as ProtoJson[] | undefined) ?? []).map((d, i) => compileDescriptor(d, `${at}.descriptors[${i}]`, bucket, identity));
  const byKey = new Map<string, DescriptorLimit>();
  descriptors.forEach((d, i) => {
    if (byKey.has(d.key)) throw new ConfigError(`${at}.descriptors[${i}]: duplicate descriptor ${d.entries.map((e) => `${e.key}=${e.value}`).join(', ')}`);
    byKey.set(d.key, d);
  });
  const stage = Number(m['stage'] ?? 0);
  if (!(Number.isInteger(stage) && stage >= 0 && stage <= 10)) throw new ConfigError(`${at}.stage: expected 0..10, got ${JSON.stringify(m['stage'])}`);
  const xHeaders = String(m['enableXRatelimitHeaders'] ?? 'OFF');
  if (xHeaders !== 'OFF' && xHeaders !== 'DRAFT_VERSION_03') throw new ConfigError(`${at}.enableXRatelimitHeaders: expected OFF or DRAFT_VERSION_03, got ${JSON.stringify(xHeaders)}`);
  const vh = String(m['vhRateLimits'] ?? 'OVERRIDE');
  if (vh !== 'OVERRIDE' && vh !== 'INCLUDE' && vh !== 'IGNORE') throw new ConfigError(`${at}.vhRateLimits: expected OVERRIDE, INCLUDE or IGNORE, got ${JSON.stringify(vh)}`);
  const always = m['alwaysConsumeDefaultTokenBucket'];
  return {
    identity,
    statPrefix,
    status: compileStatus(m['status'] as ProtoJson | undefined, `${at}.status`),
    bucket,
    filterEnabled: compilePercent(m['filterEnabled'] as ProtoJson | undefined, `${at}.filterEnabled`),
    filterEnforced: compilePercent(m['filterEnforced'] as ProtoJson | undefined, `${at}.filterEnforced`),
    requestHeadersWhenNotEnforced: compileHeaderOps(m['requestHeadersToAddWhenNotEnforced'], undefined, `${at}.requestHeadersToAddWhenNotEnforced`),
    responseHeaders: compileHeaderOps(m['responseHeadersToAdd'], undefined, at, true),
    // Stable sort by tokens filled per second (Envoy's integer rate), strictest first.
    descriptors: descriptors.map((d, i) => ({ d, i, rate: fillRate(d.bucket) })).sort((a, b) => a.rate - b.rate || a.i - b.i).map((x) => x.d),
    descriptorsByKey: byKey,
    stage,
    perConnection,
    xRateLimitHeaders: xHeaders === 'DRAFT_VERSION_03',
    vhRateLimits: vh,
    alwaysConsumeDefaultBucket: always === undefined ? true : always === true || (always as { value?: boolean }).value === true,
    grpcResourceExhausted: m['rateLimitedAsResourceExhausted'] === true,
  };
}

/** Entries as a descriptor key: key NUL value SOH per entry, in order (actions.ts builds the same string). */
export function descriptorKey(entries: readonly { key: string; value: string }[]): string {
  let s = '';
  for (const e of entries) s += `${e.key}\u0000${e.value}\u0001`;
  return s;
}

function compileBucket(b: ProtoJson, at: string): BucketParams {
  const maxTokens = Number(b['maxTokens'] ?? 0);
  if (!(Number.isInteger(maxTokens) && maxTokens > 0)) throw new ConfigError(`${at}.maxTokens: expected a whole number > 0, got ${JSON.stringify(b['maxTokens'])}`);
  const tpf = b['tokensPerFill'];
  const tokensPerFill = tpf === undefined ? 1 : Number((tpf as { value?: number }).value ?? tpf);
  if (!(Number.isInteger(tokensPerFill) && tokensPerFill > 0)) throw new ConfigError(`${at}.tokensPerFill: expected a whole number > 0, got ${JSON.stringify(tpf)}`);
  const fillIntervalMs = durationMs(b['fillInterval'], `${at}.fillInterval`);
  if (fillIntervalMs === undefined || fillIntervalMs <= 0) throw new ConfigError(`${at}.fillInterval: required, and more than 0`);
  if (fillIntervalMs < MIN_FILL_INTERVAL_MS) throw new ConfigError(`${at}.fillInterval: must be at least 50ms (Envoy's fill timer floor), got ${fillIntervalMs}ms`);
  return { maxTokens, tokensPerFill, fillIntervalMs };
}

function compileDescriptor(d: ProtoJson, at: string, global: BucketParams | undefined, identity: string): DescriptorLimit {
  const entries = ((d['entries'] as ProtoJson[] | undefined) ?? []).map((e, i) => {
    const key = String(e['key'] ?? '');
    const value = String(e['value'] ?? '');
    if (key === '') throw new ConfigError(`${at}.entries[${i}].key: required`);
    if (value === '') throw new ConfigError(`${at}.entries[${i}].value: required (descriptors with wildcard values are not supported by this proxy)`);
    return { key, value };
  });
  if (entries.length === 0) throw new ConfigError(`${at}.entries: at least one entry is required`);
  if (d['tokenBucket'] === undefined) throw new ConfigError(`${at}.tokenBucket: required`);
  const bucket = compileBucket(d['tokenBucket'] as ProtoJson, `${at}.tokenBucket`);
  if (global !== undefined && bucket.fillIntervalMs % global.fillIntervalMs !== 0) {
    throw new ConfigError(`${at}.tokenBucket.fillInterval: must be a multiple of the filter's fill interval (${global.fillIntervalMs}ms), got ${bucket.fillIntervalMs}ms`);
  }
  const key = descriptorKey(entries);
  return { key, entries, bucket, bucketId: `${identity}#${key}` };
}

function fillRate(b: BucketParams): number {
  return Math.floor(b.tokensPerFill / Math.max(1, Math.floor(b.fillIntervalMs / 1000)));
}

function compileStatus(s: ProtoJson | undefined, at: string): number {
  if (s === undefined || s['code'] === undefined) return 429;
  const raw = s['code'];
  let code: number | undefined;
  if (typeof raw === 'number') code = raw;
  else {
    const t = messageType('envoy.type.v3.HttpStatus');
    const f = t.fields['code']!;
    f.resolve();
    code = (f.resolvedType as unknown as { values: Record<string, number> }).values[String(raw)];
  }
  if (code === undefined || !(code >= 100 && code < 600)) throw new ConfigError(`${at}.code: unknown HTTP status ${JSON.stringify(raw)}`);
  // Envoy's toErrorCode: a status that is not an error is answered 429.
  return code < 400 ? 429 : code;
}

function compilePercent(p: ProtoJson | undefined, at: string): RuntimePercent | undefined {
  if (p === undefined) return undefined;
  const dv = (p['defaultValue'] ?? {}) as ProtoJson;
  const denName = String(dv['denominator'] ?? 'HUNDRED');
  const denominator = DENOMINATORS[denName];
  if (denominator === undefined) throw new ConfigError(`${at}.defaultValue.denominator: expected HUNDRED, TEN_THOUSAND or MILLION, got ${JSON.stringify(dv['denominator'])}`);
  const numerator = Number(dv['numerator'] ?? 0);
  if (!(Number.isInteger(numerator) && numerator >= 0)) throw new ConfigError(`${at}.defaultValue.numerator: expected a whole number ≥ 0`);
  const key = p['runtimeKey'];
  return { runtimeKey: typeof key === 'string' && key !== '' ? key : undefined, numerator, denominator };
}
