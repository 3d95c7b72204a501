// Envoy's local rate limit filter as the proxy runs it: token buckets (Envoy's discrete fills,
// time-driven), exact counts of 429 / RL for a burst, shadow mode (enabled but not enforced:
// nothing refused, everything counted), descriptors from route rate_limits, per-route configs,
// x-ratelimit headers, runtime keys read from RTDS, config the proxy cannot run refused with
// its field, and balances that survive a config update.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LISTENER_TYPE, ROUTE_TYPE, RUNTIME_TYPE, TYPED_STRUCT_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import {
  BucketTable, compileLocalRateLimit, compileRouteLimits, LOCAL_RATELIMIT_TYPE, LocalRateLimits, maskAddress, routeLimits, TokenBucket,
} from '../../../src/proxy/filters/local-ratelimit/index.ts';
import type { LocalRateLimitFilter, RateLimitFacts } from '../../../src/proxy/filters/local-ratelimit/index.ts';
import { RuntimeLayers } from '../../../src/proxy/config/runtime-layer.ts';
import { RouteTable } from '../../../src/proxy/router/route-table.ts';
import { compileListener } from '../../../src/proxy/listener/listener-spec.ts';
import { assignment, edsCluster, freePort, httpListener, meshWith, routeConfig, send, startBackend } from '../helpers/fixtures.ts';

const ENABLED = { runtimeKey: 'local_rate_limit_enabled', defaultValue: { numerator: 100, denominator: 'HUNDRED' } };
const ENFORCED = { runtimeKey: 'local_rate_limit_enforced', defaultValue: { numerator: 100, denominator: 'HUNDRED' } };
const NOT_ENFORCED = { runtimeKey: 'local_rate_limit_enforced', defaultValue: { numerator: 0, denominator: 'HUNDRED' } };

function lrl(extra: ProtoJson = {}): ProtoJson {
  return {
    '@type': LOCAL_RATELIMIT_TYPE, statPrefix: 'http_local_rate_limiter',
    tokenBucket: { maxTokens: 4, tokensPerFill: 4, fillInterval: '60s' },
    filterEnabled: ENABLED, filterEnforced: ENFORCED, ...extra,
  };
}

