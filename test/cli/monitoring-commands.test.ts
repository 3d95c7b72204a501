// `sextant logs`, `sextant peers` and `sextant alerts rules` as users run them: the commands
// read a real monitoring API (the dashboard room over a node:sqlite store) with a token from a
// file; a missing token, a bad flag and a refused query each end with one line and the exit
// code of their kind (1: the call failed, 2: called wrongly).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createDashboard, type Dashboard } from '../../src/dashboard/index.ts';
import type { AccessLogEntry, LogStore, PeerRow } from '../../src/telemetry/index.ts';
import { openSqliteLogStore } from '../../src/telemetry/sqlite-store.ts';
import { MIN, ORDERS, shopTraffic } from '../dashboard/fixture.ts';
import { freePort } from '../helpers/ports.ts';

const CLI = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const TOKEN = 'cli-token-0123456789abcdef';

let dir: string;
let store: LogStore;
let dashboard: Dashboard;
let server: http.Server;
let pilot: string;
let tokenFile: string;
let now: number;

function sextant(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sextant-cli-monitoring-'));
  writeFileSync(path.join(dir, 'api-tokens'), `${TOKEN} *\n`);
  tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, `# the operator's token\n${TOKEN}\n`);
  store = openSqliteLogStore({ path: path.join(dir, 'access.db'), retentionIntervalMs: 0 });
  now = Date.now();
  await store.insert(shopTraffic(now));
  dashboard = createDashboard({ access: { kind: 'tokens', file: path.join(dir, 'api-tokens') }, logStore: () => store, logger: pino({ level: 'silent' }) });
  server = http.createServer((req, res) => dashboard.handle(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  pilot = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  dashboard.close();
  await new Promise((r) => server.close(r));
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('sextant logs', () => {
  it('prints the matching entries newest first, paging through the API', async () => {
    const r = await sextant(['logs', '--pilot', pilot, '--token-file', tokenFile, '--code', '4xx', '--reporter', 'destination', '--since', '10m', '--limit', '2', '-o', 'json']);
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    const entries = JSON.parse(r.stdout) as AccessLogEntry[];
    assert.deepEqual(entries.map((e) => [e.sourceWorkload, e.path, e.responseCode]), [['w3', '/orders/1', 404], ['w2', '/orders/1', 404]]);
    const all = await sextant(['logs', '--pilot', pilot, '--token-file', tokenFile, '--origin', 'proxy', '--since', '1h']);
    assert.equal(all.code, 0);
    const lines = all.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, /^TIME\s+REPORTER\s+SOURCE\s+DESTINATION\s+REQUEST\s+CODE\s+FLAGS\s+ORIGIN\s+MS$/);
    assert.match(lines[1]!, new RegExp(`^${new Date(now - 90_000).toISOString()}\\s+destination\\s+w1\\.shop\\s+users\\.shop\\.svc\\.cluster\\.local\\s+GET /users/7\\s+503\\s+UF\\s+proxy\\s+5$`));
  });

  it('follows the cursor across pages of the API', async () => {
    const r = await sextant(['logs', '--pilot', pilot, '--token-file', tokenFile, '--since', '1h', '--limit', '1000', '-o', 'json']);
    assert.equal(r.code, 0);
    assert.equal((JSON.parse(r.stdout) as unknown[]).length, shopTraffic(now).length);
  });

  it('says what is wrong: no token (exit 1), a bad flag named as the flag (exit 2)', async () => {
    const noToken = await sextant(['logs', '--pilot', pilot]);
    assert.equal(noToken.code, 1);
    assert.match(noToken.stderr, /^error: http:\/\/127\.0\.0\.1:\d+\/api\/v1\/access\/logs\?limit=100 answered 401: a token is required: .* \(give --token-file FILE\)\n$/);
    const badSince = await sextant(['logs', '--pilot', pilot, '--token-file', tokenFile, '--since', 'yesterday']);
    assert.equal(badSince.code, 2);
    assert.equal(badSince.stderr, 'error: invalid --since: "yesterday" is not a duration; expected e.g. 30s, 5m, 1h or 7d\n');
    const badOrigin = await sextant(['logs', '--pilot', pilot, '--token-file', tokenFile, '--origin', 'sidecar']);
    assert.equal(badOrigin.code, 2);
    assert.equal(badOrigin.stderr, 'error: invalid --origin: "sidecar" is not one of app, proxy, client\n');
    const nobody = await freePort();
    const refused = await sextant(['logs', '--pilot', `127.0.0.1:${nobody}`, '--token-file', tokenFile]);
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, `error: cannot reach the pilot at http://127.0.0.1:${nobody}/api/v1/access/logs?limit=100: connection refused\n`);
  });
});

