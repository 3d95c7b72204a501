// The monitoring story end to end, over real processes: a pilot (access-log store, monitoring
// API behind a token, alerts from Prometheus), sidecars streaming their access logs to it, an
// app, and Debian's Prometheus scraping the sidecars with the mesh's alert rules. One request of
// each origin (an app 404, a route-not-found 404 NR, a refused port UF, an overflow UO, no
// endpoints UH) and some 200s: the API's logs, the API's graph, the board in Chromium and
// Prometheus agree on every count; the graph's edges are exactly the calls made; the page shows
// one node per workload, an edge's numbers as the API gives them, and the firing alerts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ALERT_NAMES, APP_FLAGS_REGEX, CLIENT_FLAGS_REGEX, alertRulesYaml } from '../../src/controllers/alerts/index.ts';
import type { AccessLogEntry, Graph } from '../../src/telemetry/index.ts';
import { egressSidecar, ingressSidecar } from '../helpers/istio-yaml.ts';
import { chromiumSkip, openBrowser, type BrowserSession } from '../support/browser.ts';
import { reserveAdmin, startMonitoringMesh, type MonitoringMesh, type SidecarSpec } from '../support/monitoring-mesh.ts';
import { prometheusSkip, startPrometheus, type Prometheus } from '../support/prometheus.ts';

const CLIENT_IP = '127.0.145.1';
const ORDERS_IP = '127.0.145.3';
/** A workload whose port refuses: nothing listens there. */
const REFUSED_IP = '127.0.145.5';
const PORT = 9080;
const TOKEN = 'mesh-origins-token-0123456789';
const ORDERS = 'orders.default.svc.cluster.local';
const REFUSED = 'refused.default.svc.cluster.local';
const EMPTY = 'empty.default.svc.cluster.local';
const OK_CALLS = 7;

const skip = prometheusSkip() || chromiumSkip();

function service(name: string, extra = ''): string {
  return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: default}
spec:
  hosts: [${name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ${name}}}
${extra}`;
}

function config(appPort: number): Record<string, string> {
  return {
    'mesh.yaml': [
      service('orders'),
      `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: orders-v1, namespace: default}
spec: {address: ${ORDERS_IP}, labels: {app: orders, version: v1}, ports: {http: ${PORT}}}`,
      // one request at a time to orders: a second concurrent one overflows (UO)
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: orders, namespace: default}
spec:
  host: ${ORDERS}
  trafficPolicy: {connectionPool: {http: {http2MaxRequests: 1}}}`,
      service('refused'),
      `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: refused-v1, namespace: default}
spec: {address: ${REFUSED_IP}, labels: {app: refused, version: v1}, ports: {http: ${PORT}}}`,
      // no retries, so the refused connection is one UF
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: refused, namespace: default}
spec:
  hosts: [${REFUSED}]
  http: [{route: [{destination: {host: ${REFUSED}}}], retries: {attempts: 0}}]`,
      // a service no workload serves (UH)
      service('empty'),
      egressSidecar({ name: 'client', bind: CLIENT_IP, port: PORT }),
      ingressSidecar({ name: 'orders', bind: ORDERS_IP, port: PORT, defaultEndpoint: `127.0.0.1:${appPort}` }),
    ].map((d) => d.trim()).join('\n---\n') + '\n',
    'telemetry.yaml': `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: sextant}]
