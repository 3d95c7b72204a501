// What the sidecar refuses, seen from both ends: the exact answer the client gets, and
// what (nothing, or an unusable half request on a connection closed at once) reaches the
// application. Malformed chunk lines, invalid Host values, bare CR line endings and
// non-HTTP/1 request lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findHeadEnd, HttpParseError, parseRequestHead } from '../../../src/proxy/http/parser.ts';
import { codecRelay, localResponse, recordingUpstream, sleep } from './harness.ts';
import { RawClient } from './wire.ts';

function parse(s: string) {
  const b = Buffer.from(s, 'latin1');
  return parseRequestHead(b, 0, findHeadEnd(b, 0, 0), 100);
}

function refused(s: string, message: string): void {
  assert.throws(() => parse(s), (e: unknown) => e instanceof HttpParseError && e.status === 400 && e.message === message, JSON.stringify(s));
}

const CHUNKED_HEAD = 'POST /up HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n';

test('a bad first chunk line that came with the head: 400, and not one byte reaches the app', async () => {
  const app = await recordingUpstream();
  const relay = await codecRelay(app.port);
  const cases: Array<[string, string]> = [
    ['+5\r\nhello\r\n0\r\n\r\n', 'invalid chunk size'],
    ['-5\r\nhello\r\n0\r\n\r\n', 'invalid chunk size'],
    [' 5\r\nhello\r\n0\r\n\r\n', 'invalid chunk size'],
    ['0x5\r\nhello\r\n0\r\n\r\n', 'invalid chunk size'],
    ['5;ext\nhello\r\n0\r\n\r\n', 'invalid chunk extension'],
    ['5\nhello\r\n0\r\n\r\n', 'invalid chunk size'],
    [`5;${'e'.repeat(100 * 1024)}\r\nhello\r\n0\r\n\r\n`, 'chunk extension too long'],
    // the first chunk line still arriving (no line end yet): held, then refused
    [`5;${'e'.repeat(3000)}`, ''],
    // a bad chunk later in the same read: found before the head goes anywhere
    ['5\r\nhello\r\n+5\r\nworld\r\n0\r\n\r\n', 'invalid chunk size'],
    ['5\r\nhelloXX\r\n0\r\n\r\n', 'chunk data longer than its size'],
  ];
  for (const [body, message] of cases) {
    const c = await RawClient.connect(relay.port);
    c.write(CHUNKED_HEAD + body);
    if (message === '') {
      // nothing wrong yet: the head waits for the end of its first chunk line
      await sleep(150);
      assert.equal(app.raw(), '');
      assert.equal(c.received, '');
      c.write('e'.repeat(2000));
      assert.equal(await c.untilClosed(), localResponse(400, 'Bad Request', 'chunk extension too long'));
    } else {
      assert.equal(await c.untilClosed(), localResponse(400, 'Bad Request', message), JSON.stringify(body.slice(0, 40)));
    }
  }
  await sleep(50);
  assert.equal(app.connections.length, 0);
  assert.equal(app.raw(), '');
});

