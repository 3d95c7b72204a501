// `sextant wait`: exit 0 as soon as the readiness URL answers 200 (polled every 500 ms by
// default), exit 1 with what it last saw once the timeout passes, whether the sidecar answers
// 503, is not listening, or does not answer at all. Istio's `pilot-agent wait` flags work too.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { freePort } from '../helpers/ports.ts';

const ENTRY = path.resolve(import.meta.dirname, '../../bin/sextant.mjs');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** From spawn to exit. */
  ms: number;
}

function sextantWait(args: string[]): Promise<Run> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [ENTRY, 'wait', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - started }));
  });
}

/** A sidecar stand-in: /healthz/ready answers 503 PRE_INITIALIZING until `readyAt`. */
let readyAt = Infinity;
let requests = 0;
const sidecar = http.createServer((req, res) => {
  requests++;
  const ready = req.url === '/healthz/ready' && Date.now() >= readyAt;
  res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
  res.end(ready ? 'LIVE\n' : 'PRE_INITIALIZING\n');
});
/** Accepts connections and never answers. */
const silent = net.createServer(() => undefined);
let url: string;
let silentUrl: string;

before(async () => {
  await new Promise<void>((r) => sidecar.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(sidecar.address() as net.AddressInfo).port}/healthz/ready`;
  silentUrl = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}/healthz/ready`;
});

after(() => {
  sidecar.close();
  silent.close();
});

test('exits 0 on the first 200, polling every 500 ms', async () => {
  readyAt = Date.now() + 1200;
  requests = 0;
  const r = await sextantWait(['--url', url]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^sidecar ready after \d+(\.\d)? s \(\d+ polls of http:\/\/127\.0\.0\.1:\d+\/healthz\/ready\)\n$/);
  // Ready 1.2 s after the start: seen at the next poll, 500 ms apart (plus Node's start-up).
  assert.ok(r.ms >= 1200 && r.ms < 1200 + 500 + 1500, `${r.ms} ms`);
  assert.ok(requests >= 2 && requests <= 4, `${requests} polls`);
});

test('exits 1 after the timeout while the sidecar answers 503, saying what it answered', async () => {
  readyAt = Infinity;
  const r = await sextantWait(['--url', url, '--timeout', '1500ms', '--period', '200ms']);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `error: the sidecar was not ready after 1.5 s: ${url} last answered: 503 PRE_INITIALIZING\n`);
  assert.ok(r.ms >= 1500 && r.ms < 1500 + 1500, `${r.ms} ms`);
});

test('pilot-agent wait\'s flags: --timeoutSeconds, --periodMillis; nothing listening is "connection refused"', async () => {
  const closed = `http://127.0.0.1:${await freePort()}/healthz/ready`;
  const r = await sextantWait(['--url', closed, '--timeoutSeconds', '1', '--periodMillis', '100']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `error: the sidecar was not ready after 1 s: ${closed} last answered: connection refused\n`);
  assert.ok(r.ms >= 1000 && r.ms < 1000 + 1500, `${r.ms} ms`);
});

test('a sidecar that accepts but never answers: each poll gives up after --request-timeout, the wait after --timeout', async () => {
  const r = await sextantWait(['--url', silentUrl, '--timeout', '1s', '--request-timeout', '300ms']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /last answered: no answer within \d+ ms\n$/);
  assert.ok(r.ms >= 1000 && r.ms < 1000 + 1500, `${r.ms} ms`);
});

test('bad flag values are usage errors (exit 2)', async () => {
  assert.deepEqual(await sextantWait(['--timeout', '60']).then((r) => [r.code, r.stderr]), [2, 'error: invalid --timeout "60": expected a duration like 100ms, 10s or 1m\n']);
  assert.deepEqual(await sextantWait(['--url', 'ftp://x/']).then((r) => [r.code, r.stderr]), [2, 'error: invalid --url "ftp://x/": expected an http:// URL, e.g. http://127.0.0.1:15021/healthz/ready\n']);
  assert.deepEqual(await sextantWait(['--timeoutSeconds', 'x']).then((r) => [r.code, r.stderr]), [2, 'error: invalid --timeoutSeconds "x": expected an integer >= 1\n']);
});
