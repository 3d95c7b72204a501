// Differential HTTP/1 test: a corpus of malformed and ambiguous requests (smuggling
// vectors, obsolete syntax, invalid Host and methods, chunk-line abuse) sent to
//   ours   the sidecar's codec and pool as a relay, in front of a recording upstream;
//   node   Node's own parser (llhttp, strict: no insecureHTTPParser) in a node:http server;
//   nginx  nginx as a reverse proxy in front of a recording upstream, when /usr/sbin/nginx
//          exists (spawned here in a temporary prefix, killed after).
// Each case states the sidecar's exact outcome. The references' outcomes are recorded and
// every disagreement printed; the rules asserted: when a reference refuses, ours refuses
// too or forwards exactly one unambiguous request with the framing it decided; ours never
// forwards what both references refuse.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { codecRelay, recordingUpstream, sleep, splitRequests, type RecordingUpstream } from './harness.ts';
import { countMessages } from './wire.ts';

// SEXTANT_NGINX points at another binary (or at none, to see the arm skipped).
const NGINX = process.env['SEXTANT_NGINX'] ?? '/usr/sbin/nginx';

/** What the sidecar does with a case: refuse with this status, or forward exactly these bytes. */
type Expected = { status: number } | { forward: string };

interface Case {
  id: string;
  /** Request bytes (latin1), sent in one write on a new connection. */
  raw: string;
  ours: Expected;
}

const H = 'Host: svc\r\n';
const POST_CHUNKED = `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`;
/** Stands for the upstream's address in an expected Host the pool adds. */
const UPSTREAM = '{upstream}';

const same = (raw: string): Expected => ({ forward: raw });
const refuse = (status = 400): Expected => ({ status });

