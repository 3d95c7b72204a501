// The monitoring API and the dashboard page over a real access-log store (node:sqlite in a temp
// directory): tokens (bearer, the page's cookie from /dashboard?token=, namespace-scoped tokens
// refused, --dashboard-insecure), the graph's edges exactly the calls stored, operations,
// peers of a path, paged logs, every bad parameter a 400 naming it, and the alerts route's
// answers without Prometheus.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createDashboard, TOKEN_COOKIE, type Dashboard } from '../../src/dashboard/index.ts';
import type { AccessLogEntry, LogStore } from '../../src/telemetry/index.ts';
import { MIN, ORDERS, USERS, shopTraffic } from './fixture.ts';
import { openSqliteLogStore } from '../../src/telemetry/sqlite-store.ts';
import { freePort } from '../helpers/ports.ts';

const ADMIN = 'admin-token-0123456789';
const SCOPED = 'scoped-token-0123456789';
const NOW = Date.UTC(2026, 0, 5, 12, 0, 30);

interface Reply { status: number; headers: http.IncomingHttpHeaders; text: string; json: Record<string, unknown> }

let dir: string;
let store: LogStore;
let storeOpen = true;
let dashboard: Dashboard;
let open: Dashboard;
let server: http.Server;
let base: string;
let openBase: string;
let openServer: http.Server;

async function serve(d: Dashboard): Promise<[http.Server, string]> {
  const s = http.createServer((req, res) => d.handle(req, res));
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return [s, `http://127.0.0.1:${(s.address() as AddressInfo).port}`];
}

async function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> {
  const res = await fetch(url, { headers, method, redirect: 'manual' });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try { json = JSON.parse(text) as Record<string, unknown>; } catch { /* HTML */ }
  return { status: res.status, headers: Object.fromEntries(res.headers) as http.IncomingHttpHeaders, text, json };
}

const auth = { authorization: `Bearer ${ADMIN}` };

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sextant-dashboard-'));
  const tokens = path.join(dir, 'tokens');
  writeFileSync(tokens, `${ADMIN} *\n${SCOPED} shop\n`);
  store = openSqliteLogStore({ path: path.join(dir, 'access.db'), retentionIntervalMs: 0 });
  await store.insert(shopTraffic(NOW));
  const logger = pino({ level: 'silent' });
  dashboard = createDashboard({ access: { kind: 'tokens', file: tokens }, logStore: () => (storeOpen ? store : undefined), logger, now: () => NOW });
  open = createDashboard({ access: { kind: 'insecure' }, logStore: () => store, logger, now: () => NOW, prometheusUrl: `http://127.0.0.1:${await freePort()}` });
  [server, base] = await serve(dashboard);
  [openServer, openBase] = await serve(open);
});

