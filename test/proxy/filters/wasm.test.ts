// WASM filters in the sidecar: Proxy-Wasm modules built from AssemblyScript source with the
// public SDK, configured as Envoy's `envoy.filters.http.wasm` (inline, as an EnvoyFilter adds
// it, and over ECDS), running on real requests through the proxy: headers, local replies,
// bodies, host features, and what traps, runaway loops and unsupported imports do per fail_open.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import pino from 'pino';
import { EXTENSION_CONFIG_TYPE, LISTENER_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { WASM_HTTP_TYPE } from '../../../src/proxy/filters/wasm/index.ts';
import { HTTP_RBAC_TYPE } from '../../../src/proxy/filters/rbac/index.ts';
import { assignment, edsCluster, freePort, httpListener, meshWith, routeConfig, send, startBackend } from '../helpers/fixtures.ts';
import type { Backend } from '../helpers/fixtures.ts';
import { buildFilter } from '../../helpers/wasm-filters.ts';
import type { FilterName } from '../../helpers/wasm-filters.ts';

const ROOT_IDS: Record<FilterName, string> = {
  empty: 'empty', header: 'add_header', deny: 'deny', body: 'body', trap: 'trap', loop: 'loop', httpcall: 'httpcall', features: 'features',
};

const modules = new Map<FilterName, Buffer>();

/** An `envoy.filters.http.wasm` filter running `filter`, its module inline (as an EnvoyFilter carries it). */
function wasmFilter(name: string, filter: FilterName, opts: { configuration?: string; failOpen?: boolean } = {}): ProtoJson {
  return { name, typedConfig: wasmConfig(name, filter, opts) };
}

function wasmConfig(name: string, filter: FilterName, opts: { configuration?: string; failOpen?: boolean } = {}): ProtoJson {
  return {
    '@type': WASM_HTTP_TYPE,
    config: {
      name, rootId: ROOT_IDS[filter],
      vmConfig: { runtime: 'envoy.wasm.runtime.v8', code: { local: { inlineBytes: modules.get(filter)!.toString('base64') } } },
      ...(opts.configuration !== undefined ? { configuration: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: opts.configuration } } : {}),
      failOpen: opts.failOpen === true,
    },
  };
}

const requireSeen: ProtoJson = {
  name: 'envoy.filters.http.rbac',
  typedConfig: { '@type': HTTP_RBAC_TYPE, rules: { action: 'ALLOW', policies: { seen: { permissions: [{ header: { name: 'x-wasm-request', stringMatch: { exact: 'seen' } } }], principals: [{ any: true }] } } } },
};

const LISTENERS: Record<string, (port: number) => ProtoJson> = {
  header: (p) => httpListener('header', p, 'r', { httpFilters: [wasmFilter('header', 'header', { configuration: 'from-config' })] }),
  deny: (p) => httpListener('deny', p, 'r', { httpFilters: [wasmFilter('deny', 'deny', { configuration: '{"denyPrefix": "/admin"}' })] }),
  denyBadConfig: (p) => httpListener('denyBadConfig', p, 'r', { httpFilters: [wasmFilter('deny-bad', 'deny', { configuration: '{}' })] }),
  body: (p) => httpListener('body', p, 'r', { httpFilters: [wasmFilter('body', 'body')] }),
  trapOpen: (p) => httpListener('trapOpen', p, 'r', { httpFilters: [wasmFilter('trap-open', 'trap', { failOpen: true })] }),
  trapClosed: (p) => httpListener('trapClosed', p, 'r', { httpFilters: [wasmFilter('trap-closed', 'trap')] }),
  loop: (p) => httpListener('loop', p, 'r', { httpFilters: [wasmFilter('loop', 'loop')] }),
  httpcall: (p) => httpListener('httpcall', p, 'r', { httpFilters: [wasmFilter('httpcall', 'httpcall', { failOpen: true })] }),
  features: (p) => httpListener('features', p, 'r', { httpFilters: [wasmFilter('features', 'features', { configuration: 'cfg-1' })] }),
  // chain order: the header filter before RBAC lets RBAC see its header; after RBAC it comes too late
  wasmThenRbac: (p) => httpListener('wasmThenRbac', p, 'r', { httpFilters: [wasmFilter('header-first', 'header'), requireSeen] }),
  rbacThenWasm: (p) => httpListener('rbacThenWasm', p, 'r', { httpFilters: [requireSeen, wasmFilter('header-last', 'header')] }),
  // two filters: the body filter sees what the header filter added, the header filter the rewritten response
  twoFilters: (p) => httpListener('twoFilters', p, 'r', { httpFilters: [wasmFilter('two-header', 'header', { configuration: 'two' }), wasmFilter('two-body', 'body')] }),
  ecds: (p) => httpListener('ecds', p, 'r', { httpFilters: [{ name: 'extensions.istio.io/wasmplugin/default.header', configDiscovery: { configSource: { ads: {} }, typeUrls: [WASM_HTTP_TYPE] } }] }),
};