const CORPUS: Case[] = [
  // request line
  { id: 'valid-get', raw: `GET /a?b=1 HTTP/1.1\r\n${H}\r\n`, ours: same(`GET /a?b=1 HTTP/1.1\r\n${H}\r\n`) },
  { id: 'lf-only-lines', raw: 'GET / HTTP/1.1\nHost: svc\n\n', ours: same(`GET / HTTP/1.1\r\n${H}\r\n`) },
  { id: 'leading-empty-line', raw: `\r\nGET / HTTP/1.1\r\n${H}\r\n`, ours: same(`GET / HTTP/1.1\r\n${H}\r\n`) },
  { id: 'http-0.9', raw: 'GET /\r\n', ours: refuse() },
  { id: 'http-0.9-empty-line', raw: 'GET /\r\n\r\n', ours: refuse() },
  { id: 'version-1.2', raw: `GET / HTTP/1.2\r\n${H}\r\n`, ours: refuse(505) },
  { id: 'version-2.0', raw: `GET / HTTP/2.0\r\n${H}\r\n`, ours: refuse(505) },
  { id: 'h2-preface', raw: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', ours: refuse(505) },
  { id: 'version-lower-case', raw: `GET / http/1.1\r\n${H}\r\n`, ours: refuse() },
  { id: 'version-trailing-space', raw: `GET / HTTP/1.1 \r\n${H}\r\n`, ours: refuse() },
  { id: 'two-spaces-after-method', raw: `GET  / HTTP/1.1\r\n${H}\r\n`, ours: refuse() },
  { id: 'space-in-target', raw: `GET /a b HTTP/1.1\r\n${H}\r\n`, ours: refuse() },
  { id: 'tab-in-target', raw: `GET /a\tb HTTP/1.1\r\n${H}\r\n`, ours: refuse() },
  { id: 'nul-in-target', raw: `GET /a\0b HTTP/1.1\r\n${H}\r\n`, ours: refuse() },
  { id: 'obs-text-in-target', raw: `GET /caf\xe9 HTTP/1.1\r\n${H}\r\n`, ours: same(`GET /caf\xe9 HTTP/1.1\r\n${H}\r\n`) },
  { id: 'tab-after-method', raw: `GET\t/ HTTP/1.1\r\n${H}\r\n`, ours: refuse() },
  { id: 'absolute-form', raw: `GET http://svc/x HTTP/1.1\r\n${H}\r\n`, ours: same(`GET http://svc/x HTTP/1.1\r\n${H}\r\n`) },
  { id: 'absolute-form-other-host', raw: `GET http://other/x HTTP/1.1\r\n${H}\r\n`, ours: same(`GET http://other/x HTTP/1.1\r\n${H}\r\n`) },
  { id: 'asterisk-form', raw: `OPTIONS * HTTP/1.1\r\n${H}\r\n`, ours: same(`OPTIONS * HTTP/1.1\r\n${H}\r\n`) },
  { id: 'connect', raw: 'CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n\r\n', ours: refuse(501) },
  // methods
  { id: 'method-unknown', raw: `FOO / HTTP/1.1\r\n${H}\r\n`, ours: same(`FOO / HTTP/1.1\r\n${H}\r\n`) },
  { id: 'method-lower-case', raw: `get / HTTP/1.1\r\n${H}\r\n`, ours: refuse() },
  { id: 'method-not-token', raw: `G(T / HTTP/1.1\r\n${H}\r\n`, ours: refuse() },
  { id: 'method-obs-text', raw: `G\xe9T / HTTP/1.1\r\n${H}\r\n`, ours: refuse() },
  // Host
  { id: 'host-missing-1.1', raw: 'GET / HTTP/1.1\r\n\r\n', ours: refuse() },
  { id: 'host-missing-1.0', raw: 'GET / HTTP/1.0\r\n\r\n', ours: same(`GET / HTTP/1.1\r\nHost: ${UPSTREAM}\r\n\r\n`) },
  { id: 'host-empty', raw: 'GET / HTTP/1.1\r\nHost:\r\n\r\n', ours: refuse() },
  { id: 'host-twice', raw: `GET / HTTP/1.1\r\n${H}Host: other\r\n\r\n`, ours: refuse() },
  { id: 'host-space', raw: 'GET / HTTP/1.1\r\nHost: svc other\r\n\r\n', ours: refuse() },
  { id: 'host-userinfo', raw: 'GET / HTTP/1.1\r\nHost: user@svc\r\n\r\n', ours: refuse() },
  { id: 'host-slash', raw: 'GET / HTTP/1.1\r\nHost: svc/x\r\n\r\n', ours: refuse() },
  { id: 'host-comma', raw: 'GET / HTTP/1.1\r\nHost: svc,other\r\n\r\n', ours: refuse() },
  { id: 'host-bad-port', raw: 'GET / HTTP/1.1\r\nHost: svc:http\r\n\r\n', ours: refuse() },
  { id: 'host-ipv6', raw: 'GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n', ours: same('GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n') },
  // header lines
  { id: 'obs-fold', raw: `GET / HTTP/1.1\r\n${H}X-A: a\r\n b\r\n\r\n`, ours: refuse() },
  { id: 'space-before-colon', raw: `GET / HTTP/1.1\r\n${H}X-A : b\r\n\r\n`, ours: refuse() },
  { id: 'name-not-token', raw: `GET / HTTP/1.1\r\n${H}X@A: b\r\n\r\n`, ours: refuse() },
  { id: 'tab-before-colon', raw: `GET / HTTP/1.1\r\n${H}X-A\t: b\r\n\r\n`, ours: refuse() },
  { id: 'name-empty', raw: `GET / HTTP/1.1\r\n${H}: b\r\n\r\n`, ours: refuse() },
  { id: 'line-without-colon', raw: `GET / HTTP/1.1\r\n${H}X-A\r\n\r\n`, ours: refuse() },
  { id: 'nul-in-value', raw: `GET / HTTP/1.1\r\n${H}X-A: a\0b\r\n\r\n`, ours: refuse() },
  { id: 'ctl-in-value', raw: `GET / HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`, ours: refuse() },
  { id: 'bare-cr-in-value', raw: `GET / HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`, ours: refuse() },
  { id: 'bare-cr-line-ends', raw: 'GET / HTTP/1.1\rHost: svc\r\r', ours: refuse() },
  { id: 'obs-text-in-value', raw: `GET / HTTP/1.1\r\n${H}X-A: caf\xe9\r\n\r\n`, ours: same(`GET / HTTP/1.1\r\n${H}X-A: caf\xe9\r\n\r\n`) },
  // Content-Length and Transfer-Encoding
  { id: 'cl-and-te', raw: `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'te-and-cl', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'cl-twice-differing', raw: `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`, ours: refuse() },
  { id: 'cl-twice-same', raw: `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`, ours: refuse() },
  { id: 'cl-list-same', raw: `POST / HTTP/1.1\r\n${H}Content-Length: 3, 3\r\n\r\nabc`, ours: refuse() },
  { id: 'cl-list-differing', raw: `POST / HTTP/1.1\r\n${H}Content-Length: 3, 4\r\n\r\nabcd`, ours: refuse() },
  { id: 'cl-plus-sign', raw: `POST / HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\nabc`, ours: refuse() },
  { id: 'cl-negative', raw: `POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`, ours: refuse() },
  { id: 'cl-leading-zeros', raw: `POST / HTTP/1.1\r\n${H}Content-Length: 003\r\n\r\nabc`, ours: same(`POST / HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc`) },
  { id: 'cl-20-digits', raw: `POST / HTTP/1.1\r\n${H}Content-Length: 18446744073709551619\r\n\r\nabc`, ours: refuse() },
  { id: 'cl-space-inside', raw: `POST / HTTP/1.1\r\n${H}Content-Length: 1 2\r\n\r\nabc`, ours: refuse() },
  { id: 'cl-empty', raw: `POST / HTTP/1.1\r\n${H}Content-Length:\r\n\r\nabc`, ours: refuse() },
  { id: 'cl-with-obfuscated-te', raw: `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'cl-on-get', raw: `GET / HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc`, ours: same(`GET / HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc`) },
  { id: 'cl-http-1.0', raw: 'POST / HTTP/1.0\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc', ours: same(`POST / HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc`) },
  { id: 'te-chunked-then-gzip', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'te-gzip-then-chunked', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n`, ours: same(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n`) },
  { id: 'te-chunked-twice-lines', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'te-chunked-twice-list', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'te-xchunked', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'te-quoted', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'te-upper-case', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: CHUNKED\r\n\r\n2\r\nhi\r\n0\r\n\r\n`, ours: same(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: CHUNKED\r\n\r\n2\r\nhi\r\n0\r\n\r\n`) },
  { id: 'te-leading-comma', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: ,chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n`, ours: same(`${POST_CHUNKED}2\r\nhi\r\n0\r\n\r\n`) },
  { id: 'te-identity', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\n\r\nabc`, ours: refuse() },
  { id: 'te-chunked-then-other-line', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'te-nul-suffix', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\0\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'te-tab-before-value', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding:\tchunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n`, ours: same(`${POST_CHUNKED}2\r\nhi\r\n0\r\n\r\n`) },
  { id: 'te-space-before-colon', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'te-obs-fold', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'te-vertical-tab', raw: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'te-http-1.0', raw: 'POST / HTTP/1.0\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', ours: refuse() },
  // chunked bodies
  { id: 'chunked', raw: `${POST_CHUNKED}5\r\nhello\r\n0\r\n\r\n`, ours: same(`${POST_CHUNKED}5\r\nhello\r\n0\r\n\r\n`) },
  { id: 'chunk-extension', raw: `${POST_CHUNKED}5;a=b\r\nhello\r\n0\r\n\r\n`, ours: same(`${POST_CHUNKED}5\r\nhello\r\n0\r\n\r\n`) },
  { id: 'chunk-ext-4000-bytes', raw: `${POST_CHUNKED}5;${'e'.repeat(4000)}\r\nhello\r\n0\r\n\r\n`, ours: same(`${POST_CHUNKED}5\r\nhello\r\n0\r\n\r\n`) },
  { id: 'chunk-ext-100-KiB', raw: `${POST_CHUNKED}5;${'e'.repeat(100 * 1024)}\r\nhello\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'chunk-ext-bare-lf', raw: `${POST_CHUNKED}5;a\nhello\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'chunk-size-plus', raw: `${POST_CHUNKED}+5\r\nhello\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'chunk-size-negative', raw: `${POST_CHUNKED}-5\r\nhello\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'chunk-size-0x', raw: `${POST_CHUNKED}0x5\r\nhello\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'chunk-size-leading-space', raw: `${POST_CHUNKED} 5\r\nhello\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'chunk-size-trailing-space', raw: `${POST_CHUNKED}5 \r\nhello\r\n0\r\n\r\n`, ours: same(`${POST_CHUNKED}5\r\nhello\r\n0\r\n\r\n`) },
  { id: 'chunk-size-overflow', raw: `${POST_CHUNKED}10000000000000005\r\nhello\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'chunk-size-bare-lf', raw: `${POST_CHUNKED}5\nhello\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'chunk-data-too-long', raw: `${POST_CHUNKED}3\r\nhello\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'chunk-data-bare-lf', raw: `${POST_CHUNKED}5\r\nhello\n0\r\n\r\n`, ours: refuse() },
  { id: 'chunk-second-size-bad', raw: `${POST_CHUNKED}5\r\nhello\r\n+5\r\nworld\r\n0\r\n\r\n`, ours: refuse() },
  { id: 'last-chunk-missing-crlf', raw: `${POST_CHUNKED}5\r\nhello\r\n0\r\nGET /x HTTP/1.1\r\n${H}\r\n`, ours: refuse() },
  { id: 'trailer-prohibited-fields', raw: `${POST_CHUNKED}2\r\nhi\r\n0\r\nContent-Length: 5\r\nHost: evil\r\nX-Ok: 1\r\n\r\n`, ours: same(`${POST_CHUNKED}2\r\nhi\r\n0\r\nX-Ok: 1\r\n\r\n`) },
  { id: 'trailer-obs-fold', raw: `${POST_CHUNKED}2\r\nhi\r\n0\r\nX-A: 1\r\n folded\r\n\r\n`, ours: refuse() },
];

