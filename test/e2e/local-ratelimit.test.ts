// Istio's documented local rate limit (istio.io, "Enabling Rate Limits using Envoy", Local rate
// limit) applied unchanged through a real `sextant pilot` to a real `sextant proxy` in front of
// the productpage app: the EnvoyFilter that inserts envoy.filters.http.local_ratelimit into the
// inbound connection manager (4 requests a minute), then its per-route variant (the bucket in
// the HTTP_ROUTE patch's typed_per_filter_config of virtual host inbound|http|9080). As the
// docs show: four 200s, then 429 with x-local-rate-limit, and the filter's stats.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { startSidecarMesh } from '../helpers/sidecar-processes.ts';
import type { SidecarMesh } from '../helpers/sidecar-processes.ts';
import { ingressSidecar } from '../helpers/istio-yaml.ts';
import { waitFor } from '../helpers/pilot-process.ts';

const WORKLOAD = '127.0.64.1';
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

// As istio.io documents it (the filter for every inbound route of productpage).
const ISTIO_LOCAL_RATE_LIMIT = `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-local-ratelimit-svc
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      app: productpage
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: SIDECAR_INBOUND
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: http_local_rate_limiter
              token_bucket:
                max_tokens: 4
                tokens_per_fill: 4
                fill_interval: 60s
              filter_enabled:
                runtime_key: local_rate_limit_enabled
                default_value:
                  numerator: 100
                  denominator: HUNDRED
              filter_enforced:
                runtime_key: local_rate_limit_enforced
                default_value:
                  numerator: 100
                  denominator: HUNDRED
              response_headers_to_add:
                - append: false
                  header:
                    key: x-local-rate-limit
                    value: 'true'
`;

// As istio.io documents it (the bucket on the routes of virtual host inbound|http|9080 only).
const ISTIO_LOCAL_RATE_LIMIT_PER_ROUTE = `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-local-ratelimit-svc
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      app: productpage
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: SIDECAR_INBOUND
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: http_local_rate_limiter
    - applyTo: HTTP_ROUTE
      match:
        context: SIDECAR_INBOUND
        routeConfiguration:
          vhost:
            name: "inbound|http|9080"
            route:
              action: ANY
      patch:
        operation: MERGE
        value:
          typed_per_filter_config:
            envoy.filters.http.local_ratelimit:
              "@type": type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              value:
                stat_prefix: http_local_rate_limiter
                token_bucket:
                  max_tokens: 4
                  tokens_per_fill: 4
                  fill_interval: 60s
                filter_enabled:
                  runtime_key: local_rate_limit_enabled
                  default_value:
                    numerator: 100
                    denominator: HUNDRED
                filter_enforced:
                  runtime_key: local_rate_limit_enforced
                  default_value:
                    numerator: 100
                    denominator: HUNDRED
                response_headers_to_add:
                  - append: false
                    header:
                      key: x-local-rate-limit
                      value: 'true'
`;

interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string }

