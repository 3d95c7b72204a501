// Envoy's local rate limit filter at request time: the config in force for the route (its
// per-route config, else the filter's own), enabled/enforced by their runtime fractions
// (shadow mode counts and refuses nothing), descriptors from the route's rate_limits, and the
// token buckets of the proxy-wide table. Envoy's stats per stat_prefix
// (`<stat_prefix>.http_local_rate_limit.enabled/ok/rate_limited/enforced`).
import type { RawHeader } from '../../http/index.ts';
import type { HeaderOps } from '../../router/header-ops.ts';
import type { RuntimeLayers } from '../../config/runtime-layer.ts';
import { populateDescriptors } from './actions.ts';
import type { DescriptorFacts } from './actions.ts';
import type { LocalRateLimitConfig, RuntimePercent } from './config.ts';
import type { RouteLimits } from './route-limits.ts';
import { BucketTable } from './token-bucket.ts';
import type { TokenBucket } from './token-bucket.ts';

/** One `envoy.filters.http.local_ratelimit` of a connection manager's chain: its name (per-route configs are found by it) and config. */
export interface LocalRateLimitFilter {
  name: string;
  config: LocalRateLimitConfig;
}

/** What the filter sees of one request. */
export interface RateLimitFacts extends DescriptorFacts {
  /** The downstream connection (`address:port`), for per-connection buckets. */
  connection: string;
}

/** Envoy's four counters of one stat_prefix. */
export interface LocalRateLimitCounters {
  enabled: number;
  ok: number;
  rateLimited: number;
  enforced: number;
}

/** The outcome: go on (with headers to add), or answer now. */
export type RateLimitVerdict =
  | {
    limited: false;
    /** request_headers_to_add_when_not_enforced of filters that would have refused (shadow). */
    requestHeaders: readonly HeaderOps[];
    /** x-ratelimit-* headers for the response. */
    responseHeaders: readonly RawHeader[];
  }
  | {
    limited: true;
    status: number;
    /** The config's response_headers_to_add. */
    headerOps: HeaderOps | undefined;
    /** x-envoy-ratelimited and x-ratelimit-* headers. */
    responseHeaders: readonly RawHeader[];
    /** The gRPC status a gRPC caller gets (RESOURCE_EXHAUSTED when so configured). */
    grpcStatus: number | undefined;
  };

export interface LocalRateLimitsOptions {
  /** Where filter_enabled/filter_enforced runtime keys are read. */
  runtime?: RuntimeLayers;
  /** Monotonic ms (default performance.now). */
  clock?: () => number;
  /** Uniform in [0, 1) for the enabled/enforced fractions. */
  random?: () => number;
  /** This proxy's service cluster (the source_cluster action's value). */
  localCluster?: string;
}

const NO_OPS: readonly HeaderOps[] = [];
const NO_HEADERS: readonly RawHeader[] = [];
const RATELIMITED: RawHeader = { name: 'x-envoy-ratelimited', value: 'true' };
/** gRPC RESOURCE_EXHAUSTED. */
const RESOURCE_EXHAUSTED = 8;

/**
 * The proxy's local rate limiting: its token buckets (kept across config updates by
 * identity) and stats; `check` runs a connection manager's local rate limit filters on a request.
 */
export class LocalRateLimits {
  readonly buckets: BucketTable;
  private readonly runtime: RuntimeLayers | undefined;
  private readonly random: () => number;
  readonly localCluster: string;
  private readonly counters = new Map<string, LocalRateLimitCounters>();

  constructor(o: LocalRateLimitsOptions = {}) {
    this.buckets = new BucketTable(o.clock);
    this.runtime = o.runtime;
    this.random = o.random ?? Math.random;
    this.localCluster = o.localCluster ?? '';
  }

  /** The counters of `statPrefix` (created at zero, as Envoy creates them with the filter). */
  stats(statPrefix: string): LocalRateLimitCounters {
    let c = this.counters.get(statPrefix);
    if (c === undefined) {
      c = { enabled: 0, ok: 0, rateLimited: 0, enforced: 0 };
      this.counters.set(statPrefix, c);
    }
    return c;
  }

  /** Every stat_prefix seen so far and its counters. */
  allStats(): ReadonlyMap<string, LocalRateLimitCounters> {
    return this.counters;
  }

  /** Runs `filters` (chain order) on a request to `route`; undefined when none applies. */
  check(filters: readonly LocalRateLimitFilter[], route: RouteLimits, f: RateLimitFacts): RateLimitVerdict | undefined {
    let requestHeaders: HeaderOps[] | undefined;
    let responseHeaders: RawHeader[] | undefined;
    for (const filter of filters) {
      const per = route.perFilter.get(filter.name);
      if (per === 'disabled') continue;
      const cfg = per ?? filter.config;
      if (!this.fraction(cfg.filterEnabled)) continue;
      const stats = this.stats(cfg.statPrefix);
      stats.enabled++;
      const descriptors: string[] = [];
      if (cfg.descriptors.length > 0) this.descriptorsOf(cfg, route, f, descriptors);
      const now = this.buckets.now();
      const connection = cfg.perConnection ? `@${f.connection}` : '';
      const allowed = this.consume(cfg, descriptors, connection, now);
      if (cfg.xRateLimitHeaders) (responseHeaders ??= []).push(...this.xRateLimitHeaders(cfg, descriptors, connection, now));
      if (allowed) {
        stats.ok++;
        continue;
      }
      stats.rateLimited++;
      if (!this.fraction(cfg.filterEnforced)) {
        if (cfg.requestHeadersWhenNotEnforced !== undefined) (requestHeaders ??= []).push(cfg.requestHeadersWhenNotEnforced);
        continue;
      }
      stats.enforced++;
      const headers = [RATELIMITED, ...(responseHeaders ?? NO_HEADERS)];
      return { limited: true, status: cfg.status, headerOps: cfg.responseHeaders, responseHeaders: headers, grpcStatus: cfg.grpcResourceExhausted ? RESOURCE_EXHAUSTED : undefined };
    }
    if (requestHeaders === undefined && responseHeaders === undefined) return undefined;
    return { limited: false, requestHeaders: requestHeaders ?? NO_OPS, responseHeaders: responseHeaders ?? NO_HEADERS };
  }