test('a first chunk line split across reads is waited for; a good one lets the head go with it', async () => {
  const app = await recordingUpstream();
  const relay = await codecRelay(app.port);
  const c = await RawClient.connect(relay.port);
  c.write(CHUNKED_HEAD + '5;name=');
  await sleep(150);
  assert.equal(app.raw(), '');
  c.write('val\r\nhello\r\n0\r\n\r\n');
  assert.equal(await c.until((s) => s.endsWith('ok')), 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  assert.equal(app.raw(), CHUNKED_HEAD + '5\r\nhello\r\n0\r\n\r\n');
  // a bare LF arriving after the held part of the line: refused, the app saw nothing
  app.reset();
  const d = await RawClient.connect(relay.port);
  d.write(CHUNKED_HEAD + '5;name');
  await sleep(100);
  d.write('\nhello\r\n0\r\n\r\n');
  assert.equal(await d.untilClosed(), localResponse(400, 'Bad Request', 'invalid chunk extension'));
  assert.equal(app.raw(), '');
  // a head alone (Expect: 100-continue, or a client that writes the head first) is not held
  const e = await RawClient.connect(relay.port);
  e.write(CHUNKED_HEAD);
  await sleep(150);
  assert.equal(app.raw(), CHUNKED_HEAD);
  e.write('2\r\nhi\r\n0\r\n\r\n');
  assert.equal(await e.until((s) => s.endsWith('ok')), 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
});

test('a chunk error found after the head went upstream: 400 to the client, the upstream connection closed with the request unfinished', async () => {
  const app = await recordingUpstream();
  const relay = await codecRelay(app.port);
  for (const [first, later, message] of [
    ['', '+5\r\nhello\r\n0\r\n\r\n', 'invalid chunk size'],
    ['5\r\nhello\r\n', '5;a\nworld\r\n0\r\n\r\n', 'invalid chunk extension'],
    ['5\r\nhello\r\n', `5;${'e'.repeat(100 * 1024)}\r\n`, 'chunk extension too long'],
  ] as const) {
    app.reset();
    const c = await RawClient.connect(relay.port);
    c.write(CHUNKED_HEAD + first);
    await sleep(100);
    c.write(later);
    assert.equal(await c.untilClosed(), localResponse(400, 'Bad Request', message));
    await sleep(50);
    // the app got the head (and the good chunk) but never a complete request, and its
    // connection is closed, not pooled for the next request
    const conn = app.connections[app.connections.length - 1]!;
    assert.equal(conn.raw, CHUNKED_HEAD + first);
    assert.equal(conn.closed, true);
    assert.equal(app.requests.length, 0);
    assert.equal(relay.pool.idleConnections(), 0);
  }
  // the next request is served on a fresh upstream connection
  const d = await RawClient.connect(relay.port);
  d.write('GET /after HTTP/1.1\r\nHost: svc\r\n\r\n');
  assert.equal(await d.until((s) => s.endsWith('ok')), 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  assert.equal(app.requests[0]!.connection, 3);
});

test('Host must be uri-host [":" port]: empty, whitespace, userinfo, path, comma or a bad port is 400', () => {
  for (const host of ['', 'a b', 'a@b', 'user:pw@b', 'a/b', 'a\\b', 'a,b', 'a:b', 'a:80:90', '[::1', '[]', '[::1]x', ':80', 'a%zz', 'a%4', 'a"b', 'a<b>', 'a{b}', 'a|b', 'a^b', 'a`b', 'a#b', 'a?b', 'a\xe9b']) {
    refused(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`, 'invalid Host header');
  }
  // an empty Host is refused on HTTP/1.0 as well; an absent one is not
  refused('GET / HTTP/1.0\r\nHost:\r\n\r\n', 'invalid Host header');
  assert.equal(parse('GET / HTTP/1.0\r\n\r\n').head.version, '1.0');
  refused('GET / HTTP/1.1\r\n\r\n', 'missing Host header');
  refused('GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n', 'more than one Host header');
  for (const host of ['reviews', 'reviews:9080', 'reviews.default.svc.cluster.local:80', '127.0.0.1', '[::1]', '[::1]:8080', '[v1.fe80::a+en1]', "a-b.c_d~!$&'()*+;=", '%41bc', 'xn--bcher-kva.example', 'a:']) {
    assert.equal(parse(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`).head.headers[0]!.value, host, host);
  }
});

test('methods must be upper-case tokens (RFC 9110 tchar, no lower-case letters)', () => {
  for (const m of ['get', 'Get', 'gET', 'G(T', 'G\x7fT', 'G\xe9T', 'GE"T', 'GET,', '[GET]', 'G/T', 'G:T', 'G@T', 'G{T']) {
    refused(`${m} / HTTP/1.1\r\nHost: a\r\n\r\n`, 'invalid method');
  }
  for (const m of ['GET', 'PROPFIND', 'M-SEARCH', "X!#$%&'*+-.^_`|~1"]) assert.equal(parse(`${m} / HTTP/1.1\r\nHost: a\r\n\r\n`).head.method, m);
});

test('an invalid Host on the wire: 400 and nothing reaches the app', async () => {
  const app = await recordingUpstream();
  const relay = await codecRelay(app.port);
  for (const raw of ['GET / HTTP/1.1\r\nHost:\r\n\r\n', 'GET / HTTP/1.1\r\nHost: a@evil\r\n\r\n', 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n', 'GET / HTTP/1.0\r\nHost: \r\n\r\n']) {
    const c = await RawClient.connect(relay.port);
    c.write(raw);
    assert.equal(await c.untilClosed(), localResponse(400, 'Bad Request', 'invalid Host header'));
  }
  assert.equal(app.raw(), '');
});

test('a bare CR line ending, or a request line that is not HTTP/1, is refused at once, not at the head timeout', async () => {
  const app = await recordingUpstream();
  const relay = await codecRelay(app.port); // headersTimeoutMs: 30 s
  const cases: Array<[string, string]> = [
    ['GET / HTTP/1.1\rHost: a\r\r', 'bare CR in request head'],
    ['GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n', 'bare CR in request head'],
    ['\rGET / HTTP/1.1', 'bare CR in request head'],
    ['GET /\r\n', 'malformed request line'], // HTTP/0.9: no version, no headers, no empty line
    ['GET / HTTP/1.1 extra\r\nHost: a\r\n', 'invalid HTTP version'],
    ['\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n', 'invalid method'], // TLS to a plaintext port, with a stray LF
  ];
  for (const [raw, message] of cases) {
    const c = await RawClient.connect(relay.port);
    const t0 = Date.now();
    c.write(raw);
    assert.equal(await c.untilClosed(), localResponse(400, 'Bad Request', message), JSON.stringify(raw));
    assert.ok(Date.now() - t0 < 2000, `${JSON.stringify(raw)} took ${Date.now() - t0} ms`);
  }
  // in a trailer section too
  const c = await RawClient.connect(relay.port);
  c.write(CHUNKED_HEAD + '2\r\nhi\r\n0\r\nX-A: 1\rX-B: 2\r\n');
  assert.equal(await c.untilClosed(), localResponse(400, 'Bad Request', 'bare CR in trailer section'));
  // a CR that may still be followed by its LF is not bare yet
  const d = await RawClient.connect(relay.port);
  d.write('GET /cr HTTP/1.1\r');
  await sleep(100);
  d.write('\nHost: a\r');
  await sleep(100);
  d.write('\n\r\n');
  assert.equal(await d.until((s) => s.endsWith('ok')), 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
});

test('a response head with a bare CR line ending fails at once (UPE), not at the response timeout', async () => {
  const app = await recordingUpstream(() => 'HTTP/1.1 200 OK\rContent-Length: 2\r');
  const relay = await codecRelay(app.port);
  const c = await RawClient.connect(relay.port);
  c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.equal(await c.until((s) => s.endsWith('UPE'), 2000), 'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\n\r\nUPE');
});
