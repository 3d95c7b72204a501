// Sextant's RateLimit kind (sextant.io/v1alpha1): local rate limits on the inbound side of a
// service's instances, as token buckets per instance (Envoy's local_ratelimit, which the pilot
// generates from it): a default bucket, buckets per route (a VirtualService route by name, or
// a path prefix), per caller (a SPIFFE principal, or a source IP or CIDR), shadow mode
// (enabled/enforced percentages) and the answer's headers. The spec type, its schema and the
// rules across its fields.
import { checkFQDN, checkHeaderName, checkIPOrCIDR, parseDurationMs } from './checks.ts';
import type { Duration, LabelSelector } from './kinds.ts';
import { arr, bool, int, map, num, obj, str, type NodeRule, type ObjectSchema } from './schema.ts';
import type { Issues } from './schema.ts';
import type { ResourceName } from './semantic.ts';

export const RATE_LIMIT_API_VERSION = 'sextant.io/v1alpha1';

/** A token bucket: `tokens` at most, `tokensPerFill` (default: tokens) added every `fillInterval`. */
export interface RateLimitBucket {
  tokens: number;
  fillInterval: Duration;
  tokensPerFill?: number;
}

export interface RateLimitSpec {
  /** The service whose instances are limited (a ServiceEntry host); or `workloadSelector`; neither: every workload of the namespace. */
  host?: string;
  workloadSelector?: LabelSelector;
  /** The port (the service port with `host`, the workload port with a selector); absent: every inbound HTTP port. */
  port?: number;
  /** The bucket every request takes a token from; absent: no limit but the more specific ones. */
  limit?: RateLimitBucket;
  /** Buckets for some routes: a VirtualService HTTP route of the host by name, or a path prefix. */
  routes?: { name?: string; pathPrefix?: string; limit: RateLimitBucket }[];
  /** Buckets for some callers: an mTLS identity, or a source address or CIDR. */
  callers?: { principal?: string; sourceIp?: string; limit: RateLimitBucket }[];
  /** Shadow mode: the share of requests checked, and of those over the limit refused (default 100 and 100). */
  enabledPercent?: number;
  enforcedPercent?: number;
  /** The refusal's status (default 429). */
  status?: number;
  /** Headers: `response` added to a refusal, `shadow` to a request shadow mode let through, `rateLimit` the X-RateLimit headers (draft 03). */
  headers?: { response?: Record<string, string>; shadow?: Record<string, string>; rateLimit?: boolean };
}

/** Envoy's floor on a fill interval. */
export const MIN_FILL_INTERVAL_MS = 50;
/** At most this many routes and callers per rule (each is a bucket and a descriptor in every request's path). */
export const MAX_RATE_LIMIT_ENTRIES = 64;

const fillInterval: NodeRule<string> = (v, path, issues) => {
  const n = parseDurationMs(v);
  if (n === undefined) issues.add(path, `Invalid value: ${JSON.stringify(v)}: must be a duration such as "1s" or "1m"`);
  else if (n < MIN_FILL_INTERVAL_MS || n > 86_400_000) issues.add(path, `Invalid value: ${JSON.stringify(v)}: must be between 50ms and 24h`);
  else if (n !== Math.round(n)) issues.add(path, `Invalid value: ${JSON.stringify(v)}: must be whole milliseconds`);
};

const bucket = obj({
  tokens: int({ min: 1, max: 4_294_967_295 }),
  fillInterval: str({ rules: [fillInterval] }),
  tokensPerFill: int({ min: 1, max: 4_294_967_295 }),
}, { required: ['tokens', 'fillInterval'] });

const headerMap = map(str({ maxLength: 16_384 }), { maxProperties: 10 });

/** The structural schema of RateLimit's spec. */
export const rateLimitSchema: ObjectSchema = obj({
  host: str({ minLength: 1, maxLength: 253 }),
  workloadSelector: obj({ matchLabels: map(str({ maxLength: 63 }), { maxProperties: 64 }) }),
  port: int({ min: 1, max: 65535 }),
  limit: bucket,
  routes: arr(obj({ name: str({ minLength: 1, maxLength: 256 }), pathPrefix: str({ minLength: 1, maxLength: 4096 }), limit: bucket }, { required: ['limit'] }), { maxItems: MAX_RATE_LIMIT_ENTRIES }),
  callers: arr(obj({ principal: str({ minLength: 1, maxLength: 1024 }), sourceIp: str({ minLength: 1, maxLength: 64 }), limit: bucket }, { required: ['limit'] }), { maxItems: MAX_RATE_LIMIT_ENTRIES }),
  enabledPercent: num({ min: 0, max: 100 }),
  enforcedPercent: num({ min: 0, max: 100 }),
  status: int({ min: 400, max: 599 }),
  headers: obj({ response: headerMap, shadow: headerMap, rateLimit: bool() }),
});