let backend: Backend;
let mesh: Awaited<ReturnType<typeof meshWith>>;
const ports: Record<string, number> = {};
const logLines: string[] = [];

before(async () => {
  for (const f of ['header', 'deny', 'body', 'trap', 'loop', 'httpcall', 'features'] as FilterName[]) modules.set(f, await buildFilter(f));
  backend = await startBackend('backend', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': 'yes' });
      res.end(`hello ${body} len=${req.headers['content-length'] ?? '-'} te=${req.headers['transfer-encoding'] ?? '-'}`);
    });
  });
  const listeners: ProtoJson[] = [];
  for (const [name, make] of Object.entries(LISTENERS)) {
    ports[name] = await freePort();
    listeners.push(make(ports[name]));
  }
  const logger = pino({ level: 'info' }, { write: (line: string) => { logLines.push(line); } });
  mesh = await meshWith({
    clusters: [edsCluster('backend')],
    endpoints: [assignment('backend', [backend.port])],
    listeners,
    routes: [routeConfig('r', [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'backend' } }] }])],
  }, { logger });
  await mesh.proxy.whenReady();
});

after(async () => {
  await mesh?.close();
  await backend?.close();
});

function headerAtBackend(name: string): string | undefined {
  const raw = backend.lastHeaders;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) return raw[i + 1];
  return undefined;
}

const wasm = () => mesh.proxy.listeners.wasm;

