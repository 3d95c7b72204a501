// The compilers on their own: Envoy's virtual host precedence, matchers, subsets with
// fallback, STRICT_DNS, ORIGINAL_DST idle expiry, ejection bounds, and the errors that
// become NACK reasons.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RouteTable } from '../../src/proxy/router/route-table.ts';
import { Cluster } from '../../src/proxy/cluster/cluster.ts';
import { compileListener } from '../../src/proxy/listener/listener-spec.ts';
import { compileStatsConfig } from '../../src/proxy/telemetry/stats-config.ts';

const route = (cluster: string) => ({ match: { prefix: '/' }, route: { cluster } });

test('virtual hosts: exact beats suffix wildcard beats prefix wildcard beats *, port stripped as a fallback', () => {
  const t = new RouteTable({
    name: 'r',
    virtualHosts: [
      { name: 'exact', domains: ['api.example.com', 'api.example.com:8080'], routes: [route('a')] },
      { name: 'suffix-long', domains: ['*.api.example.com'], routes: [route('b')] },
      { name: 'suffix', domains: ['*.example.com'], routes: [route('c')] },
      { name: 'prefix', domains: ['api.*'], routes: [route('d')] },
      { name: 'any', domains: ['*'], routes: [route('e')] },
    ],
  }, 'RouteConfiguration r');
  assert.equal(t.virtualHost('api.example.com')?.name, 'exact');
  assert.equal(t.virtualHost('API.Example.com:8080')?.name, 'exact');
  // The full authority is matched first (a prefix wildcard matches it), then without the port.
  assert.equal(t.virtualHost('api.example.com:9999')?.name, 'prefix');
  assert.equal(t.virtualHost('www.example.com:9999')?.name, 'suffix');
  assert.equal(t.virtualHost('v1.api.example.com')?.name, 'suffix-long');
  assert.equal(t.virtualHost('www.example.com')?.name, 'suffix');
  assert.equal(t.virtualHost('api.other.org')?.name, 'prefix');
  assert.equal(t.virtualHost('other.org')?.name, 'any');
});

test('route matchers: headers (present, regex, invert), query parameters, case-insensitive paths, order', () => {
  const t = new RouteTable({
    name: 'r',
    virtualHosts: [{ name: 'v', domains: ['*'], routes: [
      { name: 'inv', match: { prefix: '/', headers: [{ name: 'x-canary', presentMatch: true, invertMatch: true }, { name: 'x-env', safeRegexMatch: { regex: 'prod|stage' } }] }, route: { cluster: 'stable' } },
      { name: 'ci', match: { path: '/Admin', caseSensitive: false }, route: { cluster: 'admin' } },
      { name: 'rest', match: { prefix: '/' }, route: { cluster: 'rest' } },
    ] }],
  }, 'r');
  const vh = t.virtualHost('x')!;
  const pick = (path: string, headers: [string, string][]) => vh.routes.find((r) => r.match(path, '', headers.map(([name, value]) => ({ name, value })), 'GET', 'x'))?.name;
  assert.equal(pick('/a', [['X-Env', 'prod']]), 'inv');
  assert.equal(pick('/a', [['X-Env', 'prod'], ['x-canary', '1']]), 'rest');
  assert.equal(pick('/a', [['X-Env', 'production']]), 'rest', 'safe_regex matches the whole value');
  assert.equal(pick('/admin', []), 'ci');
});