/** A clock the test moves by hand. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

function facts(over: Partial<RateLimitFacts> = {}): RateLimitFacts {
  return {
    method: 'GET', path: '/reviews/1', query: '', authority: 'reviews', headers: [], remoteAddress: '10.1.2.3',
    principal: undefined, routeCluster: 'inbound|9080||', localCluster: 'reviews.default', connection: '10.1.2.3:5000', ...over,
  };
}

function routeTable(route: ProtoJson, vh: ProtoJson = {}): { table: RouteTable; limits: ReturnType<typeof routeLimits> } {
  const table = new RouteTable({ name: 'r', virtualHosts: [{ name: 'v', domains: ['*'], routes: [{ name: 'all', match: { prefix: '/' }, ...route }], ...vh }] }, 'RouteConfiguration r');
  compileRouteLimits(table, 'RouteConfiguration r');
  return { table, limits: routeLimits(table, table.virtualHosts[0]!.routes[0]!) };
}

const NO_ROUTE = routeTable({ route: { cluster: 'c' } }).limits;

test('a token bucket starts full, gains tokens_per_fill every whole fill_interval up to max_tokens, and is reshaped without a refill', () => {
  const b = new TokenBucket({ maxTokens: 3, tokensPerFill: 2, fillIntervalMs: 1000 }, 0);
  assert.deepEqual([b.tryConsume(0), b.tryConsume(10), b.tryConsume(20), b.tryConsume(30)], [true, true, true, false]);
  assert.equal(b.remaining(999), 0, 'no fill before a whole interval');
  assert.equal(b.remaining(1000), 2);
  assert.equal(b.remaining(5000), 3, 'capped at max_tokens');
  assert.equal(b.resetSeconds(5400), 1, 'the interval truncated to whole seconds, less the whole seconds since the last fill');
  b.tryConsume(5400);
  b.reshape({ maxTokens: 10, tokensPerFill: 1, fillIntervalMs: 1000 }, 5500);
  assert.equal(b.remaining(5500), 2, 'a new shape keeps the balance');
  b.reshape({ maxTokens: 1, tokensPerFill: 1, fillIntervalMs: 1000 }, 5500);
  assert.equal(b.remaining(5500), 1, 'capped by a smaller maximum');
  const long = new TokenBucket({ maxTokens: 4, tokensPerFill: 4, fillIntervalMs: 60_000 }, 0);
  long.tryConsume(0);
  assert.equal(long.resetSeconds(12_300), 48, 'x-ratelimit-reset: whole seconds left of the interval');
});

test('the bucket table keeps a balance by identity and forgets only buckets that are full again', () => {
  const clock = manualClock();
  const t = new BucketTable(clock.now, 2);
  const p = { maxTokens: 2, tokensPerFill: 1, fillIntervalMs: 1000 };
  assert.equal(t.bucket('a', p).tryConsume(clock.now()), true);
  assert.equal(t.bucket('a', { ...p }).remaining(clock.now()), 1, 'same identity, new params object: same balance');
  t.bucket('b', p).tryConsume(clock.now());
  t.bucket('c', p); // the table is at its bound, but no bucket is full: nothing goes
  assert.deepEqual([t.size, t.peek('a')!.remaining(clock.now())], [3, 1]);
  clock.advance(2000);
  t.bucket('d', p);
  t.bucket('e', p); // at the doubled bound: every bucket has filled up again, and goes (nothing is lost)
  assert.deepEqual([t.peek('a'), t.peek('b'), t.size], [undefined, undefined, 1]);
});

test('a burst against a bucket of 4 is answered ok 4 times and refused 6 times; stats count each', () => {
  const clock = manualClock();
  const limits = new LocalRateLimits({ clock: clock.now });
  const filters: LocalRateLimitFilter[] = [{ name: 'envoy.filters.http.local_ratelimit', config: compileLocalRateLimit(lrl(), 'lrl', 'l/c/f', false) }];
  const outcomes = Array.from({ length: 10 }, () => limits.check(filters, NO_ROUTE, facts()));
  assert.equal(outcomes.filter((o) => o === undefined).length, 4);
  const refused = outcomes.filter((o) => o?.limited === true);
  assert.equal(refused.length, 6);
  assert.deepEqual(refused[0], { limited: true, status: 429, headerOps: undefined, responseHeaders: [{ name: 'x-envoy-ratelimited', value: 'true' }], grpcStatus: undefined });
  assert.deepEqual(limits.stats('http_local_rate_limiter'), { enabled: 10, ok: 4, rateLimited: 6, enforced: 6 });
  clock.advance(59_999);
  assert.equal(limits.check(filters, NO_ROUTE, facts())?.limited, true, 'no token before the fill interval');
  clock.advance(1);
  assert.equal(limits.check(filters, NO_ROUTE, facts()), undefined, 'the fill came');
});

test('shadow mode (enabled, not enforced) refuses nothing, counts rate_limited, and adds the not-enforced request headers', () => {
  const limits = new LocalRateLimits({ clock: manualClock().now });
  const cfg = compileLocalRateLimit(lrl({ filterEnforced: NOT_ENFORCED, requestHeadersToAddWhenNotEnforced: [{ header: { key: 'x-would-be-limited', value: 'true' } }] }), 'lrl', 'id', false);
  const out = Array.from({ length: 6 }, () => limits.check([{ name: 'f', config: cfg }], NO_ROUTE, facts()));
  assert.equal(out.filter((o) => o?.limited === true).length, 0);
  assert.equal(out.filter((o) => o !== undefined && !o.limited && o.requestHeaders.length === 1).length, 2);
  assert.deepEqual(limits.stats('http_local_rate_limiter'), { enabled: 6, ok: 4, rateLimited: 2, enforced: 0 });
  // Without filter_enabled the filter is consulted for no request (Envoy's default of 0 %).
  const off = compileLocalRateLimit({ '@type': LOCAL_RATELIMIT_TYPE, statPrefix: 'off', tokenBucket: { maxTokens: 1, fillInterval: '1s' } }, 'lrl', 'off', false);
  for (let i = 0; i < 3; i++) assert.equal(limits.check([{ name: 'f', config: off }], NO_ROUTE, facts()), undefined);
  assert.deepEqual(limits.stats('off'), { enabled: 0, ok: 0, rateLimited: 0, enforced: 0 });
});

test('runtime keys from an RTDS layer override filter_enabled / filter_enforced, as in Envoy', () => {
  const layers = new RuntimeLayers({ names: ['sextant-adaptive'] });
  const limits = new LocalRateLimits({ clock: manualClock().now, runtime: layers });
  const f = [{ name: 'f', config: compileLocalRateLimit(lrl({ tokenBucket: { maxTokens: 1, fillInterval: '60s' } }), 'lrl', 'id', false) }];
  assert.equal(limits.check(f, NO_ROUTE, facts()), undefined);
  assert.equal(limits.check(f, NO_ROUTE, facts())?.limited, true);
  layers.apply(new Map([['sextant-adaptive', { name: 'sextant-adaptive', version: '1', resource: { name: 'sextant-adaptive', layer: { local_rate_limit_enforced: 0 } } }]]));
  assert.equal(limits.check(f, NO_ROUTE, facts()), undefined, 'enforced 0 %: shadow, nothing refused');
  layers.apply(new Map([['sextant-adaptive', { name: 'sextant-adaptive', version: '2', resource: { name: 'sextant-adaptive', layer: { local_rate_limit_enabled: { numerator: 0, denominator: 'HUNDRED' } } } }]]));
  assert.equal(limits.check(f, NO_ROUTE, facts()), undefined, 'enabled 0 % (a FractionalPercent value): not consulted');
  assert.deepEqual(limits.stats('http_local_rate_limiter'), { enabled: 3, ok: 1, rateLimited: 2, enforced: 1 });
});

test('descriptors from route rate_limits: the strictest matching bucket first, then the default bucket; x-ratelimit headers of the matched one', () => {
  const limits = new LocalRateLimits({ clock: manualClock().now });
  const cfg = compileLocalRateLimit(lrl({
    tokenBucket: { maxTokens: 100, tokensPerFill: 100, fillInterval: '1s' },
    enableXRatelimitHeaders: 'DRAFT_VERSION_03',
    descriptors: [
      { entries: [{ key: 'client', value: 'batch' }], tokenBucket: { maxTokens: 2, tokensPerFill: 2, fillInterval: '60s' } },
      { entries: [{ key: 'principal', value: 'spiffe://cluster.local/ns/shop/sa/frontend' }], tokenBucket: { maxTokens: 1, tokensPerFill: 1, fillInterval: '60s' } },
    ],
  }), 'lrl', 'id', false);
  const { limits: route } = routeTable({ route: { cluster: 'c', rateLimits: [
    { actions: [{ requestHeaders: { headerName: 'x-client', descriptorKey: 'client' } }] },
    { actions: [{ extension: { name: 'envoy.rate_limit_descriptors.expr', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.rate_limit_descriptors.expr.v3.Descriptor', descriptorKey: 'principal', text: 'connection.uri_san_peer_certificate' } } }] },
  ] } });
  const f = [{ name: 'f', config: cfg }];
  const batch = facts({ headers: [{ name: 'X-Client', value: 'batch' }] });
  const first = limits.check(f, route, batch);
  assert.deepEqual(first, { limited: false, requestHeaders: [], responseHeaders: [
    { name: 'x-ratelimit-limit', value: '2' }, { name: 'x-ratelimit-remaining', value: '1' }, { name: 'x-ratelimit-reset', value: '60' },
  ] });
  assert.equal(limits.check(f, route, batch)?.limited, false);
  const third = limits.check(f, route, batch);
  assert.equal(third?.limited, true);
  assert.deepEqual(third.responseHeaders.map((h) => h.name), ['x-envoy-ratelimited', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']);
  // Another client (no descriptor matches) uses the default bucket of 100.
  assert.equal(limits.check(f, route, facts({ headers: [{ name: 'x-client', value: 'web' }] }))?.limited, false);
  // The caller's identity (mTLS principal) has its own bucket of 1.
  const frontend = facts({ principal: 'spiffe://cluster.local/ns/shop/sa/frontend' });
  assert.equal(limits.check(f, route, frontend)?.limited, false);
  assert.equal(limits.check(f, route, frontend)?.limited, true);
  // The default bucket was taken by every request a descriptor bucket let through: 2 + 1 + 1.
  assert.equal(limits.buckets.peek('id')!.remaining(manualClock().now()), 96);
});

test('per-route typed_per_filter_config wins over the filter\'s own config (most specific first); FilterConfig disabled skips the route', () => {
  const limits = new LocalRateLimits({ clock: manualClock().now });
  const own = compileLocalRateLimit({ '@type': LOCAL_RATELIMIT_TYPE, statPrefix: 'http_local_rate_limiter' }, 'lrl', 'l/c/f', false);
  const perRoute = { '@type': TYPED_STRUCT_TYPE, typeUrl: LOCAL_RATELIMIT_TYPE, value: {
    stat_prefix: 'route_limiter', token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: '60s' },
    filter_enabled: { runtime_key: 'e', default_value: { numerator: 100, denominator: 'HUNDRED' } },
    filter_enforced: { runtime_key: 'f', default_value: { numerator: 100, denominator: 'HUNDRED' } },
    response_headers_to_add: [{ append: false, header: { key: 'x-local-rate-limit', value: 'true' } }],
  } };
  const { limits: limited } = routeTable({ route: { cluster: 'c' } }, { typedPerFilterConfig: { 'envoy.filters.http.local_ratelimit': perRoute } });
  const f = [{ name: 'envoy.filters.http.local_ratelimit', config: own }];
  assert.equal(limits.check(f, NO_ROUTE, facts()), undefined, 'the filter alone, without a bucket or filter_enabled, does nothing');
  assert.equal(limits.check(f, limited, facts()), undefined);
  const refused = limits.check(f, limited, facts());
  assert.equal(refused?.limited, true);
  assert.ok(refused.headerOps !== undefined);
  assert.deepEqual(limits.stats('route_limiter'), { enabled: 2, ok: 1, rateLimited: 1, enforced: 1 });
  const { limits: off } = routeTable({ route: { cluster: 'c' }, typedPerFilterConfig: { 'envoy.filters.http.local_ratelimit': { '@type': 'type.googleapis.com/envoy.config.route.v3.FilterConfig', disabled: true } } }, { typedPerFilterConfig: { 'envoy.filters.http.local_ratelimit': perRoute } });
  assert.equal(limits.check(f, off, facts()), undefined);
});

test('rate limit actions: remote address, masked address, generic key, header value match, query match, source cluster', () => {
  assert.equal(maskAddress('10.1.2.3', 16, 128), '10.1.0.0/16');
  assert.equal(maskAddress('::ffff:10.1.2.3', 24, 128), '10.1.2.0/24');
  assert.equal(maskAddress('2001:db8:1:2::5', 32, 48), '2001:db8:1::/48');
  assert.equal(maskAddress('2001:db8:1:2::5', 32, 32), '2001:db8::/32');
  const limits = new LocalRateLimits({ clock: manualClock().now, localCluster: 'reviews.default' });
  const one = { tokenBucket: { maxTokens: 1, tokensPerFill: 1, fillInterval: '60s' } };
  const cfg = compileLocalRateLimit(lrl({
    tokenBucket: { maxTokens: 1000, tokensPerFill: 1000, fillInterval: '1s' },
    descriptors: [
      { entries: [{ key: 'source_cluster', value: 'reviews.default' }, { key: 'masked_remote_address', value: '10.1.0.0/16' }], ...one },
      { entries: [{ key: 'generic_key', value: 'admin' }, { key: 'header_match', value: 'post' }], ...one },
      { entries: [{ key: 'query_match', value: 'debug' }], ...one },
      { entries: [{ key: 'remote_address', value: '192.0.2.1' }], ...one },
    ],
  }), 'lrl', 'id', false);
  const { limits: route } = routeTable({ route: { cluster: 'c', rateLimits: [
    { actions: [{ sourceCluster: {} }, { maskedRemoteAddress: { v4PrefixMaskLen: 16 } }] },
    { actions: [{ genericKey: { descriptorValue: 'admin' } }, { headerValueMatch: { descriptorValue: 'post', headers: [{ name: ':method', stringMatch: { exact: 'POST' } }] } }] },
    { actions: [{ queryParameterValueMatch: { descriptorValue: 'debug', queryParameters: [{ name: 'debug' }] } }] },
    { actions: [{ remoteAddress: {} }] },
  ] } });
  const f = [{ name: 'f', config: cfg }];
  const twice = (x: RateLimitFacts): (boolean | undefined)[] => [limits.check(f, route, x)?.limited, limits.check(f, route, x)?.limited];
  assert.deepEqual(twice(facts({ remoteAddress: '10.1.9.9' })), [undefined, true], 'source cluster and 10.1.0.0/16');
  assert.deepEqual(twice(facts({ remoteAddress: '172.16.0.1', method: 'POST' })), [undefined, true], 'generic key and :method POST');
  assert.deepEqual(twice(facts({ remoteAddress: '172.16.0.2', query: 'debug=1' })), [undefined, true], 'query parameter present');
  assert.deepEqual(twice(facts({ remoteAddress: '192.0.2.1' })), [undefined, true], 'remote address');
  assert.deepEqual(twice(facts({ remoteAddress: '172.16.0.3' })), [undefined, undefined], 'nothing matches: the default bucket of 1000');
});

test('config the filter cannot run is refused with its field', () => {
  const bad: [ProtoJson, boolean, RegExp][] = [
    [lrl({ statPrefix: '' }), false, /lrl\.statPrefix: required/],
    [lrl({ tokenBucket: { maxTokens: 1, fillInterval: '0.01s' } }), false, /lrl\.tokenBucket\.fillInterval: must be at least 50ms/],
    [lrl({ tokenBucket: { maxTokens: 0, fillInterval: '1s' } }), false, /lrl\.tokenBucket\.maxTokens: expected a whole number > 0/],
    [lrl({ tokenBucket: undefined }), true, /lrl\.tokenBucket: a per-route local rate limit needs a token bucket/],
    [lrl({ tokenBucket: { maxTokens: 4, fillInterval: '1s' }, descriptors: [{ entries: [{ key: 'a', value: 'b' }], tokenBucket: { maxTokens: 1, fillInterval: '1.5s' } }] }), false, /lrl\.descriptors\[0\]\.tokenBucket\.fillInterval: must be a multiple of the filter's fill interval \(1000ms\)/],
    [lrl({ descriptors: [{ entries: [{ key: 'a', value: '' }], tokenBucket: { maxTokens: 1, fillInterval: '60s' } }] }), false, /lrl\.descriptors\[0\]\.entries\[0\]\.value: required/],
    [lrl({ localClusterRateLimit: {} }), false, /lrl\.localClusterRateLimit: sharing a limit over the local cluster's members is not supported/],
    [{ '@type': TYPED_STRUCT_TYPE, typeUrl: LOCAL_RATELIMIT_TYPE, value: { stat_prefix: 'x', token_buckets: {} } }, false, /lrl\.value: .*token_buckets: no such field/],
  ];
  for (const [config, perRoute, message] of bad) assert.throws(() => compileLocalRateLimit(config, 'lrl', 'id', perRoute), message);
  assert.throws(() => routeTable({ route: { cluster: 'c', rateLimits: [{ actions: [{ metadata: { descriptorKey: 'k', metadataKey: { key: 'x', path: [{ key: 'y' }] } } }] }] } }),
    /RouteConfiguration r\.virtualHosts\[0\]\.routes\[0\]\.route\.rateLimits\[0\]\.actions\[0\]: the rate limit action metadata is not supported/);
  assert.throws(() => routeTable({ route: { cluster: 'c', rateLimits: [{ actions: [{ extension: { name: 'e', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.rate_limit_descriptors.expr.v3.Descriptor', descriptorKey: 'k', text: 'request.headers["x"]' } } }] }] } }),
    /actions\[0\]\.extension\.typedConfig\.text: the expression "request\.headers\[\\"x\\"\]" is not supported by this proxy/);
  // In a listener, the filter is compiled with the connection manager: a bad one refuses the listener.
  const listener = httpListener('l', 1, 'r', { httpFilters: [{ name: 'envoy.filters.http.local_ratelimit', typedConfig: lrl({ tokenBucket: { maxTokens: 1, fillInterval: '0.01s' } }) }] });
  assert.throws(() => compileListener(listener, 'Listener l'), /Listener l\.filterChains\[0\]\.filters\[0\]\.typedConfig\.httpFilters\[0\]\.typedConfig\.tokenBucket\.fillInterval: must be at least 50ms/);
});

/** Access log lines as JSON, once `n` are there. */
async function logLines(file: string, n: number): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + 10_000;
  let lines: Record<string, unknown>[] = [];
  while (Date.now() < deadline) {
    try { lines = readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>); } catch { /* not yet */ }
    if (lines.length >= n) return lines;
    await new Promise((r) => setTimeout(r, 50));
  }
  return lines;
}

