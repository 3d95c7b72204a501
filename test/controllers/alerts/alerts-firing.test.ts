// The mesh's alert rules in a real Prometheus (Debian's, 1 s scrape and evaluation) scraping
// real sidecars configured by a real pilot: one route-not-found 404 (NR) fires
// SextantProxyNoRoute within two evaluations, while steady application 404s never do; an
// operation going from 0 % to 20 % application 404s fires SextantNew404 naming the operation,
// while an operation with a steady 30 % never fires it. Firing alerts are read back from
// Prometheus's API and from the pilot's /api/v1/alerts.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ALERT_NAMES, alertRulesYaml, type AlertRuleOptions } from '../../../src/controllers/alerts/index.ts';
import { egressSidecar, ingressSidecar } from '../../helpers/istio-yaml.ts';
import { prometheusSkip, startPrometheus, type PromAlert, type Prometheus } from '../../support/prometheus.ts';
import { reserveAdmin, startMonitoringMesh, type MonitoringMesh, type SidecarSpec } from '../../support/monitoring-mesh.ts';

const ITEMS = 'items.default.svc.cluster.local';
const CLIENT_IP = '127.0.141.1';
const ITEMS_IP = '127.0.141.3';
const PORT = 9080;
/** Rates over 10 s; the baseline is the 10 s that ended 20 s ago; fire at once. */
const RULES: Partial<AlertRuleOptions> = {
  windowMs: 10_000, forMs: 0, baselineOffsetMs: 20_000, baselineWindowMs: 10_000, threshold: 0.1, baselineThreshold: 0.01, minRequests: 5, intervalMs: 1000,
};
/** The service must be older than the baseline (30 s) before anything is "new". */
const BASELINE_MS = 33_000;

const skip = prometheusSkip();

function config(appPort: number): Record<string, string> {
  return {
    'items.yaml': `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: items, namespace: default}
spec:
  hosts: [${ITEMS}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: items}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: items-v1, namespace: default}
spec: {address: ${ITEMS_IP}, labels: {app: items, version: v1}, ports: {http: ${PORT}}}
---
${egressSidecar({ name: 'client', bind: CLIENT_IP, port: PORT })}
---
${ingressSidecar({ name: 'items', bind: ITEMS_IP, port: PORT, defaultEndpoint: `127.0.0.1:${appPort}` })}
`,
    // request_operation on istio_requests_total (opt-in), for the new-404 rule
    'telemetry.yaml': `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT}
      tagOverrides:
        request_operation: {value: request.operation}
`,
  };
}

