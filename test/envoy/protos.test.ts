// The Envoy proto root is parsed once and cached as a JSON descriptor: a later process builds
// the same root from the cache, and a corrupt or unwritable cache never breaks loading.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const srcDir = path.resolve(import.meta.dirname, '../../src');
const protosUrl = pathToFileURL(path.join(srcDir, 'envoy/protos.ts')).href;
const codecUrl = pathToFileURL(path.join(srcDir, 'envoy/codec.ts')).href;
const typesUrl = pathToFileURL(path.join(srcDir, 'envoy/types.ts')).href;
const extensionsUrl = pathToFileURL(path.join(srcDir, 'pilot/gen/protos.ts')).href;

const CLUSTER = {
  name: 'outbound|9080|v1|reviews.default.svc.cluster.local',
  type: 'EDS',
  connectTimeout: '10s',
  lbPolicy: 'LEAST_REQUEST',
  edsClusterConfig: { edsConfig: { ads: {}, initialFetchTimeout: '0s', resourceApiVersion: 'V3' }, serviceName: 'outbound|9080|v1|reviews.default.svc.cluster.local' },
  circuitBreakers: { thresholds: [{ maxConnections: 4294967295, maxPendingRequests: 4294967295, maxRequests: 4294967295, maxRetries: 4294967295, trackRemaining: true }] },
  outlierDetection: { consecutive5xx: 5, interval: '10s', baseEjectionTime: '30s', maxEjectionPercent: 100, enforcingConsecutive5xx: 100 },
  commonLbConfig: { localityWeightedLbConfig: {} },
  metadata: { filterMetadata: { istio: { services: [{ host: 'reviews.default.svc.cluster.local', name: 'reviews', namespace: 'default' }], subset: 'v1' } } },
  typedExtensionProtocolOptions: {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      commonHttpProtocolOptions: { idleTimeout: '3600s', maxRequestsPerConnection: 1 },
      useDownstreamProtocolConfig: { httpProtocolOptions: {}, http2ProtocolOptions: { maxConcurrentStreams: 1073741824 } },
    },
  },
};