type Outcome =
  | { kind: 'forward'; raw: string; complete: boolean }
  | { kind: 'refuse'; status: string }
  | { kind: 'none'; detail: string };

function label(o: Outcome): string {
  if (o.kind === 'forward') return o.complete ? 'forward' : 'forward (incomplete)';
  return o.kind === 'refuse' ? `refuse ${o.status}` : o.detail;
}

// Sends `raw` on a new connection; returns what came back once a whole response arrived,
// the peer closed, or `ms` passed.
async function exchange(port: number, raw: string, ms = 1500): Promise<{ response: string; closed: boolean }> {
  const s = net.connect(port, '127.0.0.1');
  let response = '';
  let closed = false;
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    const done = (): void => {
      clearTimeout(t);
      resolve();
    };
    s.on('data', (d: Buffer) => {
      response += d.toString('latin1');
      if (countMessages(response) > 0) done();
    });
    s.on('close', () => {
      closed = true;
      done();
    });
    s.on('error', () => {});
    s.on('connect', () => s.write(Buffer.from(raw, 'latin1')));
  });
  s.destroy();
  return { response, closed };
}

function statusOf(response: string): string | null {
  return /^HTTP\/1\.[01] (\d{3})/.exec(response)?.[1] ?? null;
}

// Outcome of a proxy arm: what reached its upstream, else the status it answered.
async function proxyArm(port: number, upstream: RecordingUpstream, raw: string): Promise<Outcome> {
  upstream.reset();
  const { response, closed } = await exchange(port, raw);
  await sleep(20);
  const seen = upstream.raw();
  if (seen !== '') return { kind: 'forward', raw: seen, complete: upstream.requests.length > 0 };
  const status = statusOf(response);
  if (status !== null && status !== '200') return { kind: 'refuse', status };
  return { kind: 'none', detail: closed ? (response === '' ? 'closed' : `answered ${JSON.stringify(response.slice(0, 20))}`) : 'no answer' };
}