/** The app: /items/N answers 404 for one N in five once `broken`, /steady/N for three in ten always. */
let broken = false;
const app = http.createServer((req, res) => {
  const m = /^\/(items|steady)\/(\d+)$/.exec(req.url ?? '');
  const n = Number(m?.[2] ?? 0);
  const notFound = m === null || (m[1] === 'items' ? broken && n % 5 === 0 : n % 10 < 3);
  res.writeHead(notFound ? 404 : 200, { 'content-type': 'text/plain' }).end(notFound ? 'no such item\n' : 'ok\n');
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
function send(path: string, host = ITEMS): Promise<{ status: number; flags: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: CLIENT_IP, port: PORT, path, headers: { host }, agent, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, flags: res.headers['x-envoy-response-flags'] as string | undefined }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

let mesh: MonitoringMesh | undefined;
let prom: Prometheus | undefined;
let traffic: Promise<void> | undefined;
let stopTraffic = false;
/** Every alert seen in any poll of Prometheus, by name and operation. */
const seen: PromAlert[] = [];
let trafficStarted = 0;
let noRouteLabels: Record<string, string> | undefined;

async function poll(): Promise<PromAlert[]> {
  const alerts = await prom!.alerts();
  seen.push(...alerts);
  return alerts;
}

describe('alert rules in Prometheus over real sidecars', { skip }, () => {
  before(async () => {
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const appPort = (app.address() as AddressInfo).port;
    const client: SidecarSpec = { app: 'client', version: 'v1', ip: CLIENT_IP, admin: await reserveAdmin() };
    const items: SidecarSpec = { app: 'items', version: 'v1', ip: ITEMS_IP, admin: await reserveAdmin() };
    prom = await startPrometheus({ jobs: [client.admin, items.admin], ruleFiles: [{ name: 'sextant.rules.yml', yaml: alertRulesYaml(RULES) }] });
    mesh = await startMonitoringMesh(config(appPort), ['--dashboard-insecure', '--prometheus', prom.url]);
    await mesh.startSidecar(client);
    await mesh.startSidecar(items);
    await prom.waitForTargetsUp();
    // the route through both sidecars works before the clock starts
    await prom.waitFor('a request through both sidecars', async () => (await send('/items/1').catch(() => ({ status: 0 }))).status === 200);
    trafficStarted = Date.now();
    traffic = (async () => {
      for (let n = 1; !stopTraffic; n++) {
        await Promise.all([send(`/items/${n}`), send(`/steady/${n}`)]);
        await sleep(80);
      }
    })();
  });

  after(async () => {
    stopTraffic = true;
    await traffic?.catch(() => undefined);
    agent.destroy();
    await mesh?.stop();
    await prom?.close();
    await new Promise((r) => app.close(r));
  });

  it('fires SextantProxyNoRoute within two evaluations of one NR, and never for steady app 404s', async () => {
    const nr = await send('/anything', 'nowhere.default.svc.cluster.local');
    assert.equal(nr.status, 404);
    const firing = await prom!.waitFor('SextantProxyNoRoute firing', async () => (await poll()).find((a) => a.labels['alertname'] === ALERT_NAMES.noRoute && a.state === 'firing'));
    // the alert names the caller and the destination as the sidecar's metric does
    const [series] = await prom!.query('istio_requests_total{response_flags="NR"}');
    assert.equal(series?.metric['response_code'], '404');
    assert.deepEqual(
      { ...firing.labels },
      { alertname: ALERT_NAMES.noRoute, severity: 'warning', origin: 'proxy', reporter: 'source', source_workload: 'client-v1', source_workload_namespace: 'default', destination_service: series.metric['destination_service'] },
    );
    // Prometheus's own clock: the first scrape that held the NR, and the evaluation that fired
    // (a subquery evaluated as the first samples land may come back empty: asked again until it answers)
    const firstSample = await prom!.waitFor('the first NR sample', async () => {
      const t = await prom!.scalar('min_over_time(timestamp(istio_requests_total{response_flags="NR"})[5m:1s])');
      return Number.isFinite(t) && t > 0 ? t : undefined;
    }, 10_000);
    const activeAt = Date.parse(firing.activeAt) / 1000;
    assert.ok(activeAt - firstSample <= 2, `fired ${(activeAt - firstSample).toFixed(3)} s after the scrape that held the NR (evaluations are 1 s apart)`);
    noRouteLabels = firing.labels;
    // the pilot's API lists it too
    const res = await fetch(`${mesh!.pilotUrl}/api/v1/alerts`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { prometheus: string; alerts: Array<{ name: string; state: string; labels: Record<string, string> }> };
    assert.equal(body.prometheus, prom!.url);
    const listed = body.alerts.filter((a) => a.name === ALERT_NAMES.noRoute);
    assert.deepEqual(listed.map((a) => [a.state, a.labels['source_workload'], a.labels['destination_service']]), [['firing', 'client-v1', series.metric['destination_service']]]);
  });

  it('fires SextantNew404 naming the operation that went from 0 % to 20 %, never for a steady 30 %', async () => {
    const wait = trafficStarted + BASELINE_MS - Date.now();
    if (wait > 0) await sleep(wait);
    // both operations are known to Prometheus before the change
    const ops = await prom!.query('sum by (request_operation) (istio_requests_total{reporter="destination",destination_canonical_service="items"})');
    assert.deepEqual(ops.map((s) => s.metric['request_operation']).sort(), ['/items/{id}', '/steady/{id}']);
    broken = true;
    const firing = await prom!.waitFor('SextantNew404 firing', async () => (await poll()).find((a) => a.labels['alertname'] === ALERT_NAMES.new404 && a.state === 'firing'), 30_000);
    assert.deepEqual({ ...firing.labels }, { alertname: ALERT_NAMES.new404, severity: 'warning', origin: 'app', destination_canonical_service: 'items', destination_workload_namespace: 'default', request_operation: '/items/{id}' });
    const res = await fetch(`${mesh!.pilotUrl}/api/v1/alerts`);
    const body = (await res.json()) as { alerts: Array<{ name: string; labels: Record<string, string> }> };
    assert.deepEqual(body.alerts.filter((a) => a.name === ALERT_NAMES.new404).map((a) => a.labels['request_operation']), ['/items/{id}']);
    // keep watching for a bounded while: the steady operation never fires it
    const until = Date.now() + 12_000;
    while (Date.now() < until) {
      await poll();
      await sleep(500);
    }
    // the steady operation did answer its 404s all along
    assert.ok(await prom!.scalar(`sum(istio_requests_total{reporter="destination",response_code="404",request_operation="/steady/{id}"})`) > 100);
    const steady = seen.filter((a) => a.labels['alertname'] === ALERT_NAMES.new404 && a.labels['request_operation'] !== '/items/{id}');
    assert.deepEqual(steady, []);
    // the one NR is the only route-not-found alert ever seen: the app's 404s never made one
    const noRoutes = new Set(seen.filter((a) => a.labels['alertname'] === ALERT_NAMES.noRoute).map((a) => JSON.stringify(a.labels)));
    assert.deepEqual([...noRoutes], [JSON.stringify(noRouteLabels)]);
  });
});