/** The rules across fields: one way of selecting, one way of matching each entry, buckets whose intervals nest. */
export function checkRateLimit(spec: RateLimitSpec, _id: ResourceName, issues: Issues): void {
  if (spec.host !== undefined && spec.workloadSelector !== undefined) issues.add('spec', 'Invalid value: set host or workloadSelector, not both');
  if (spec.host !== undefined) {
    const e = spec.host.includes('*') ? `Invalid value: ${JSON.stringify(spec.host)}: a rate limit names one service, not a wildcard` : checkFQDN(spec.host);
    if (e !== undefined) issues.add('spec.host', e);
  }
  if (spec.limit === undefined && (spec.routes ?? []).length === 0 && (spec.callers ?? []).length === 0) {
    issues.add('spec', 'Invalid value: a rate limit needs a limit, routes or callers');
  }
  const defaultMs = spec.limit !== undefined ? parseDurationMs(spec.limit.fillInterval) : undefined;
  const nests = (b: RateLimitBucket, path: string): void => {
    const ms = parseDurationMs(b.fillInterval);
    if (defaultMs !== undefined && ms !== undefined && ms % defaultMs !== 0) {
      issues.add(`${path}.limit.fillInterval`, `Invalid value: ${JSON.stringify(b.fillInterval)}: must be a multiple of spec.limit.fillInterval (${spec.limit!.fillInterval}), as Envoy refills descriptor buckets on the default bucket's fills`);
    }
  };
  if (spec.limit === undefined) {
    // Without a default bucket, the default's fill interval is the common divisor of the others (Envoy's floor: 50ms).
    const all = [...(spec.routes ?? []), ...(spec.callers ?? [])].map((e) => parseDurationMs(e.limit.fillInterval)).filter((n): n is number => n !== undefined);
    const g = all.reduce((a, b) => gcd(a, b), 0);
    if (all.length > 0 && g < MIN_FILL_INTERVAL_MS) issues.add('spec', `Invalid value: without spec.limit the fill intervals of routes and callers need a common divisor of at least 50ms (they have ${g}ms)`);
  }
  const routeKeys = new Set<string>();
  (spec.routes ?? []).forEach((r, i) => {
    const path = `spec.routes[${i}]`;
    if ((r.name === undefined) === (r.pathPrefix === undefined)) issues.add(path, 'Invalid value: set exactly one of name, pathPrefix');
    if (r.pathPrefix !== undefined && !r.pathPrefix.startsWith('/')) issues.add(`${path}.pathPrefix`, `Invalid value: ${JSON.stringify(r.pathPrefix)}: must start with "/"`);
    if (r.name !== undefined && spec.host === undefined) issues.add(`${path}.name`, 'Invalid value: a route by name needs spec.host (the VirtualService routes of that host)');
    const key = r.name !== undefined ? `name:${r.name}` : `prefix:${r.pathPrefix ?? ''}`;
    if (routeKeys.has(key)) issues.add(path, 'Invalid value: duplicate route');
    routeKeys.add(key);
    nests(r.limit, path);
  });
  const callerKeys = new Set<string>();
  (spec.callers ?? []).forEach((c, i) => {
    const path = `spec.callers[${i}]`;
    if ((c.principal === undefined) === (c.sourceIp === undefined)) issues.add(path, 'Invalid value: set exactly one of principal, sourceIp');
    if (c.principal !== undefined && !c.principal.startsWith('spiffe://')) issues.add(`${path}.principal`, `Invalid value: ${JSON.stringify(c.principal)}: a caller identity is a SPIFFE URI (spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT)`);
    if (c.sourceIp !== undefined) {
      const e = checkIPOrCIDR(c.sourceIp);
      if (e !== undefined) issues.add(`${path}.sourceIp`, e);
    }
    const key = c.principal !== undefined ? `p:${c.principal}` : `ip:${c.sourceIp ?? ''}`;
    if (callerKeys.has(key)) issues.add(path, 'Invalid value: duplicate caller');
    callerKeys.add(key);
    nests(c.limit, path);
  });
  for (const [what, hs] of [['response', spec.headers?.response], ['shadow', spec.headers?.shadow]] as const) {
    for (const name of Object.keys(hs ?? {})) {
      const e = checkHeaderName(name);
      if (e !== undefined) issues.add(`spec.headers.${what}[${name}]`, e);
    }
  }
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
