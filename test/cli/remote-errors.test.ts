// `sextant proxy-status` and `sextant proxy-config` pointed at something that is not a pilot
// or a sidecar admin (a web server, another JSON API, nothing at all): each says what it found
// there, naming the URL, and exits 1; a real answer still prints its table.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

const ENTRY = path.resolve(import.meta.dirname, '../../bin/sextant.mjs');

/** Runs the CLI without blocking this process, whose servers must answer it. */
function sextant(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [ENTRY, ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : Number((err as { code?: unknown }).code ?? -1), stdout, stderr });
    });
  });
}

/** A plain HTTP server answering every request with one fixed response. */
async function serve(status: number, contentType: string | undefined, body: string): Promise<{ address: string; close: () => Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(status, contentType === undefined ? {} : { 'content-type': contentType });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { address: `127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const HTML = '<!doctype html><html><body><h1>Not Found</h1></body></html>';
const servers: Record<string, { address: string; close: () => Promise<void> }> = {};
let refused = '';

before(async () => {
  servers['html404'] = await serve(404, 'text/html; charset=utf-8', HTML);
  servers['html200'] = await serve(200, 'text/html', HTML);
  servers['otherJson'] = await serve(200, 'application/json', JSON.stringify({ status: 'ok', items: [] }));
  servers['listOfOther'] = await serve(200, 'application/json', JSON.stringify([{ name: 'web', healthy: true }]));
  servers['jsonError'] = await serve(500, 'application/json', JSON.stringify({ error: 'push context not built yet' }));
  servers['noType'] = await serve(404, undefined, 'nope');
  servers['pilot'] = await serve(200, 'application/json', JSON.stringify([
    { proxy: 'sidecar~127.0.0.1~web-1.default~default.svc.cluster.local', protocol: 'delta', types: [{ type: 'CDS', state: 'SYNCED' }, { type: 'LDS', state: 'NACKED', lastNack: { version: 'v7', message: 'Listener l: bad', at: '2025-01-01T00:00:00.000Z' } }] },
  ]));
  servers['admin'] = await serve(200, 'application/json', JSON.stringify({ configs: [
    { '@type': 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump', dynamicActiveClusters: [{ cluster: { name: 'outbound|9080||reviews.default.svc.cluster.local', type: 'EDS' } }] },
  ] }));
  const gone = await serve(200, 'text/plain', '');
  refused = gone.address;
  await gone.close();
});

after(async () => {
  for (const s of Object.values(servers)) await s.close();
});

const at = (name: string): string => servers[name]!.address;

test('proxy-status against a web server that answers 404 HTML names the URL and what answered, exit 1', async () => {
  const r = await sextant('proxy-status', '--pilot', `http://${at('html404')}`);
  assert.deepEqual(r, { code: 1, stdout: '', stderr: `error: http://${at('html404')}/debug/syncz answered 404 text/html: not a Sextant pilot\n` });
});

test('proxy-status against a 200 HTML page, exit 1', async () => {
  const r = await sextant('proxy-status', '--pilot', at('html200'));
  assert.deepEqual(r, { code: 1, stdout: '', stderr: `error: http://${at('html200')}/debug/syncz answered 200 text/html: not a Sextant pilot\n` });
});

test('proxy-status against JSON of another shape says so instead of "statuses is not iterable", exit 1', async () => {
  const object = await sextant('proxy-status', '--pilot', at('otherJson'));
  assert.deepEqual(object, { code: 1, stdout: '', stderr: `error: http://${at('otherJson')}/debug/syncz answered 200 application/json (not a list of proxy statuses): not a Sextant pilot\n` });
  const list = await sextant('proxy-status', '--pilot', at('listOfOther'), '-o', 'json');
  assert.deepEqual(list, { code: 1, stdout: '', stderr: `error: http://${at('listOfOther')}/debug/syncz answered 200 application/json (not a list of proxy statuses): not a Sextant pilot\n` });
});

test('proxy-status quotes a JSON error a server explains itself with, exit 1', async () => {
  const r = await sextant('proxy-status', '--pilot', at('jsonError'));
  assert.deepEqual(r, { code: 1, stdout: '', stderr: `error: http://${at('jsonError')}/debug/syncz answered 500: push context not built yet\n` });
});

test('proxy-status against an answer without a content type', async () => {
  const r = await sextant('proxy-status', '--pilot', at('noType'));
  assert.deepEqual(r, { code: 1, stdout: '', stderr: `error: http://${at('noType')}/debug/syncz answered 404 with no content type: not a Sextant pilot\n` });
});

test('proxy-status where nothing listens: connection refused, naming the address, exit 1', async () => {
  const r = await sextant('proxy-status', '--pilot', `http://${refused}`);
  assert.deepEqual(r, { code: 1, stdout: '', stderr: `error: cannot reach a Sextant pilot at http://${refused}/debug/syncz: connection refused\n` });
});

test('proxy-status against a pilot prints its table and NACK reasons, exit 0', async () => {
  const r = await sextant('proxy-status', '--pilot', at('pilot'));
  assert.equal(r.stderr, '');
  assert.equal(r.code, 0);
  assert.equal(r.stdout, [
    'NAME                                                        PROTOCOL   CDS      LDS      EDS        RDS        CONVERGENCE',
    'sidecar~127.0.0.1~web-1.default~default.svc.cluster.local   DELTA      SYNCED   NACKED   NOT SENT   NOT SENT   -',
    '',
    'sidecar~127.0.0.1~web-1.default~default.svc.cluster.local LDS NACKED version v7: Listener l: bad',
    '',
  ].join('\n'));
});

test('proxy-config against a web server that answers 404 HTML, exit 1', async () => {
  const r = await sextant('proxy-config', 'clusters', at('html404'));
  assert.deepEqual(r, { code: 1, stdout: '', stderr: `error: http://${at('html404')}/config_dump answered 404 text/html: not a sidecar's admin endpoint (Sextant or Envoy)\n` });
});

test('proxy-config against JSON that is not a config dump prints no empty table, exit 1', async () => {
  for (const name of ['otherJson', 'listOfOther', 'pilot']) {
    const r = await sextant('proxy-config', 'listeners', at(name));
    assert.deepEqual(r, { code: 1, stdout: '', stderr: `error: http://${at(name)}/config_dump answered 200 application/json (not a config dump): not a sidecar's admin endpoint (Sextant or Envoy)\n` });
  }
});

test('proxy-config where nothing listens: connection refused, naming the address, exit 1', async () => {
  const r = await sextant('proxy-config', 'routes', refused);
  assert.deepEqual(r, { code: 1, stdout: '', stderr: `error: cannot reach a sidecar's admin endpoint (Sextant or Envoy) at http://${refused}/config_dump: connection refused\n` });
});

test('proxy-config against a config dump prints its table, exit 0', async () => {
  const r = await sextant('proxy-config', 'clusters', at('admin'));
  assert.deepEqual(r, {
    code: 0,
    stderr: '',
    stdout: 'SERVICE FQDN                       PORT  SUBSET  DIRECTION  TYPE\nreviews.default.svc.cluster.local  9080  -       outbound   EDS\n',
  });
});