test('through a sidecar: a burst of 10 against max_tokens 4 gets exactly 6 × 429 local_rate_limited with x-envoy-ratelimited and flag RL; stats in /stats and Prometheus', async () => {
  const app = await startBackend('reviews');
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-lrl-'));
  const logPath = path.join(dir, 'access.log');
  const filter = { name: 'envoy.filters.http.local_ratelimit', typedConfig: lrl({ responseHeadersToAdd: [{ append: false, header: { key: 'x-local-rate-limit', value: 'true' } }] }) };
  const m = await meshWith({
    clusters: [edsCluster('reviews')],
    endpoints: [assignment('reviews', [app.port])],
    listeners: [httpListener('l', port, 'r', { direction: 'INBOUND', accessLogPath: logPath, httpFilters: [filter] })],
    routes: [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{ name: 'all', match: { prefix: '/' }, route: { cluster: 'reviews' } }] }])],
  });
  try {
    await m.proxy.whenReady();
    const replies = [];
    for (let i = 0; i < 10; i++) replies.push(await send(port, '/reviews/1', { Host: 'reviews' }));
    assert.deepEqual(replies.map((r) => r.status), [200, 200, 200, 200, 429, 429, 429, 429, 429, 429]);
    const r = replies[4]!;
    assert.deepEqual([r.body, r.headers['x-envoy-ratelimited'], r.headers['x-local-rate-limit'], r.headers['content-type']], ['local_rate_limited', 'true', 'true', 'text/plain']);
    assert.equal(replies[0]!.headers['x-local-rate-limit'], undefined, 'response_headers_to_add is for the refusal only');
    assert.equal(app.hits, 4);
    const lines = await logLines(logPath, 10);
    assert.deepEqual(lines.slice(3, 6).map((l) => [l['response_code'], l['response_flags'], l['response_code_details']]),
      [[200, '-', 'via_upstream'], [429, 'RL', 'local_rate_limited'], [429, 'RL', 'local_rate_limited']]);
    const stats = await (await fetch(`http://${m.proxy.adminAddress}/stats`)).text();
    for (const line of ['http_local_rate_limiter.http_local_rate_limit.enabled: 10', 'http_local_rate_limiter.http_local_rate_limit.ok: 4', 'http_local_rate_limiter.http_local_rate_limit.rate_limited: 6', 'http_local_rate_limiter.http_local_rate_limit.enforced: 6']) {
      assert.ok(stats.includes(`${line}\n`), `${line} in\n${stats}`);
    }
    const prom = await (await fetch(`http://${m.proxy.adminAddress}/stats/prometheus`)).text();
    assert.match(prom, /^envoy_http_local_rate_limiter_http_local_rate_limit_enforced 6$/m);
    // gRPC callers get the refusal in gRPC: UNAVAILABLE (Envoy's mapping of 429)
    const grpc = await send(port, '/pkg.Svc/Call', { Host: 'reviews', 'content-type': 'application/grpc' }, { method: 'POST', body: '' });
    assert.deepEqual([grpc.status, grpc.headers['grpc-status'], grpc.headers['grpc-message']], [200, '14', 'local_rate_limited']);
  } finally {
    await m.close();
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('through a sidecar: a config change in the middle of a burst keeps the bucket\'s balance (no refill), and a bad change is NACKed', async () => {
  const app = await startBackend('reviews');
  const port = await freePort();
  const listener = (extra: ProtoJson): ProtoJson => httpListener('l', port, 'r', { direction: 'INBOUND', httpFilters: [{ name: 'envoy.filters.http.local_ratelimit', typedConfig: lrl(extra) }] });
  const routes = (limit: number): ProtoJson[] => [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{
    name: 'limited', match: { prefix: '/limited' }, route: { cluster: 'reviews' },
    typedPerFilterConfig: { 'envoy.filters.http.local_ratelimit': lrl({ statPrefix: 'route_limiter', tokenBucket: { maxTokens: limit, tokensPerFill: limit, fillInterval: '60s' } }) },
  }, { name: 'all', match: { prefix: '/' }, route: { cluster: 'reviews' } }] }])];
  const m = await meshWith({
    clusters: [edsCluster('reviews')],
    endpoints: [assignment('reviews', [app.port])],
    listeners: [listener({})],
    routes: routes(3),
  });
  try {
    await m.proxy.whenReady();
    const status = async (p: string): Promise<number> => (await send(port, p, { Host: 'reviews' })).status;
    // 3 of the listener's 4 tokens, and 2 of the route's 3.
    assert.deepEqual([await status('/a'), await status('/a'), await status('/a')], [200, 200, 200]);
    assert.deepEqual([await status('/limited'), await status('/limited')], [200, 200]);
    // The listener changes (a new header, a bigger bucket) and so does the route config.
    const acks = m.ads.acks.length;
    m.ads.set(LISTENER_TYPE, [listener({ tokenBucket: { maxTokens: 10, tokensPerFill: 10, fillInterval: '60s' }, responseHeadersToAdd: [{ header: { key: 'x-changed', value: '1' } }] })]);
    m.ads.set(ROUTE_TYPE, routes(5));
    await m.ads.waitFor((a) => a.typeUrl === LISTENER_TYPE && !a.nack, 10_000, acks);
    await m.ads.waitFor((a) => a.typeUrl === ROUTE_TYPE && !a.nack, 10_000, acks);
    // Rebuilt buckets would start full (10 and 5): the balances are 1 and 1.
    const after = await send(port, '/a', { Host: 'reviews' });
    assert.equal(after.status, 200);
    const refused = await send(port, '/a', { Host: 'reviews' });
    assert.deepEqual([refused.status, refused.headers['x-changed']], [429, '1'], 'refused under the new config');
    assert.deepEqual([await status('/limited'), await status('/limited')], [200, 429]);
    // A config the filter cannot run is refused; the last good one keeps limiting.
    const before = m.ads.acks.length;
    m.ads.set(LISTENER_TYPE, [listener({ tokenBucket: { maxTokens: 1, fillInterval: '0.01s' } })]);
    const nack = await m.ads.waitFor((a) => a.typeUrl === LISTENER_TYPE, 10_000, before);
    assert.equal(nack.nack, true);
    assert.match(nack.message ?? '', /Listener l\.filterChains\[0\]\.filters\[0\]\.typedConfig\.httpFilters\[0\]\.typedConfig\.tokenBucket\.fillInterval: must be at least 50ms/);
    assert.equal(await status('/a'), 429);
  } finally {
    await m.close();
    await app.close();
  }
});

