// The Prometheus harness the monitoring and lazy-scope tests share: it starts Debian's
// Prometheus on a free port with the targets and rules given, scrapes every second, answers
// queries and alerts, takes new targets on reconfigure(), and leaves no process or directory.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { prometheusSkip, startPrometheus } from './prometheus.ts';

/** Two exporters of one counter each: what a sidecar's /stats/prometheus looks like to Prometheus. */
function exporter(value: number): http.Server {
  return http.createServer((req, res) => {
    if (req.url !== '/stats/prometheus') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(`# TYPE harness_requests_total counter\nharness_requests_total ${value}\n`);
  });
}

const a = exporter(3);
const b = exporter(4);
const address = (s: http.Server): string => `127.0.0.1:${(s.address() as AddressInfo).port}`;

describe('Prometheus test harness', { skip: prometheusSkip() }, () => {
  before(async () => {
    await new Promise<void>((r) => a.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => b.listen(0, '127.0.0.1', r));
  });
  after(async () => {
    await new Promise((r) => a.close(r));
    await new Promise((r) => b.close(r));
  });

  it('scrapes the targets, evaluates the rules, reloads new targets, and cleans up', async () => {
    const rules = 'groups:\n- name: harness\n  rules:\n  - alert: HarnessCounted\n    expr: sum(harness_requests_total) >= 3\n    labels: {severity: none}\n';
    const prom = await startPrometheus({ jobs: [address(a)], ruleFiles: [{ name: 'harness.rules.yml', yaml: rules }] });
    try {
      await prom.waitForTargetsUp();
      assert.equal(await prom.waitFor('the first scrape', async () => (await prom.scalar('sum(harness_requests_total)')) || undefined), 3);
      const alert = await prom.waitFor('the rule firing', async () => (await prom.alerts()).find((x) => x.state === 'firing'));
      assert.deepEqual(alert.labels, { alertname: 'HarnessCounted', severity: 'none' });
      await prom.reconfigure({ jobs: [address(a), address(b)] });
      assert.equal(await prom.waitFor('both targets scraped', async () => {
        const v = await prom.scalar('sum(harness_requests_total)');
        return v === 7 ? v : undefined;
      }), 7);
      await assert.rejects(prom.query('sum(('), /Prometheus \/api\/v1\/query\?query=.* answered 400: /);
    } finally {
      await prom.close();
    }
    assert.equal(existsSync(prom.dir), false);
    assert.notEqual(prom.child.exitCode ?? prom.child.signalCode, null);
  });
});