const LISTENER = {
  name: '0.0.0.0_9080',
  address: { socketAddress: { address: '0.0.0.0', portValue: 9080 } },
  trafficDirection: 'OUTBOUND',
  bindToPort: false,
  filterChains: [{
    filterChainMatch: { transportProtocol: 'raw_buffer', applicationProtocols: ['http/1.1', 'h2c'] },
    filters: [{
      name: 'envoy.filters.network.http_connection_manager',
      typedConfig: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
        statPrefix: 'outbound_0.0.0.0_9080',
        rds: { configSource: { ads: {}, initialFetchTimeout: '0s', resourceApiVersion: 'V3' }, routeConfigName: '9080' },
        httpFilters: [{ name: 'envoy.filters.http.router', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
        useRemoteAddress: false,
        normalizePath: true,
        pathWithEscapedSlashesAction: 'KEEP_UNCHANGED',
        streamIdleTimeout: '0s',
      },
    }],
  }],
};

// Repeated scalars (packed in proto3) must encode the same from either source.
const ROUTE = {
  name: '9080',
  virtualHosts: [{
    name: 'reviews.default.svc.cluster.local:9080',
    domains: ['reviews.default.svc.cluster.local', 'reviews'],
    routes: [{
      match: { prefix: '/' },
      route: { cluster: 'outbound|9080||reviews.default.svc.cluster.local', timeout: '0s', retryPolicy: { retryOn: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes', numRetries: 2, retriableStatusCodes: [503, 504] } },
    }],
  }],
};

// An extension the shared root does not carry, loaded on demand as the pilot does for
// EnvoyFilter values: must work on a root built from the cache too.
const LUA = { '@type': 'type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua', defaultSourceCode: { inlineString: 'function envoy_on_request(h) end' } };

// Types no pilot-emitted resource reaches but EnvoyFilter values and Anys name: the cached
// root must keep them (a descriptor pruned to reachable types would lose them for good).
const LOOKUPS = ['google.protobuf.StringValue', 'google.protobuf.Int64Value', 'envoy.config.bootstrap.v3.Bootstrap', 'envoy.config.metrics.v3.StatsdSink', 'envoy.data.accesslog.v3.HTTPAccessLogEntry'];

const CHILD = `
const { envoyRoot, envoyRootSource } = await import(${JSON.stringify(protosUrl)});
const { encodeMessage, decodeMessage, messageType } = await import(${JSON.stringify(codecUrl)});
const { CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE } = await import(${JSON.stringify(typesUrl)});
const { ensureTypesIn } = await import(${JSON.stringify(extensionsUrl)});
const input = JSON.parse(process.env.PROTOS_TEST_INPUT);
const before = envoyRootSource() ?? null;
envoyRoot();
const out = { before, source: envoyRootSource() };
for (const [key, url] of [['cluster', CLUSTER_TYPE], ['listener', LISTENER_TYPE], ['route', ROUTE_TYPE]]) {
  const bytes = encodeMessage(url, input[key]);
  out[key] = { hex: Buffer.from(bytes).toString('hex'), json: decodeMessage(url, bytes) };
}
ensureTypesIn(input.lua);
const luaUrl = input.lua['@type'];
out.lua = decodeMessage(luaUrl, encodeMessage(luaUrl, input.lua));
out.lookups = input.lookups.map((name) => messageType(name).fullName);
process.stdout.write(JSON.stringify(out));
`;

interface ChildResult {
  before: string | null;
  source: string;
  cluster: { hex: string; json: unknown };
  listener: { hex: string; json: unknown };
  route: { hex: string; json: unknown };
  lua: unknown;
  lookups: string[];
}

function runChild(cacheDir: string): ChildResult {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD], {
    env: { ...process.env, SEXTANT_PROTO_CACHE: cacheDir, PROTOS_TEST_INPUT: JSON.stringify({ cluster: CLUSTER, listener: LISTENER, route: ROUTE, lua: LUA, lookups: LOOKUPS }) },
    encoding: 'utf8',
    timeout: 120_000,
    killSignal: 'SIGKILL',
  });
  assert.equal(r.status, 0, `child failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as ChildResult;
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-protos-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function descriptorFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => /^envoy-descriptor-[0-9a-f]{16}\.json$/.test(f));
}

function assertSameResources(a: ChildResult, b: ChildResult): void {
  for (const key of ['cluster', 'listener', 'route'] as const) {
    assert.equal(a[key].hex, b[key].hex, `${key}: protobuf bytes differ between sources`);
    assert.deepEqual(a[key].json, b[key].json);
  }
  assert.deepEqual(a.lua, b.lua);
  assert.deepEqual(a.lookups, b.lookups);
}

test('the first process parses the protos and writes one cache file; the next builds from it with identical results', (t) => {
  const dir = tempDir(t);
  const first = runChild(dir);
  assert.equal(first.before, null);
  assert.equal(first.source, 'protos');
  assert.deepEqual(readdirSync(dir), descriptorFiles(dir), 'only the descriptor is left in the cache dir (no temp files)');
  assert.equal(descriptorFiles(dir).length, 1);

  const second = runChild(dir);
  assert.equal(second.source, 'cache');
  assert.equal(descriptorFiles(dir).length, 1);
  assertSameResources(first, second);
  assert.deepEqual(second.cluster.json, CLUSTER);
  assert.deepEqual(second.listener.json, LISTENER);
  assert.deepEqual(second.route.json, ROUTE);
  assert.deepEqual(second.lua, { defaultSourceCode: LUA.defaultSourceCode });
  assert.deepEqual(second.lookups, LOOKUPS.map((n) => `.${n}`));
});

test('a truncated cache file is detected, replaced, and loading still works', (t) => {
  const dir = tempDir(t);
  const first = runChild(dir);
  const [name] = descriptorFiles(dir);
  assert.ok(name !== undefined);
  const file = path.join(dir, name);
  const whole = readFileSync(file, 'utf8');
  writeFileSync(file, whole.slice(0, Math.floor(whole.length / 2)));

  const afterCorrupt = runChild(dir);
  assert.equal(afterCorrupt.source, 'protos');
  assertSameResources(first, afterCorrupt);
  assert.equal(readFileSync(file, 'utf8').length, whole.length, 'the truncated file was rewritten whole');

  assert.equal(runChild(dir).source, 'cache');
});

test('a cache file of another format or key (valid JSON, no marker) is replaced', (t) => {
  const dir = tempDir(t);
  runChild(dir);
  const [name] = descriptorFiles(dir);
  assert.ok(name !== undefined);
  const file = path.join(dir, name);
  const desc = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  delete desc['format'];
  writeFileSync(file, JSON.stringify(desc));

  assert.equal(runChild(dir).source, 'protos');
  assert.equal((JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>)['format'], 'sextant-envoy-descriptor/1');
  assert.equal(runChild(dir).source, 'cache');
});

test('an unwritable cache dir (a path under a regular file) still loads, from the protos', (t) => {
  const dir = tempDir(t);
  const blocker = path.join(dir, 'not-a-dir');
  writeFileSync(blocker, 'x');
  const cacheDir = path.join(blocker, 'cache');
  const first = runChild(cacheDir);
  assert.equal(first.source, 'protos');
  assert.deepEqual(first.cluster.json, CLUSTER);
  assert.equal(runChild(cacheDir).source, 'protos');
  assert.deepEqual(readdirSync(dir), ['not-a-dir']);
});