// Node's own server: forwarded when its handler read the whole request; refused on clientError.
interface NodeArm {
  port: number;
  run(raw: string): Promise<Outcome>;
}

async function nodeArm(): Promise<NodeArm> {
  let accepted: string | null = null;
  let error: string | null = null;
  const server = http.createServer({ insecureHTTPParser: false, requireHostHeader: true }, (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString('latin1')));
    req.on('end', () => {
      accepted = `${req.method} ${req.url} ${req.rawHeaders.join('|')} body=${body}`;
      res.end('ok');
    });
    req.on('error', () => {});
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    error = err.code ?? err.message;
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    async run(raw) {
      accepted = null;
      error = null;
      const { response } = await exchange(port, raw);
      await sleep(20);
      if (error !== null) return { kind: 'refuse', status: `${statusOf(response) ?? '-'} ${error as string}` };
      if (accepted !== null) return { kind: 'forward', raw: accepted, complete: true };
      const status = statusOf(response);
      if (status !== null && status !== '200') return { kind: 'refuse', status };
      return { kind: 'none', detail: response === '' ? 'no answer' : `answered ${JSON.stringify(response.slice(0, 20))}` };
    },
  };
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

// nginx as a reverse proxy to `upstreamPort`, in a temporary prefix; stopped after the file.
async function startNginx(upstreamPort: number): Promise<number> {
  const prefix = mkdtempSync(path.join(os.tmpdir(), 'sextant-nginx-'));
  for (const d of ['logs', 'tmp']) mkdirSync(path.join(prefix, d));
  const port = await freePort();
  const conf = path.join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log info;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://127.0.0.1:${upstreamPort};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  const child: ChildProcess = spawn(NGINX, ['-p', prefix, '-c', conf, '-e', path.join(prefix, 'logs/error.log')], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  after(async () => {
    // nginx writes into its prefix until it exits: remove the prefix after that
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
    }
    rmSync(prefix, { recursive: true, force: true });
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up) return port;
    if (child.exitCode !== null || Date.now() > deadline) {
      const log = existsSync(path.join(prefix, 'logs/error.log')) ? readFileSync(path.join(prefix, 'logs/error.log'), 'latin1') : '';
      throw new Error(`nginx did not start (exit ${String(child.exitCode)}): ${log}`);
    }
    await sleep(50);
  }
}