  private fraction(p: RuntimePercent | undefined): boolean {
    if (p === undefined) return false;
    if (this.runtime !== undefined) return this.runtime.featureEnabled(p.runtimeKey, p.numerator, p.denominator, this.random());
    if (p.numerator >= p.denominator) return true;
    return p.numerator > 0 && Math.floor(this.random() * p.denominator) < p.numerator;
  }

  // The route's rate_limits at the filter's stage, and the virtual host's per vh_rate_limits.
  private descriptorsOf(cfg: LocalRateLimitConfig, route: RouteLimits, f: DescriptorFacts, out: string[]): void {
    populateDescriptors(route.policies, cfg.stage, f, out);
    const vh = route.includeVh ? 'INCLUDE' : cfg.vhRateLimits;
    if (vh === 'INCLUDE' || (vh === 'OVERRIDE' && route.policies.length === 0)) populateDescriptors(route.vhPolicies, cfg.stage, f, out);
  }

  /**
   * Envoy's LocalRateLimiterImpl::requestAllowed: matched descriptors' buckets in the config's
   * order (strictest first), stopping at the first empty one; then the default bucket, unless a
   * descriptor matched and always_consume_default_token_bucket is off.
   */
  private consume(cfg: LocalRateLimitConfig, descriptors: readonly string[], connection: string, now: number): boolean {
    let matched = false;
    if (descriptors.length > 0) {
      for (const d of cfg.descriptors) {
        if (!descriptors.includes(d.key)) continue;
        matched = true;
        if (!this.buckets.bucket(connection === '' ? d.bucketId : `${cfg.identity}${connection}#${d.key}`, d.bucket, now).tryConsume(now)) return false;
      }
    }
    if (matched && !cfg.alwaysConsumeDefaultBucket) return true;
    // No token bucket at all: Envoy's limiter has no tokens to give.
    if (cfg.bucket === undefined) return false;
    return this.buckets.bucket(`${cfg.identity}${connection}`, cfg.bucket, now).tryConsume(now);
  }

  // DRAFT_VERSION_03 headers of the bucket the request counts against: the first request
  // descriptor that matches a configured one, else the default bucket.
  private xRateLimitHeaders(cfg: LocalRateLimitConfig, descriptors: readonly string[], connection: string, now: number): RawHeader[] {
    let bucket: TokenBucket | undefined;
    for (const key of descriptors) {
      const d = cfg.descriptorsByKey.get(key);
      if (d !== undefined) { bucket = this.buckets.bucket(connection === '' ? d.bucketId : `${cfg.identity}${connection}#${d.key}`, d.bucket, now); break; }
    }
    if (bucket === undefined && cfg.bucket !== undefined) bucket = this.buckets.bucket(`${cfg.identity}${connection}`, cfg.bucket, now);
    if (bucket === undefined) return [];
    return [
      { name: 'x-ratelimit-limit', value: String(bucket.params.maxTokens) },
      { name: 'x-ratelimit-remaining', value: String(bucket.remaining(now)) },
      { name: 'x-ratelimit-reset', value: String(bucket.resetSeconds(now)) },
    ];
  }
}

/** Envoy's stats of one stat_prefix as `/stats` prints them. */
export function localRateLimitStatLines(prefix: string, c: LocalRateLimitCounters): string[] {
  const p = `${prefix}.http_local_rate_limit`;
  return [`${p}.enabled: ${c.enabled}`, `${p}.enforced: ${c.enforced}`, `${p}.ok: ${c.ok}`, `${p}.rate_limited: ${c.rateLimited}`];
}

/** The same in Prometheus form, as Envoy names them (`envoy_<prefix>_http_local_rate_limit_<stat>`). */
export function localRateLimitPrometheus(all: ReadonlyMap<string, LocalRateLimitCounters>): string {
  if (all.size === 0) return '';
  const out: string[] = [];
  const names: [keyof LocalRateLimitCounters, string][] = [['enabled', 'enabled'], ['enforced', 'enforced'], ['ok', 'ok'], ['rateLimited', 'rate_limited']];
  for (const [field, stat] of names) {
    for (const [prefix, c] of all) {
      const name = `envoy_${prefix.replace(/[^a-zA-Z0-9_]/g, '_')}_http_local_rate_limit_${stat}`;
      out.push(`# TYPE ${name} counter`, `${name} ${c[field]}`);
    }
  }
  return out.join('\n');
}