test('through a sidecar: the RTDS layer turns enforcement off (shadow) and the refusals stop while rate_limited keeps counting', async () => {
  const app = await startBackend('reviews');
  const port = await freePort();
  const m = await meshWith({
    clusters: [edsCluster('reviews')],
    endpoints: [assignment('reviews', [app.port])],
    listeners: [httpListener('l', port, 'r', { direction: 'INBOUND', httpFilters: [{ name: 'envoy.filters.http.local_ratelimit', typedConfig: lrl({ tokenBucket: { maxTokens: 1, tokensPerFill: 1, fillInterval: '60s' } }) }] })],
    routes: [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{ name: 'all', match: { prefix: '/' }, route: { cluster: 'reviews' } }] }])],
  });
  try {
    await m.proxy.whenReady();
    const status = async (): Promise<number> => (await send(port, '/', { Host: 'reviews' })).status;
    assert.deepEqual([await status(), await status()], [200, 429]);
    const acks = m.ads.acks.length;
    m.ads.set(RUNTIME_TYPE, [{ name: 'sextant-adaptive', layer: { local_rate_limit_enforced: 0 } }]);
    await m.ads.waitFor((a) => a.typeUrl === RUNTIME_TYPE && !a.nack, 10_000, acks);
    assert.deepEqual([await status(), await status()], [200, 200]);
    const runtime = await (await fetch(`http://${m.proxy.adminAddress}/runtime`)).json() as { layers: string[]; entries: Record<string, { final_value: string; layer_values: string[] }> };
    assert.deepEqual(runtime, { layers: ['sextant-adaptive'], entries: { local_rate_limit_enforced: { final_value: '0', layer_values: ['0'] } } });
    assert.deepEqual(m.proxy.localRateLimits.stats('http_local_rate_limiter'), { enabled: 4, ok: 1, rateLimited: 3, enforced: 1 });
  } finally {
    await m.close();
    await app.close();
  }
});