test(`differential: ${CORPUS.length} malformed or ambiguous requests against the sidecar's codec, Node's llhttp and nginx`, async () => {
  assert.ok(CORPUS.length >= 40);
  assert.equal(new Set(CORPUS.map((c) => c.id)).size, CORPUS.length, 'case ids are unique');
  const oursUpstream = await recordingUpstream();
  const ours = await codecRelay(oursUpstream.port);
  const node = await nodeArm();
  let nginx: { port: number; upstream: RecordingUpstream } | null = null;
  if (existsSync(NGINX)) {
    const upstream = await recordingUpstream();
    nginx = { port: await startNginx(upstream.port), upstream };
  } else {
    console.log(`differential: ${NGINX} not found, the nginx arm is skipped`);
  }

  const rows: string[][] = [];
  const failures: string[] = [];
  for (const c of CORPUS) {
    const [o, n, x] = await Promise.all([
      proxyArm(ours.port, oursUpstream, c.raw),
      node.run(c.raw),
      nginx === null ? Promise.resolve<Outcome>({ kind: 'none', detail: 'skipped' }) : proxyArm(nginx.port, nginx.upstream, c.raw),
    ]);
    const refs = nginx === null ? [n] : [n, x];
    // ours: the exact outcome the corpus states
    const exp = c.ours;
    if ('status' in exp) {
      if (o.kind !== 'refuse' || o.status !== String(exp.status)) failures.push(`${c.id}: expected refuse ${exp.status}, got ${label(o)}${o.kind === 'forward' ? ' ' + JSON.stringify(o.raw) : ''}`);
    } else {
      const want = exp.forward.replace(UPSTREAM, `127.0.0.1:${oursUpstream.port}`);
      if (o.kind !== 'forward' || o.raw !== want) failures.push(`${c.id}: expected forward ${JSON.stringify(want)}, got ${label(o)}${o.kind === 'forward' ? ' ' + JSON.stringify(o.raw) : ''}`);
    }
    // safety against the references
    if (o.kind === 'forward' && refs.some((r) => r.kind === 'refuse')) {
      const split = splitRequests(o.raw);
      if (split.requests.length !== 1 || split.rest !== '' || split.ambiguous) {
        failures.push(`${c.id}: a reference refuses and ours forwarded something other than one unambiguous request: ${JSON.stringify(o.raw)}`);
      }
    }
    if (o.kind !== 'refuse' && refs.length === 2 && refs.every((r) => r.kind === 'refuse')) {
      failures.push(`${c.id}: both references refuse, ours ${label(o)}`);
    }
    const agree = refs.every((r) => (r.kind === 'refuse') === (o.kind === 'refuse'));
    rows.push([c.id, label(o), label(n), label(x), agree ? '' : 'DIFFERS']);
  }

  const table = (title: string, body: string[][]): string => {
    const head = ['case', 'ours', 'node (llhttp)', 'nginx', ''];
    const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
    const line = (r: string[]): string => '| ' + r.map((s, i) => s.padEnd(w[i]!)).join(' | ') + ' |';
    return [title, line(head), line(w.map((n) => '-'.repeat(n))), ...body.map(line)].join('\n');
  };
  console.log(table(`differential: all ${rows.length} cases`, rows));
  const differing = rows.filter((r) => r[4] !== '');
  console.log(table(`differential: ${differing.length} disagreements (refuse vs not)`, differing));
  assert.deepEqual(failures, []);
});