`,
  };
}

/** The app: /orders/N 200, /missing 404, /slow held until released. */
let releaseSlow: () => void = () => undefined;
let slowArrived: () => void = () => undefined;
const app = http.createServer((req, res) => {
  if (req.url === '/slow') {
    slowArrived();
    releaseSlow = () => res.writeHead(200).end('slow\n');
    return;
  }
  res.writeHead(req.url === '/missing' ? 404 : 200, { 'content-type': 'text/plain' }).end('ok\n');
});

function send(path: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: CLIENT_IP, port: PORT, path, headers: { host }, agent: false, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${host}${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

let dir: string;
let mesh: MonitoringMesh | undefined;
let prom: Prometheus | undefined;
let session: BrowserSession | undefined;
const auth = { authorization: `Bearer ${TOKEN}` };

async function api<T>(p: string): Promise<T> {
  const res = await fetch(`${mesh!.pilotUrl}/api/v1/${p}`, { headers: auth });
  assert.equal(res.status, 200, `${p}: ${await res.clone().text()}`);
  return (await res.json()) as T;
}

/** `code flags` → count, flags as Prometheus writes them (`-` for none). */
function byCodeAndFlags(entries: readonly AccessLogEntry[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of entries) {
    const k = `${e.responseCode} ${e.responseFlags === '' ? '-' : e.responseFlags}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

