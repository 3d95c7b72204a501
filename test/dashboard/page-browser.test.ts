// The dashboard page in a real browser (Debian's Chromium, headless, driven by playwright-core)
// over a real access-log store: it loads from /dashboard?token= with no console error, draws one
// node per workload, shows an edge's numbers as the API gives them when the edge is clicked,
// splits the 4xx/5xx board by origin as the API counts them, lists operations, answers a path →
// peers search, and says why it lists no alerts. Screenshots go to test-artifacts/dashboard/.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createDashboard, type Dashboard } from '../../src/dashboard/index.ts';
import type { Graph, LogStore } from '../../src/telemetry/index.ts';
import { openSqliteLogStore } from '../../src/telemetry/sqlite-store.ts';
import { chromiumSkip, openBrowser, type BrowserSession } from '../support/browser.ts';
import { ORDERS, USERS, shopTraffic } from './fixture.ts';

const TOKEN = 'page-token-0123456789abcdef';
const NOW = Date.UTC(2026, 0, 5, 12, 0, 30);
const skip = chromiumSkip();

let dir: string;
let store: LogStore;
let dashboard: Dashboard;
let server: http.Server;
let base: string;
let session: BrowserSession | undefined;

async function api<T>(p: string): Promise<T> {
  const res = await fetch(`${base}/api/v1/${p}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200, p);
  return (await res.json()) as T;
}

describe('dashboard page in Chromium', { skip }, () => {
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sextant-dashboard-page-'));
    writeFileSync(path.join(dir, 'tokens'), `${TOKEN} *\n`);
    store = openSqliteLogStore({ path: path.join(dir, 'access.db'), retentionIntervalMs: 0 });
    await store.insert(shopTraffic(NOW));
    dashboard = createDashboard({ access: { kind: 'tokens', file: path.join(dir, 'tokens') }, logStore: () => store, logger: pino({ level: 'silent' }), now: () => NOW });
    server = http.createServer((req, res) => dashboard.handle(req, res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    session = await openBrowser('dashboard');
  });

  after(async () => {
    await session?.close();
    dashboard.close();
    await new Promise((r) => server.close(r));
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loads from /dashboard?token= with no console error and one node per workload', async () => {
    const { page, errors } = session!;
    const res = await page.goto(`${base}/dashboard?token=${TOKEN}`);
    assert.equal(res?.status(), 200);
    assert.equal(new URL(page.url()).search, '', 'the token is gone from the address');
    await page.waitForSelector('body[data-loaded="true"]');
    await page.waitForSelector('#graph [data-workload]');
    const workloads = await page.$$eval('#graph [data-workload]', (els) => els.map((e) => e.getAttribute('data-workload')).sort());
    assert.deepEqual(workloads, ['shop/orders-v1', 'shop/users-v1', 'shop/w1', 'shop/w2', 'shop/w3']);
    const services = await page.$$eval('#graph [data-service]', (els) => els.map((e) => e.getAttribute('data-service')).sort());
    assert.deepEqual(services, [ORDERS, USERS]);
    assert.deepEqual(await page.$$eval('#graph [data-unknown]', (els) => els.map((e) => e.getAttribute('data-unknown'))), ['10.1.2.3']);
    const graph = await api<Graph>('graph?window=5m');
    assert.equal(await page.locator('#graph [data-edge]').count(), graph.edges.length);
    await session!.screenshot('page-loaded');
    assert.deepEqual(errors, []);
  });

  it('shows the API\'s numbers for a clicked edge', async () => {
    const { page, errors } = session!;
    const graph = await api<Graph>('graph?window=5m');
    for (const [source, target] of [['workload:shop/w1', `service:${USERS}`], ['unknown:10.1.2.3', `service:${ORDERS}`]] as const) {
      const edge = graph.edges.find((e) => e.source === source && e.target === target)!;
      await page.locator(`#graph [data-edge="${source}→${target}"]`).click();
      await page.waitForSelector(`#edge-details[data-edge="${source}→${target}"]:not([hidden])`);
      const shown = Object.fromEntries(await page.$$eval('#edge-fields dd', (els) => els.map((e) => [e.getAttribute('data-field'), Number(e.getAttribute('data-value'))])));
      assert.deepEqual(shown, {
        rps: edge.rps, p50Ms: edge.p50Ms, p99Ms: edge.p99Ms, total: edge.counts.total,
        '2xx': edge.counts['2xx'], '3xx': edge.counts['3xx'], '4xx': edge.counts['4xx'], '5xx': edge.counts['5xx'],
        'app-4xx': edge.counts.byOrigin.app['4xx'], 'proxy-4xx': edge.counts.byOrigin.proxy['4xx'], 'client-4xx': edge.counts.byOrigin.client['4xx'],
        'app-5xx': edge.counts.byOrigin.app['5xx'], 'proxy-5xx': edge.counts.byOrigin.proxy['5xx'], 'client-5xx': edge.counts.byOrigin.client['5xx'],
      });
    }
    assert.equal(await page.locator('#edge-fields dd[data-field="app-5xx"]').textContent(), '1');
    await session!.screenshot('edge-clicked');
    assert.deepEqual(errors, []);
  });

  it('splits the error board by origin as the API counts them', async () => {
    const { page, errors } = session!;
    const cell = async (row: string, origin: string, cls: string): Promise<number> => Number(await page.locator(`${row} td[data-origin="${origin}"][data-class="${cls}"]`).getAttribute('data-value'));
    const total = '#board tfoot tr[data-board-total]';
    assert.deepEqual(
      [await cell(total, 'app', '4xx'), await cell(total, 'proxy', '4xx'), await cell(total, 'client', '4xx'), await cell(total, 'app', '5xx'), await cell(total, 'proxy', '5xx'), await cell(total, 'client', '5xx')],
      [3, 0, 0, 1, 1, 0],
    );
    assert.deepEqual([await cell(`#board tbody tr[data-service="${USERS}"]`, 'proxy', '5xx'), await cell(`#board tbody tr[data-service="${ORDERS}"]`, 'app', '5xx')], [1, 1]);
    // the latest errors, with their flags and origin
    const origins = await page.$$eval('#recent-errors tbody tr', (rows) => rows.map((r) => r.getAttribute('data-origin')));
    assert.equal(origins.filter((o) => o === 'proxy').length, 1);
    assert.equal(origins.filter((o) => o === 'app').length, 5, 'three 404s reported by orders\' sidecar, w1\'s 404 by its own, the outsider\'s 500');
    assert.deepEqual(errors, []);
  });

  it('lists operations, answers a path → peers search, and says there is no Prometheus', async () => {
    const { page, errors } = session!;
    const ops = await page.$$eval('#operations tbody tr', (rows) => rows.map((r) => `${r.getAttribute('data-service')} ${r.getAttribute('data-operation')}`));
    assert.deepEqual(ops, [`${ORDERS} /orders/{id}`, `${USERS} /users/{id}`]);
    await page.fill('#peers-value', '/orders/1');
    await page.selectOption('#peers-since', '7d');
    await page.click('#peers-form button[type="submit"]');
    await page.waitForSelector('#peers tbody tr[data-source-ip]');
    assert.deepEqual(await page.$$eval('#peers tbody tr', (rows) => rows.map((r) => r.getAttribute('data-source-ip'))), ['127.0.3.2', '127.0.3.3', '127.0.3.4']);
    assert.equal(await page.locator('#peers-status').textContent(), '3 caller/destination pairs');
    assert.match(await page.locator('#alerts-note').textContent() ?? '', /^No Prometheus: start the pilot with --prometheus URL/);
    await session!.screenshot('peers-search');
    assert.deepEqual(errors, []);
  });
});