test('invalid resources fail with the resource and field in the message', () => {
  assert.throws(() => new RouteTable({ name: 'r', virtualHosts: [{ name: 'v', domains: ['a'], routes: [{ match: { safeRegex: { regex: '(' } }, route: { cluster: 'x' } }] }] }, 'RouteConfiguration r'),
    /^ConfigError: RouteConfiguration r\.virtualHosts\[0\]\.routes\[0\]\.match\.safeRegex\.regex: invalid regular expression "\("/);
  assert.throws(() => new RouteTable({ name: 'r', virtualHosts: [{ name: 'a', domains: ['x'], routes: [] }, { name: 'b', domains: ['x'], routes: [] }] }, 'RouteConfiguration r'),
    { message: 'RouteConfiguration r.virtualHosts[1].domains: domain x appears in more than one virtual host' });
  assert.throws(() => new RouteTable({ name: 'r', virtualHosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'x', retryPolicy: { retryOn: '5xx,sometimes' } } }] }] }, 'RouteConfiguration r'),
    { message: 'RouteConfiguration r.virtualHosts[0].routes[0].route.retryPolicy.retryOn: unknown retry condition sometimes' });
  assert.throws(() => new Cluster({ name: 'c', type: 'EDS', lbPolicy: 'FANCY' }, 'Cluster c'), { message: 'Cluster c.lbPolicy: unsupported load balancing policy FANCY' });
  assert.throws(() => compileListener({ name: 'l', address: { socketAddress: { address: 'localhost', portValue: 1 } }, filterChains: [] }, 'Listener l'),
    { message: 'Listener l.address.socketAddress.address: "localhost" is not an IP address' });
  assert.throws(() => compileStatsConfig({ value: { metrics: [{ tags_to_remove: ['request_path'] }] } }, 'istio.stats'),
    { message: 'istio.stats.value.metrics[0]: unknown label request_path' });
});

const ep = (port: number, version: string) => ({ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: port } } }, metadata: { filterMetadata: { 'envoy.lb': { version } } } });

test('subsets pick matching endpoints and fall back as configured', () => {
  const mk = (fallbackPolicy: string) => {
    const c = new Cluster({ name: 'c', type: 'EDS', lbSubsetConfig: { fallbackPolicy, defaultSubset: { version: 'v1' }, subsetSelectors: [{ keys: ['version'] }] } }, 'c');
    c.setAssignment({ endpoints: [{ lbEndpoints: [ep(1, 'v1'), ep(2, 'v2')] }] }, 'cla');
    return c;
  };
  const c = mk('NO_FALLBACK');
  for (let i = 0; i < 10; i++) assert.equal(c.pick({}, { version: 'v2' })?.port, 2);
  assert.equal(c.pick({}, { version: 'v3' }), undefined);
  assert.equal(mk('DEFAULT_SUBSET').pick({}, { version: 'v3' })?.port, 1);
  assert.ok([1, 2].includes(mk('ANY_ENDPOINT').pick({}, { version: 'v3' })!.port));
});

test('STRICT_DNS resolves its hostnames into hosts', async () => {
  const c = new Cluster({ name: 'dns', type: 'STRICT_DNS', dnsRefreshRate: '60s', loadAssignment: { clusterName: 'dns', endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: 'localhost', portValue: 8080 } } } }] }] } }, 'dns');
  c.startDns(() => {});
  const deadline = Date.now() + 5000;
  while (c.hosts.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  c.close();
  assert.ok(c.hosts.length >= 1);
  assert.ok(c.hosts.every((h) => h.port === 8080 && ['127.0.0.1', '::1'].includes(h.address)));
});

test('ORIGINAL_DST hosts are forgotten after the cleanup interval', async () => {
  const c = new Cluster({ name: 'PassthroughCluster', type: 'ORIGINAL_DST', cleanupInterval: '0.1s' }, 'p');
  for (let i = 0; i < 100; i++) c.originalDstHost('10.0.0.1', 1000 + i);
  assert.equal(c.originalDstHost('10.0.0.1', 1000), c.originalDstHost('10.0.0.1', 1000));
  await new Promise((r) => setTimeout(r, 350));
  const fresh = c.originalDstHost('10.0.0.1', 5000);
  assert.equal(fresh.port, 5000);
  // Only the one just used remains.
  assert.equal((c as unknown as { hostsByKey: Map<string, unknown> }).hostsByKey.size, 1);
  c.close();
});

test('max ejection percent bounds ejections, but one host can always be ejected', () => {
  const c = new Cluster({ name: 'c', type: 'EDS', outlierDetection: { consecutive_5xx: 1, maxEjectionPercent: 10, interval: '10s' } }, 'c');
  c.setAssignment({ endpoints: [{ lbEndpoints: [ep(1, 'a'), ep(2, 'a'), ep(3, 'a')] }] }, 'cla');
  for (const h of c.hosts) c.outlier!.report(h, 'error5xx');
  assert.deepEqual(c.hosts.map((h) => h.ejected), [true, false, false]);
  c.close();
});