after(async () => {
  dashboard.close();
  open.close();
  await new Promise((r) => server.close(r));
  await new Promise((r) => openServer.close(r));
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('monitoring API access', () => {
  it('answers 401 without a token or with an unknown one, 403 for a namespace-scoped token, 200 with a * token', async () => {
    const none = await get(`${base}/api/v1/graph`);
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer realm="sextant-monitoring"');
    assert.match(String(none.json['error']), /a token is required: send "Authorization: Bearer TOKEN"/);
    const wrong = await get(`${base}/api/v1/graph`, { authorization: 'Bearer not-a-token-at-all-000' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json['error'], "this token is not in the pilot's --api-tokens file");
    const scoped = await get(`${base}/api/v1/graph`, { authorization: `Bearer ${SCOPED}` });
    assert.equal(scoped.status, 403);
    assert.match(String(scoped.json['error']), /needs a token granted on \*/);
    assert.equal((await get(`${base}/api/v1/graph`, auth)).status, 200);
    // the page and its assets are behind the same tokens
    const page = await get(`${base}/dashboard`);
    assert.equal(page.status, 401);
    assert.match(page.text, /\/dashboard\?token=TOKEN/);
    assert.equal((await get(`${base}/dashboard/assets/dashboard.js`)).status, 401);
  });

  it('exchanges /dashboard?token= for an HttpOnly cookie and drops the token from the address', async () => {
    const bad = await get(`${base}/dashboard?token=not-a-token-at-all-000`);
    assert.equal(bad.status, 401);
    assert.equal(bad.headers['set-cookie'], undefined);
    const ok = await get(`${base}/dashboard?token=${ADMIN}`);
    assert.equal(ok.status, 303);
    assert.equal(ok.headers['location'], '/dashboard');
    assert.equal(ok.headers['set-cookie'], `${TOKEN_COOKIE}=${ADMIN}; Path=/; HttpOnly; SameSite=Strict`);
    const cookie = { cookie: `other=1; ${TOKEN_COOKIE}=${ADMIN}` };
    const page = await get(`${base}/dashboard`, cookie);
    assert.equal(page.status, 200);
    assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
    assert.match(page.text, /data-insecure="false" data-prometheus="false"/);
    for (const asset of ['dashboard.js', 'graph.js', 'dashboard.css']) assert.equal((await get(`${base}/dashboard/assets/${asset}`, cookie)).status, 200, asset);
    assert.equal((await get(`${base}/dashboard/assets/nope.js`, cookie)).status, 404);
    assert.equal((await get(`${base}/api/v1/operations`, cookie)).status, 200);
  });

  it('is open to all with --dashboard-insecure, and says so on the page', async () => {
    assert.equal((await get(`${openBase}/api/v1/graph`)).status, 200);
    const page = await get(`${openBase}/dashboard`);
    assert.equal(page.status, 200);
    assert.match(page.text, /data-insecure="true" data-prometheus="true"/);
  });

  it('answers only GET and HEAD', async () => {
    const post = await get(`${base}/api/v1/graph`, auth, 'POST');
    assert.equal(post.status, 405);
    assert.equal(post.headers['allow'], 'GET, HEAD');
    const head = await get(`${base}/api/v1/graph`, auth, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
  });
});

describe('monitoring API answers', () => {
  it('draws the graph with exactly the calls stored, each call once', async () => {
    const r = await get(`${base}/api/v1/graph?window=5m`, auth);
    assert.equal(r.status, 200);
    const g = r.json as unknown as { window: { from: number; to: number }; nodes: Array<{ id: string; kind: string }>; edges: Array<{ source: string; target: string; counts: { total: number; '4xx': number; '5xx': number; byOrigin: Record<string, Record<string, number>> } }> };
    assert.deepEqual(g.window, { from: NOW - 5 * MIN, to: NOW });
    assert.deepEqual(g.nodes.map((n) => `${n.kind} ${n.id}`), [
      `service service:${ORDERS}`, `service service:${USERS}`,
      'unknown unknown:10.1.2.3',
      'workload workload:shop/orders-v1', 'workload workload:shop/users-v1', 'workload workload:shop/w1', 'workload workload:shop/w2', 'workload workload:shop/w3',
    ]);
    const edges = Object.fromEntries(g.edges.map((e) => [`${e.source} -> ${e.target}`, [e.counts.total, e.counts['4xx'], e.counts['5xx'], e.counts.byOrigin['app']!['5xx'], e.counts.byOrigin['proxy']!['5xx']]]));
    assert.deepEqual(edges, {
      [`service:${ORDERS} -> workload:shop/orders-v1`]: [10, 3, 1, 1, 0],
      [`service:${USERS} -> workload:shop/users-v1`]: [1, 0, 1, 0, 1],
      [`unknown:10.1.2.3 -> service:${ORDERS}`]: [1, 0, 1, 1, 0],
      [`workload:shop/w1 -> service:${ORDERS}`]: [3, 1, 0, 0, 0],
      [`workload:shop/w1 -> service:${USERS}`]: [1, 0, 1, 0, 1],
      [`workload:shop/w2 -> service:${ORDERS}`]: [3, 1, 0, 0, 0],
      [`workload:shop/w3 -> service:${ORDERS}`]: [3, 1, 0, 0, 0],
    });
  });

  it('lists operations, sorted and limited, for one service or all', async () => {
    const all = await get(`${base}/api/v1/operations?window=10m`, auth);
    const rows = (all.json['operations'] as Array<{ service: string; operation: string; counts: { total: number } }>).map((o) => [o.service, o.operation, o.counts.total]);
    assert.deepEqual(rows, [[ORDERS, '/orders/{id}', 10], [USERS, '/users/{id}', 1]]);
    const one = await get(`${base}/api/v1/operations?window=10m&service=${USERS}&sort=errors&limit=1`, auth);
    assert.deepEqual((one.json['operations'] as Array<{ operation: string }>).map((o) => o.operation), ['/users/{id}']);
  });

  it('names the three callers of a path with their IPs and counts, and none before the calls', async () => {
    const r = await get(`${base}/api/v1/access/peers?path=/orders/1&since=10m`, auth);
    assert.equal(r.status, 200);
    assert.equal(r.json['path'], '/orders/1');
    const peers = (r.json['peers'] as Array<{ sourceIp: string; sourceWorkload: string; destinationIp: string; count: number; firstSeen: number; lastSeen: number }>)
      .map((p) => [p.sourceIp, p.sourceWorkload, p.destinationIp, p.count, p.firstSeen, p.lastSeen]);
    assert.deepEqual(peers, [
      ['127.0.3.2', 'w1', '127.0.3.9:8080', 2, NOW - 3 * MIN, NOW - 2 * MIN],
      ['127.0.3.3', 'w2', '127.0.3.9:8080', 2, NOW - 3 * MIN + 1000, NOW - 2 * MIN + 1000],
      ['127.0.3.4', 'w3', '127.0.3.9:8080', 2, NOW - 3 * MIN + 2000, NOW - 2 * MIN + 2000],
    ]);
    const before = await get(`${base}/api/v1/access/peers?path=/orders/1&from=${NOW - 20 * MIN}&to=${new Date(NOW - 10 * MIN).toISOString()}`, auth);
    assert.deepEqual(before.json['peers'], []);
    const byOperation = await get(`${base}/api/v1/access/peers?operation=${encodeURIComponent('/orders/{id}')}&since=1h`, auth);
    assert.equal((byOperation.json['peers'] as unknown[]).length, 4);
  });

  it('pages through access logs newest first, filtered by origin and class', async () => {
    const first = await get(`${base}/api/v1/access/logs?since=10m&codeClass=4xx&reporter=destination&limit=2`, auth);
    assert.equal(first.status, 200);
    const page1 = first.json['entries'] as AccessLogEntry[];
    assert.deepEqual(page1.map((e) => [e.sourceWorkload, e.responseCode, e.origin]), [['w3', 404, 'app'], ['w2', 404, 'app']]);
    assert.equal(typeof first.json['next'], 'string');
    const second = await get(`${base}/api/v1/access/logs?since=10m&codeClass=4xx&reporter=destination&limit=2&cursor=${encodeURIComponent(String(first.json['next']))}`, auth);
    assert.deepEqual((second.json['entries'] as AccessLogEntry[]).map((e) => [e.sourceWorkload, e.responseCode]), [['w1', 404]]);
    assert.equal(second.json['next'], undefined);
    const proxy = await get(`${base}/api/v1/access/logs?since=10m&origin=proxy`, auth);
    assert.deepEqual((proxy.json['entries'] as AccessLogEntry[]).map((e) => [e.path, e.responseCode, e.responseFlags]), [['/users/7', 503, 'UF']]);
  });

  it('answers a bad parameter with a 400 naming it', async () => {
    const cases: Array<[string, string, string]> = [
      ['graph?window=5x', 'window', 'window: "5x" is not a duration; expected e.g. 30s, 5m, 1h or 7d'],
      ['graph?window=400d', 'window', 'window: "400d" is longer than the 366 days the API looks back at most'],
      ['graph?windw=5m', 'windw', 'windw: unknown parameter; this endpoint takes window'],
      ['graph?window=5m&window=1m', 'window', 'window: given more than once'],
      ['operations?sort=fastest', 'sort', 'sort: "fastest" is not one of requests, errors, p99, name'],
      ['operations?limit=0', 'limit', 'limit: "0" must be a whole number from 1 to 1000'],
      ['access/peers?since=1h', 'path', 'path: give exactly one of path and operation'],
      ['access/peers?path=/a&operation=/b', 'operation', 'operation: give exactly one of path and operation'],
      ['access/peers?path=/a&from=yesterday', 'from', 'from: "yesterday" is not a time; expected RFC 3339 (2026-01-02T15:04:05Z) or milliseconds since the epoch'],
      ['access/peers?path=/a&from=1000&since=1h', 'since', 'since: give either since or from, not both'],
      [`access/peers?path=/a&from=${NOW}&to=${NOW - 1000}`, 'from', `from: the window must start before it ends (${new Date(NOW - 1000).toISOString()})`],
      ['access/logs?origin=sidecar', 'origin', 'origin: "sidecar" is not one of app, proxy, client'],
      ['access/logs?codeClass=404', 'codeClass', 'codeClass: "404" is not one of 2xx, 3xx, 4xx, 5xx'],
      ['access/logs?cursor=garbage', 'cursor', 'cursor: not a cursor this store returned'],
      ['alerts?state=firing', 'state', 'state: unknown parameter; this endpoint takes none'],
    ];
    for (const [q, parameter, error] of cases) {
      const r = await get(`${base}/api/v1/${q}`, auth);
      assert.equal(r.status, 400, q);
      assert.deepEqual(r.json, { error, parameter }, q);
    }
    const missing = await get(`${base}/api/v1/metrics`, auth);
    assert.equal(missing.status, 404);
    assert.match(String(missing.json['error']), /no such endpoint \/api\/v1\/metrics; the endpoints are \/api\/v1\/graph, /);
    const index = await get(`${base}/api/v1`, auth);
    assert.deepEqual(Object.keys(index.json['endpoints'] as object), ['/api/v1/graph', '/api/v1/operations', '/api/v1/access/peers', '/api/v1/access/logs', '/api/v1/dependencies', '/api/v1/alerts']);
  });

  it('says why there are no alerts: no --prometheus (404), or Prometheus not answering (502)', async () => {
    const off = await get(`${base}/api/v1/alerts`, auth);
    assert.equal(off.status, 404);
    assert.equal(off.json['error'], 'no Prometheus to read alerts from: start the pilot with --prometheus URL (e.g. http://127.0.0.1:9090)');
    const down = await get(`${openBase}/api/v1/alerts`);
    assert.equal(down.status, 502);
    assert.match(String(down.json['error']), /^cannot read alerts from Prometheus at http:\/\/127\.0\.0\.1:\d+\/api\/v1\/alerts: connection refused$/);
  });

  it('says what answered when --prometheus is not a Prometheus (502)', async () => {
    const answers: Array<[string, string, RegExp]> = [
      ['text/html', '<html>hello</html>', /^Prometheus at http:\/\/127\.0\.0\.1:\d+\/api\/v1\/alerts answered 200 with something other than JSON: is --prometheus the address of a Prometheus server\?$/],
      ['application/json', '{"status":"error","errorType":"internal","error":"rule manager not ready"}', /^Prometheus at http:\/\/127\.0\.0\.1:\d+\/api\/v1\/alerts answered 200: rule manager not ready$/],
    ];
    for (const [type, body, error] of answers) {
      const fake = http.createServer((_req, res) => res.writeHead(200, { 'content-type': type }).end(body));
      await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
      const d = createDashboard({ access: { kind: 'insecure' }, logStore: () => store, logger: pino({ level: 'silent' }), prometheusUrl: `http://127.0.0.1:${(fake.address() as AddressInfo).port}` });
      const [s, url] = await serve(d);
      try {
        const r = await get(`${url}/api/v1/alerts`);
        assert.equal(r.status, 502);
        assert.match(String(r.json['error']), error);
      } finally {
        d.close();
        await new Promise((r) => s.close(r));
        await new Promise((r) => fake.close(r));
      }
    }
  });

  it('answers 503 while there is no store', async () => {
    storeOpen = false;
    try {
      const r = await get(`${base}/api/v1/graph`, auth);
      assert.equal(r.status, 503);
      assert.equal(r.json['error'], "no access-log store: the pilot's access-log sink is off or still opening");
    } finally {
      storeOpen = true;
    }
  });
});