test('a filter adds a request header the upstream sees and a response header (its configuration) the client sees', async () => {
  const r = await send(ports['header']!, '/x', { host: 'svc' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-wasm-filter'], 'from-config');
  assert.equal(r.headers['x-backend'], 'yes');
  assert.equal(headerAtBackend('x-wasm-request'), 'seen');
  assert.equal(backend.lastUrl, '/x');
});

test('a filter refuses a path from its pluginConfig with a local 403 (body, headers, details); other paths pass', async () => {
  const hits = backend.hits;
  const denied = await send(ports['deny']!, '/admin/users', { host: 'svc' });
  assert.equal(denied.status, 403);
  assert.equal(denied.body, 'denied by policy\n');
  assert.equal(denied.headers['x-denied-by'], 'wasm');
  assert.equal(backend.hits, hits);
  const ok = await send(ports['deny']!, '/public', { host: 'svc' });
  assert.equal(ok.status, 200);
  assert.equal(backend.hits, hits + 1);
});

test('a plugin refusing its configuration (proxy_on_configure false) fails closed: 503', async () => {
  const r = await send(ports['denyBadConfig']!, '/public', { host: 'svc' });
  assert.equal(r.status, 503);
  const s = wasm().status().find((p) => p.name === 'deny-bad')!;
  assert.equal(s.failure, 'proxy_on_configure returned false: the plugin refused its configuration');
});

test('a filter rewrites bodies: the request held whole (its Content-Length set by the proxy), the response streamed without one', async () => {
  const r = await send(ports['body']!, '/echo', { host: 'svc', 'content-type': 'text/plain' }, { method: 'POST', body: 'ping and ping' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'rewritten: HELLO pong!! and pong!! len=17 te=-');
  assert.equal(r.headers['content-length'], undefined);
  assert.equal(r.headers['transfer-encoding'], 'chunked');
  // a request without a body passes the body callbacks by
  const g = await send(ports['body']!, '/get', { host: 'svc' });
  assert.equal(g.body, 'rewritten: HELLO  len=- te=-');
});

test('a chunked request body is rewritten too, and goes upstream chunked', async () => {
  const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: ports['body']!, path: '/chunked', method: 'POST', headers: { host: 'svc', 'transfer-encoding': 'chunked' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.write('ping ');
    setTimeout(() => req.end('ping'), 20);
  });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'rewritten: HELLO pong!! pong!! len=- te=chunked');
});

test('filters run in chain order: a header added before RBAC is seen by it; added after, too late', async () => {
  assert.equal((await send(ports['wasmThenRbac']!, '/x', { host: 'svc' })).status, 200);
  const late = await send(ports['rbacThenWasm']!, '/x', { host: 'svc' });
  assert.equal(late.status, 403);
  assert.equal(late.body, 'RBAC: access denied');
  // the filter after RBAC never saw the denied request, so it did not touch the answer either
  assert.equal(late.headers['x-wasm-filter'], undefined);
});

test('two filters: each sees the request as the one before left it, and the response in reverse order', async () => {
  const r = await send(ports['twoFilters']!, '/two', { host: 'svc' }, { method: 'POST', body: 'ping' });
  assert.equal(r.status, 200);
  assert.equal(headerAtBackend('x-wasm-request'), 'seen');
  assert.equal(r.body, 'rewritten: HELLO pong!! len=6 te=-');
  assert.equal(r.headers['x-wasm-filter'], 'two');
});

test('a trap under fail_open: the request goes on without the plugin, counted; the next request gets a new VM', async () => {
  const name = 'trap-open';
  const r = await send(ports['trapOpen']!, '/trap', { host: 'svc' });
  assert.equal(r.status, 200);
  assert.equal(backend.lastUrl, '/trap');
  assert.equal(headerAtBackend('x-wasm-trap'), undefined);
  assert.equal(wasm().counted('fail_open', name), 1);
  assert.equal(wasm().counted('vm_failures', name), 1);
  const next = await send(ports['trapOpen']!, '/ok', { host: 'svc' });
  assert.equal(next.status, 200);
  assert.equal(headerAtBackend('x-wasm-trap'), 'passed');
  assert.equal(wasm().status().find((p) => p.name === name)!.stats.vmStarts, 2);
  assert.ok(logLines.some((l) => l.includes('"wasmPlugin":"trap-open"') && l.includes('trapped: unreachable')), 'the trap is logged with the plugin');
});

test('a trap under fail_closed: 503 for that request, counted; the sidecar and the next request are fine', async () => {
  const name = 'trap-closed';
  const hits = backend.hits;
  const r = await send(ports['trapClosed']!, '/trap', { host: 'svc' });
  assert.equal(r.status, 503);
  assert.equal(backend.hits, hits);
  assert.equal(wasm().counted('fail_closed', name), 1);
  const next = await send(ports['trapClosed']!, '/ok', { host: 'svc' });
  assert.equal(next.status, 200);
  assert.equal(headerAtBackend('x-wasm-trap'), 'passed');
});

test('a filter that loops forever is stopped by its per-call budget (fail closed: 503); other listeners keep serving', async () => {
  const r = await send(ports['loop']!, '/loop', { host: 'svc' });
  assert.equal(r.status, 503);
  assert.equal(wasm().counted('fail_closed', 'loop'), 1);
  assert.ok(logLines.some((l) => l.includes('"wasmPlugin":"loop"') && l.includes('ran out of its per-call budget')), 'the budget is named in the log');
  assert.equal((await send(ports['header']!, '/still', { host: 'svc' })).status, 200);
  assert.equal((await send(ports['loop']!, '/fine', { host: 'svc' })).status, 200);
});

test('a module importing a host call this host lacks is refused at load, naming it; fail_open lets requests through', async () => {
  const r = await send(ports['httpcall']!, '/x', { host: 'svc' });
  assert.equal(r.status, 200);
  const s = wasm().status().find((p) => p.name === 'httpcall')!;
  assert.equal(s.failure, 'module refused: the module imports env.proxy_http_call, which this host does not provide');
  assert.ok(wasm().counted('fail_open', 'httpcall') >= 1);
});

test('host features: metrics, ticks and shared data, properties, plugin configuration, logging', async () => {
  await new Promise((r) => setTimeout(r, 120)); // a few 20 ms ticks
  const r1 = await send(ports['features']!, '/feat?x=1', { host: 'svc' });
  assert.equal(r1.status, 200);
  assert.equal(headerAtBackend('x-wasm-path'), '/feat?x=1');
  assert.equal(headerAtBackend('x-wasm-config'), 'cfg-1');
  assert.ok(Number(headerAtBackend('x-wasm-ticks')) >= 1, `ticks counted in shared data: ${headerAtBackend('x-wasm-ticks')}`);
  await send(ports['features']!, '/feat?x=2', { host: 'svc' });
  assert.equal(wasm().metrics.valueOf('wasm_features_requests'), 2n);
  const stats = await fetch(`http://${mesh.proxy.adminAddress}/stats/prometheus`).then((x) => x.text());
  assert.match(stats, /^wasm_features_requests 2$/m);
  assert.match(stats, /^sextant_wasm_fail_closed_total\{plugin="trap-closed"\} 1$/m);
  assert.ok(logLines.some((l) => l.includes('"wasmPlugin":"features"') && l.includes('features saw /feat?x=1')), 'the plugin\'s log line');
});

test('over ECDS: a filter named by config_discovery runs the config the server sends, and follows its updates', async () => {
  const name = 'extensions.istio.io/wasmplugin/default.header';
  const ecds = (cfg: string): ProtoJson => ({ name, typedConfig: wasmConfig('default.header', 'header', { configuration: cfg }) });
  mesh.ads.set(EXTENSION_CONFIG_TYPE, [ecds('v1')]);
  await until(() => wasm().extensionConfigNames.includes(name));
  assert.equal((await send(ports['ecds']!, '/e', { host: 'svc' })).headers['x-wasm-filter'], 'v1');
  mesh.ads.set(EXTENSION_CONFIG_TYPE, [ecds('v2')]);
  await until(async () => (await send(ports['ecds']!, '/e', { host: 'svc' })).headers['x-wasm-filter'] === 'v2');
  // a resource that is not a Wasm filter config is refused (NACK), and v2 keeps serving
  mesh.ads.set(EXTENSION_CONFIG_TYPE, [{ name, typedConfig: { '@type': HTTP_RBAC_TYPE } }]);
  await until(() => mesh.ads.acks.some((a) => a.typeUrl === EXTENSION_CONFIG_TYPE && a.nack));
  const nack = mesh.ads.acks.find((a) => a.typeUrl === EXTENSION_CONFIG_TYPE && a.nack)!;
  assert.equal(nack.message, `TypedExtensionConfig ${name}.typedConfig: ${HTTP_RBAC_TYPE} is not a filter this proxy takes over ECDS (only ${WASM_HTTP_TYPE})`);
  assert.equal((await send(ports['ecds']!, '/e', { host: 'svc' })).headers['x-wasm-filter'], 'v2');
});

test('a discovered filter whose config never arrives answers 500 (NFCF) after the wait', async () => {
  const port = await freePort();
  const l = httpListener('ecdsMissing', port, 'r', { httpFilters: [{ name: 'never-sent', configDiscovery: { configSource: { ads: {} }, typeUrls: [WASM_HTTP_TYPE] } }] });
  mesh.ads.set(LISTENER_TYPE, [...Object.entries(LISTENERS).map(([n, make]) => make(ports[n]!)), l]);
  await until(async () => (await send(port, '/m', { host: 'svc' }).catch(() => ({ status: 0 }))).status !== 0);
  const r = await send(port, '/m', { host: 'svc' });
  assert.equal(r.status, 500);
  assert.equal(wasm().counted('missing_config', 'never-sent') >= 1, true);
});

async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