describe('monitoring over a real mesh: origins, topology, board, alerts', { skip }, () => {
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sextant-mesh-origins-'));
    writeFileSync(path.join(dir, 'api-tokens'), `${TOKEN} *\n`);
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const client: SidecarSpec = { app: 'client', version: 'v1', ip: CLIENT_IP, admin: await reserveAdmin() };
    const orders: SidecarSpec = { app: 'orders', version: 'v1', ip: ORDERS_IP, admin: await reserveAdmin() };
    prom = await startPrometheus({
      jobs: [client.admin, orders.admin],
      ruleFiles: [{ name: 'sextant.rules.yml', yaml: alertRulesYaml({ windowMs: 300_000, forMs: 0, intervalMs: 1000 }) }],
    });
    mesh = await startMonitoringMesh(config((app.address() as AddressInfo).port), [
      '--api-tokens', path.join(dir, 'api-tokens'), '--prometheus', prom.url, '--log-store', `sqlite:${path.join(dir, 'access-log.sqlite')}`,
    ]);
    await mesh.startSidecar(client);
    await mesh.startSidecar(orders);
    await prom.waitForTargetsUp();
    await prom.waitFor('a request through both sidecars', async () => (await send('/orders/0', ORDERS).catch(() => 0)) === 200);

    // the traffic: OK_CALLS 200s (the one above included), then one of each origin
    for (let i = 1; i < OK_CALLS; i++) assert.equal(await send(`/orders/${i}`, ORDERS), 200);
    assert.equal(await send('/missing', ORDERS), 404, 'app 404');
    assert.equal(await send('/anything', 'nowhere.default.svc.cluster.local'), 404, 'NR');
    assert.equal(await send('/x', REFUSED), 503, 'UF');
    assert.equal(await send('/x', EMPTY), 503, 'UH');
    const arrived = new Promise<void>((r) => (slowArrived = r));
    const slow = send('/slow', ORDERS);
    await arrived;
    assert.equal(await send('/orders/overflow', ORDERS), 503, 'UO');
    releaseSlow();
    assert.equal(await slow, 200);
    session = await openBrowser('mesh-origins');
  });

  after(async () => {
    await session?.close();
    await mesh?.stop();
    await prom?.close();
    await new Promise((r) => app.close(r));
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('stores every request of each origin, as Prometheus counts them', async () => {
    const expected = { [`200 -`]: OK_CALLS + 1, '404 -': 1, '404 NR': 1, '503 UF': 1, '503 UH': 1, '503 UO': 1 };
    const logs = await prom!.waitFor('every call stored', async () => {
      const page = await api<{ entries: AccessLogEntry[] }>('access/logs?reporter=source&since=10m&limit=1000');
      return page.entries.length >= OK_CALLS + 6 ? page.entries : undefined;
    });
    assert.deepEqual(byCodeAndFlags(logs), expected);
    assert.deepEqual(Object.fromEntries(['404 -', '404 NR', '503 UF', '503 UH', '503 UO'].map((k) => [k, logs.find((e) => `${e.responseCode} ${e.responseFlags || '-'}` === k)?.origin])), {
      '404 -': 'app', '404 NR': 'proxy', '503 UF': 'proxy', '503 UH': 'proxy', '503 UO': 'proxy',
    });
    const fromProm = await prom!.waitFor('Prometheus scraped every call', async () => {
      const samples = await prom!.query('sum by (response_code, response_flags) (istio_requests_total{reporter="source"})');
      const out = Object.fromEntries(samples.map((s) => [`${s.metric['response_code']} ${s.metric['response_flags']}`, s.value]));
      return Object.values(out).reduce((a, b) => a + b, 0) === OK_CALLS + 6 ? out : undefined;
    });
    assert.deepEqual(fromProm, expected);
    // the callee's sidecar saw the 200s and the app's 404, nothing the client's sidecar made
    const dst = await api<{ entries: AccessLogEntry[] }>('access/logs?reporter=destination&since=10m&limit=1000');
    assert.deepEqual(byCodeAndFlags(dst.entries), { '200 -': OK_CALLS + 1, '404 -': 1 });
  });

  it('draws exactly the calls made, each once, split by origin as Prometheus splits them', async () => {
    const graph = await api<Graph>('graph?window=10m');
    const edges = Object.fromEntries(graph.edges.map((e) => [`${e.source} -> ${e.target}`, [e.counts.total, e.counts.byOrigin.app['4xx'], e.counts.byOrigin.proxy['4xx'], e.counts.byOrigin.proxy['5xx'], e.counts.byOrigin.app['5xx']]]));
    const callerEdges = graph.edges.filter((e) => e.source === 'workload:default/client-v1');
    const sum = (f: (e: Graph['edges'][number]) => number): number => callerEdges.reduce((n, e) => n + f(e), 0);
    const origin = async (cls: string, flags: string): Promise<number> => prom!.scalar(`sum(istio_requests_total{reporter="source",response_code=~"${cls}",${flags}})`);
    const proxyFlags = `response_flags!~"${APP_FLAGS_REGEX}",response_flags!~"${CLIENT_FLAGS_REGEX}"`;
    assert.deepEqual(
      { total: sum((e) => e.counts.total), app4xx: sum((e) => e.counts.byOrigin.app['4xx']), proxy4xx: sum((e) => e.counts.byOrigin.proxy['4xx']), proxy5xx: sum((e) => e.counts.byOrigin.proxy['5xx']), app5xx: sum((e) => e.counts.byOrigin.app['5xx']) },
      {
        total: await prom!.scalar('sum(istio_requests_total{reporter="source"})'),
        app4xx: await origin('4..', `response_flags=~"${APP_FLAGS_REGEX}"`), proxy4xx: await origin('4..', proxyFlags),
        proxy5xx: await origin('5..', proxyFlags), app5xx: await origin('5..', `response_flags=~"${APP_FLAGS_REGEX}"`),
      },
    );
    assert.deepEqual({ total: sum((e) => e.counts.total), app4xx: sum((e) => e.counts.byOrigin.app['4xx']), proxy4xx: sum((e) => e.counts.byOrigin.proxy['4xx']), proxy5xx: sum((e) => e.counts.byOrigin.proxy['5xx']) },
      { total: OK_CALLS + 6, app4xx: 1, proxy4xx: 1, proxy5xx: 3 });
    // the edges: the client's calls to each service, and the workloads that served them
    assert.deepEqual(Object.keys(edges).sort(), [
      `service:${ORDERS} -> workload:default/orders-v1`,
      `service:${REFUSED} -> workload:default/refused-v1`,
      `workload:default/client-v1 -> service:${EMPTY}`,
      `workload:default/client-v1 -> service:${ORDERS}`,
      `workload:default/client-v1 -> service:${REFUSED}`,
      ...callerEdges.filter((e) => ![ORDERS, REFUSED, EMPTY].some((s) => e.target === `service:${s}`)).map((e) => `workload:default/client-v1 -> ${e.target}`),
    ].sort());
    assert.deepEqual(edges[`workload:default/client-v1 -> service:${ORDERS}`], [OK_CALLS + 3, 1, 0, 1, 0]);
    assert.deepEqual(edges[`workload:default/client-v1 -> service:${REFUSED}`], [1, 0, 0, 1, 0]);
    assert.deepEqual(edges[`workload:default/client-v1 -> service:${EMPTY}`], [1, 0, 0, 1, 0]);
    // the NR went to no service: one edge of its own holding just it
    const nr = callerEdges.filter((e) => ![ORDERS, REFUSED, EMPTY].some((s) => e.target === `service:${s}`));
    assert.deepEqual(nr.map((e) => [e.counts.total, e.counts.byOrigin.proxy['4xx']]), [[1, 1]]);
  });

  it('shows it all in Chromium: one node per workload, an edge\'s numbers, the board\'s split, the firing alerts', async () => {
    const { page, errors } = session!;
    await page.goto(`${mesh!.pilotUrl}/dashboard?token=${TOKEN}`);
    await page.selectOption('#window', '15m');
    await page.waitForSelector('#graph [data-workload="default/orders-v1"]');
    const workloads = await page.$$eval('#graph [data-workload]', (els) => els.map((e) => e.getAttribute('data-workload')).sort());
    assert.deepEqual(workloads, ['default/client-v1', 'default/orders-v1', 'default/refused-v1']);
    const graph = await api<Graph>('graph?window=15m');
    const edge = graph.edges.find((e) => e.source === 'workload:default/client-v1' && e.target === `service:${ORDERS}`)!;
    await page.locator(`#graph [data-edge="${edge.source}→${edge.target}"]`).click();
    await page.waitForSelector(`#edge-details[data-edge="${edge.source}→${edge.target}"]:not([hidden])`);
    const shown = Object.fromEntries(await page.$$eval('#edge-fields dd', (els) => els.map((e) => [e.getAttribute('data-field'), Number(e.getAttribute('data-value'))])));
    assert.deepEqual([shown['total'], shown['app-4xx'], shown['proxy-5xx'], shown['p99Ms']], [edge.counts.total, edge.counts.byOrigin.app['4xx'], edge.counts.byOrigin.proxy['5xx'], edge.p99Ms]);
    const cell = async (origin: string, cls: string): Promise<number> => Number(await page.locator(`#board tfoot tr[data-board-total] td[data-origin="${origin}"][data-class="${cls}"]`).getAttribute('data-value'));
    assert.deepEqual([await cell('app', '4xx'), await cell('proxy', '4xx'), await cell('proxy', '5xx'), await cell('app', '5xx'), await cell('client', '5xx')], [1, 1, 3, 0, 0]);
    // the alerts: the NR fires in Prometheus (for the rules' 5 minutes), and the page lists what Prometheus lists
    await prom!.waitFor('SextantProxyNoRoute firing', async () => (await prom!.alerts()).some((a) => a.labels['alertname'] === ALERT_NAMES.noRoute && a.state === 'firing'));
    const fromProm = (await prom!.alerts()).map((a) => `${a.labels['alertname']} ${a.state}`).sort();
    const listed = await prom!.waitFor('the page lists the firing alerts', async () => {
      const items = await page.$$eval('#alerts li[data-alert]', (els) => els.map((e) => `${e.getAttribute('data-alert')} ${e.getAttribute('data-state')}`).sort());
      return items.includes(`${ALERT_NAMES.noRoute} firing`) ? items : undefined;
    });
    assert.deepEqual(listed, fromProm);
    assert.match(await page.locator(`#alerts li[data-alert="${ALERT_NAMES.noRoute}"] .alert-text`).textContent() ?? '', /^client-v1\.default \(reporter source\) got route-not-found 404s \(response flag NR\)/);
    await session!.screenshot('dashboard');
    assert.deepEqual(errors, []);
  });
});