describe('sextant peers', () => {
  it('lists the three callers of a path over the last week, and nobody before', async () => {
    const r = await sextant(['peers', '--pilot', pilot, '--token-file', tokenFile, '--path', '/orders/1', '--since', '7d', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const answer = JSON.parse(r.stdout) as { path: string; peers: PeerRow[] };
    assert.equal(answer.path, '/orders/1');
    assert.deepEqual(answer.peers.map((p) => [p.sourceIp, p.sourceWorkload, p.destinationService, p.count]), [
      ['127.0.3.2', 'w1', ORDERS, 2], ['127.0.3.3', 'w2', ORDERS, 2], ['127.0.3.4', 'w3', ORDERS, 2],
    ]);
    const table = await sextant(['peers', '--pilot', pilot, '--token-file', tokenFile, '--path', '/orders/1', '--since', '7d']);
    assert.equal(table.code, 0);
    const lines = table.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[1]!, new RegExp(`^127\\.0\\.3\\.2\\s+w1\\.shop\\s+127\\.0\\.3\\.9:8080\\s+orders-v1\\s+orders\\.shop\\.svc\\.cluster\\.local\\s+2\\s+${new Date(now - 3 * MIN).toISOString()}\\s+${new Date(now - 2 * MIN).toISOString()}$`));
    const earlier = await sextant(['peers', '--pilot', pilot, '--token-file', tokenFile, '--path', '/orders/1', '--from', String(now - 60 * MIN), '--to', String(now - 30 * MIN)]);
    assert.equal(earlier.stdout, 'nobody called /orders/1 in that window\n');
  });

  it('needs exactly one of --path and --operation', async () => {
    const r = await sextant(['peers', '--pilot', pilot, '--token-file', tokenFile]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'error: give exactly one of --path and --operation\n');
  });
});

describe('sextant alerts rules', () => {
  it('writes the rule file to --output, and refuses a bad window naming the flag', async () => {
    const file = path.join(dir, 'rules.yml');
    const r = await sextant(['alerts', 'rules', '--window', '2m', '--for', '0s', '-o', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `wrote ${file}\n`);
    const text = readFileSync(file, 'utf8');
    assert.match(text, /^# Prometheus alerting rules for the Sextant mesh, written by `sextant alerts rules --window 2m --threshold 0\.05 --min-requests 10 --for 0s /);
    assert.match(text, /increase\(istio_requests_total\{response_code="404",response_flags="NR"\}\[2m\]\)/);
    assert.doesNotMatch(text, /\bfor: /);
    const bad = await sextant(['alerts', 'rules', '--window', 'soon']);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, 'error: invalid --window: "soon" is not a duration; expected e.g. 30s, 5m, 1h30m or 1d\n');
  });
});

describe('sextant pilot monitoring flags', () => {
  it('refuses what cannot work before it starts, naming the flag (exit 2)', async () => {
    const config = path.join(dir, 'empty-config');
    mkdirSync(config, { recursive: true });
    const badTokens = path.join(dir, 'bad-api-tokens');
    writeFileSync(badTokens, `# ok\n${TOKEN}\n`);
    const cases: Array<[string[], string]> = [
      [['--api-tokens', path.join(dir, 'api-tokens'), '--dashboard-insecure'], 'error: --api-tokens and --dashboard-insecure exclude each other: give tokens, or open the API to every caller'],
      [['--prometheus', 'http://127.0.0.1:9090'], "error: --prometheus serves the monitoring API's alerts: give --api-tokens FILE (or --dashboard-insecure) too"],
      [['--dashboard-insecure', '--prometheus', 'ftp://127.0.0.1:9090'], 'error: invalid --prometheus "ftp://127.0.0.1:9090": expected an http:// or https:// address'],
      [['--dashboard-insecure', '--prometheus', 'http://admin:secret@127.0.0.1:9090'], 'error: invalid --prometheus: credentials in the URL would be logged; put Prometheus behind a proxy that adds them'],
      [['--api-tokens', badTokens], `error: --api-tokens: ${badTokens}:2: expected "TOKEN NAMESPACE[,NAMESPACE...]" or "TOKEN *", got 1 field`],
    ];
    for (const [flags, message] of cases) {
      const r = await sextant(['pilot', '--plaintext-xds', '--config-dir', config, '--xds-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0', ...flags]);
      assert.equal(r.code, 2, flags.join(' '));
      assert.equal(r.stderr.replace(/^sextant pilot: /, 'error: '), `${message}\n`, flags.join(' '));
    }
  });
});