function get(path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: WORKLOAD, port: 9080, path, headers: { host: 'productpage:9080' }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function startApp(): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end('<title>Simple Bookstore App</title>'); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

function config(appPort: number, envoyFilter: string): string {
  return `${ingressSidecar({ name: 'productpage', bind: WORKLOAD, defaultEndpoint: `127.0.0.1:${appPort}` })}\n---\n${envoyFilter}`;
}

test('Istio\'s documented local rate limit EnvoyFilter, and its per-route variant, limit productpage to 4 requests a minute', async () => {
  const app = await startApp();
  cleanups.push(app.close);
  const mesh: SidecarMesh = await startSidecarMesh(config(app.port, ISTIO_LOCAL_RATE_LIMIT));
  cleanups.push(mesh.stop);
  const sidecar = await mesh.sidecar(WORKLOAD, 'productpage-v1', { app: 'productpage', version: 'v1' });
  const stats = async (): Promise<string> => (await fetch(`http://${sidecar.admin}/stats`)).text();

  // The docs' check: for i in {1..5}; do curl productpage:9080/productpage; done → 200 200 200 200 429
  const replies: Reply[] = [];
  for (let i = 0; i < 5; i++) replies.push(await get('/productpage'));
  assert.deepEqual(replies.map((r) => r.status), [200, 200, 200, 200, 429]);
  assert.match(replies[0]!.body, /<title>Simple Bookstore App<\/title>/);
  const refused = replies[4]!;
  assert.deepEqual([refused.headers['x-local-rate-limit'], refused.headers['x-envoy-ratelimited'], refused.body], ['true', 'true', 'local_rate_limited']);
  const s = await stats();
  for (const line of ['enabled: 5', 'ok: 4', 'rate_limited: 1', 'enforced: 1']) assert.ok(s.includes(`http_local_rate_limiter.http_local_rate_limit.${line}\n`), `${line} in\n${s}`);

  // The per-route variant: the connection manager's filter has no bucket (and is not enabled);
  // the routes of inbound|http|9080 carry one of their own, which starts full.
  mesh.writeConfig(config(app.port, ISTIO_LOCAL_RATE_LIMIT_PER_ROUTE));
  await waitFor('the per-route config in the sidecar', async () => {
    const dump = await (await fetch(`http://${sidecar.admin}/config_dump`)).text();
    return dump.includes('typedPerFilterConfig');
  }, 30_000);
  const again: number[] = [];
  for (let i = 0; i < 5; i++) again.push((await get('/productpage')).status);
  assert.deepEqual(again, [200, 200, 200, 200, 429]);
  const s2 = await stats();
  for (const line of ['enabled: 10', 'ok: 8', 'rate_limited: 2', 'enforced: 2']) assert.ok(s2.includes(`http_local_rate_limiter.http_local_rate_limit.${line}\n`), `${line} in\n${s2}`);
});

const LIMITED = '127.0.64.2';

function getFrom(source: string, path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: LIMITED, port: 9080, path, localAddress: source, headers: { host: 'productpage:9080' }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function rateLimitConfig(appPort: number, enforcedPercent: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: ${LIMITED}}]
---
${ingressSidecar({ name: 'productpage', bind: LIMITED, defaultEndpoint: `127.0.0.1:${appPort}` })}
---
apiVersion: sextant.io/v1alpha1
kind: RateLimit
metadata: {name: productpage, namespace: default}
spec:
  host: productpage
  limit: {tokens: 5, fillInterval: 60s}
  routes: [{pathPrefix: /api, limit: {tokens: 2, fillInterval: 60s}}]
  callers: [{sourceIp: 127.0.64.9, limit: {tokens: 1, fillInterval: 60s}}]
  enforcedPercent: ${enforcedPercent}
  headers: {response: {x-local-rate-limit: "true"}, rateLimit: true}
`;
}

test('a RateLimit through the pilot: the service\'s default bucket, a route\'s and a caller\'s, exact counts; shadow mode after a change keeps the empty buckets empty', async () => {
  const app = await startApp();
  cleanups.push(app.close);
  const mesh = await startSidecarMesh(rateLimitConfig(app.port, 100));
  cleanups.push(mesh.stop);
  const sidecar = await mesh.sidecar(LIMITED, 'productpage-v1', { app: 'productpage', version: 'v1' });
  const statuses = async (source: string, path: string, n: number): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await getFrom(source, path)).status);
    return out;
  };
  // the route's bucket of 2 (each also takes one of the default 5)
  const first = await getFrom('127.0.64.8', '/api/products/1');
  assert.deepEqual([first.status, first.headers['x-ratelimit-limit'], first.headers['x-ratelimit-remaining']], [200, '2', '1']);
  assert.deepEqual(await statuses('127.0.64.8', '/api/products/2', 2), [200, 429]);
  // the caller's bucket of 1
  const caller = [await getFrom('127.0.64.9', '/reviews'), await getFrom('127.0.64.9', '/reviews')];
  assert.deepEqual(caller.map((r) => r.status), [200, 429]);
  assert.deepEqual([caller[1]!.headers['x-local-rate-limit'], caller[1]!.headers['x-envoy-ratelimited'], caller[1]!.body], ['true', 'true', 'local_rate_limited']);
  // what is left of the default bucket: 5 - 2 (route) - 1 (caller) = 2
  assert.deepEqual(await statuses('127.0.64.8', '/reviews', 3), [200, 200, 429]);
  const stats = async (): Promise<string> => (await fetch(`http://${sidecar.admin}/stats`)).text();
  const s = await stats();
  for (const line of ['enabled: 8', 'ok: 5', 'rate_limited: 3', 'enforced: 3']) assert.ok(s.includes(`ratelimit.default.productpage.http_local_rate_limit.${line}\n`), `${line} in\n${s}`);

  // Shadow mode: the change keeps the buckets (empty), so nothing is refused but everything is counted.
  mesh.writeConfig(rateLimitConfig(app.port, 0));
  await waitFor('shadow mode in the sidecar', async () => (await (await fetch(`http://${sidecar.admin}/config_dump`)).text()).includes('"numerator": 0'), 30_000);
  assert.deepEqual(await statuses('127.0.64.8', '/reviews', 2), [200, 200]);
  const s2 = await stats();
  for (const line of ['enabled: 10', 'ok: 5', 'rate_limited: 5', 'enforced: 3']) assert.ok(s2.includes(`ratelimit.default.productpage.http_local_rate_limit.${line}\n`), `${line} in\n${s2}`);
});
