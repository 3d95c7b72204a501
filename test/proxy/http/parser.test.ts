// The HTTP/1 parser: heads exactly as received, strict request framing, chunked decoding.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ChunkedDecoder,
  findHeadEnd,
  HttpParseError,
  parseRequestHead,
  parseResponseHead,
} from '../../../src/proxy/http/parser.ts';
import { headerValues } from '../../../src/proxy/http/index.ts';

function req(s: string) {
  const b = Buffer.from(s, 'latin1');
  const end = findHeadEnd(b, 0, 0);
  assert.ok(end > 0, 'head complete');
  return parseRequestHead(b, 0, end, 100);
}

function res(s: string) {
  const b = Buffer.from(s, 'latin1');
  const end = findHeadEnd(b, 0, 0);
  assert.ok(end > 0, 'head complete');
  return parseResponseHead(b, 0, end, 100);
}

function refused(s: string, status = 400): void {
  assert.throws(() => req(s), (e: unknown) => e instanceof HttpParseError && e.status === status, s);
}

test('request headers keep their name case, order and duplicates', () => {
  const { head } = req('POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Type: a\r\nx-LOWER-upper: v\r\ncontent-type: b\r\nContent-Length: 0\r\n\r\n');
  assert.equal(head.method, 'POST');
  assert.equal(head.target, '/a?b=1');
  assert.equal(head.version, '1.1');
  assert.deepEqual(head.headers, [
    { name: 'Host', value: 'x' },
    { name: 'Content-Type', value: 'a' },
    { name: 'x-LOWER-upper', value: 'v' },
    { name: 'content-type', value: 'b' },
    { name: 'Content-Length', value: '0' },
  ]);
  assert.deepEqual(headerValues(head.headers, 'CONTENT-TYPE'), ['a', 'b']);
});

test('values are trimmed of surrounding whitespace only; obs-text bytes survive', () => {
  const { head } = req('GET / HTTP/1.1\r\nHost: x\r\nX-A: \t a  b \t\r\nX-B:\r\nX-C: caf\xe9\r\n\r\n');
  assert.deepEqual(head.headers.slice(1), [
    { name: 'X-A', value: 'a  b' },
    { name: 'X-B', value: '' },
    { name: 'X-C', value: 'caf\xe9' },
  ]);
});

test('absolute-form targets are exposed as received', () => {
  const { head } = req('GET http://reviews:9080/x?y HTTP/1.1\r\nHost: reviews:9080\r\n\r\n');
  assert.equal(head.target, 'http://reviews:9080/x?y');
});

test('HTTP/1.0 requests need no Host; LF-only line endings are accepted', () => {
  const { head, framing } = req('GET / HTTP/1.0\nConnection: Keep-Alive\n\n');
  assert.equal(head.version, '1.0');
  assert.equal(framing.connectionKeepAlive, true);
});

test('framing: Content-Length, chunked; a repeated Content-Length is refused even with the same value', () => {
  assert.equal(req('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n').framing.contentLength, 12);
  refused('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n');
  refused('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n');
  assert.equal(res('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n').framing.contentLength, 5);
  const c = req('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n').framing;
  assert.equal(c.chunked, true);
  assert.equal(c.contentLength, -1);
});

test('ambiguous or malformed requests are refused with 400 (no smuggling)', () => {
  refused('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n');
  refused('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n');
  refused('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n');
  refused('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n');
  refused('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n');
  refused('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n');
  refused('POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n');
  refused('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n');
  refused('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n');
  refused('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n');
  refused('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\n');
  refused('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n');
  refused('GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n');
  refused('GET / HTTP/1.1\r\nHost: x\r\nX-A : v\r\n\r\n');
  refused('GET / HTTP/1.1\r\nHost: x\r\nX-A@: v\r\n\r\n');
  refused('GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n');
  refused('GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n');
  refused('GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n');
  refused('GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n');
  refused('GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n');
  refused('GET / HTTP/1.1\r\n\r\n');
  refused('GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
  refused('GET  / HTTP/1.1\r\nHost: x\r\n\r\n');
  refused('GET /a b HTTP/1.1\r\nHost: x\r\n\r\n');
  refused('G(T / HTTP/1.1\r\nHost: x\r\n\r\n');
  refused('GET / HTTP/1.1x\r\nHost: x\r\n\r\n');
  refused('GET / http/1.1\r\nHost: x\r\n\r\n');
  refused('GET / HTTP/2.0\r\nHost: x\r\n\r\n', 505);
  refused('CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n', 501);
});

test('more headers than the limit is 431', () => {
  const lines = Array.from({ length: 101 }, (_, i) => `X-${i}: v\r\n`).join('');
  const b = Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\n${lines}\r\n`, 'latin1');
  assert.throws(() => parseRequestHead(b, 0, b.length, 100), (e: unknown) => e instanceof HttpParseError && e.status === 431);
});

test('responses: repeated chunked is one chunked framing (M14)', () => {
  assert.equal(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n').framing.chunked, true);
  assert.equal(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n').framing.chunked, true);
  const both = res('HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n').framing;
  assert.equal(both.chunked, true);
  assert.equal(both.mustClose, true);
  const gz = res('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n').framing;
  assert.equal(gz.chunked, false);
  assert.equal(gz.mustClose, true);
});

test('responses: status lines with and without reason, keep-alive hints, obs-fold repaired', () => {
  const a = res('HTTP/1.0 200\r\nKeep-Alive: timeout=5, max=100\r\nX-F: a\r\n  b\r\n\r\n');
  assert.equal(a.head.status, 200);
  assert.equal(a.head.reason, '');
  assert.equal(a.head.version, '1.0');
  assert.equal(a.framing.keepAliveTimeoutMs, 5000);
  assert.equal(a.framing.keepAliveMax, 100);
  assert.deepEqual(a.head.headers[1], { name: 'X-F', value: 'a b' });
  assert.equal(res('HTTP/1.1 404 Not  Found\r\n\r\n').head.reason, 'Not  Found');
  assert.throws(() => res('HTTP/1.1 20 OK\r\n\r\n'), HttpParseError);
  assert.throws(() => res('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n'), HttpParseError);
});

function decodeAll(body: string, split: number[]): { data: string; trailers: unknown; rest: string } {
  const d = new ChunkedDecoder(1024, 10, 400);
  const bytes = Buffer.from(body, 'latin1');
  let data = '';
  let prev = 0;
  let rest = '';
  for (const cut of [...split, bytes.length]) {
    const piece = bytes.subarray(prev, cut);
    const end = d.feed(piece, 0, (b) => (data += b.toString('latin1')));
    if (d.done) {
      rest = piece.subarray(end).toString('latin1') + bytes.subarray(cut).toString('latin1');
      break;
    }
    assert.equal(end, piece.length);
    prev = cut;
  }
  assert.ok(d.done, 'body complete');
  return { data, trailers: d.trailers, rest };
}

test('chunked decoding, in one piece and split at every byte', () => {
  const body = '5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT';
  const whole = decodeAll(body, []);
  assert.equal(whole.data, 'hello0123456789');
  assert.deepEqual(whole.trailers, [{ name: 'X-Trailer', value: 't' }]);
  assert.equal(whole.rest, 'NEXT');
  for (let i = 1; i < body.length - 4; i++) {
    const r = decodeAll(body, [i]);
    assert.equal(r.data, 'hello0123456789', `split at ${i}`);
    assert.deepEqual(r.trailers, [{ name: 'X-Trailer', value: 't' }], `split at ${i}`);
  }
  const bytewise = decodeAll(body, Array.from({ length: body.length - 5 }, (_, i) => i + 1));
  assert.equal(bytewise.data, 'hello0123456789');
  assert.equal(decodeAll('0\r\n\r\n', []).trailers, null);
});

test('bad chunk sizes and framing are errors', () => {
  for (const bad of ['x\r\n', '\r\n', '-1\r\n', '5\nhello\r\n', '5\r\nhelloX\r\n', '5\r\nhello\n0\r\n\r\n', '1 x\r\n', 'fffffffffffffff\r\n', '3\r\nabc\r\n0\r\nBad Trailer\r\n\r\n']) {
    const d = new ChunkedDecoder(1024, 10, 400);
    assert.throws(() => d.feed(Buffer.from(bad, 'latin1'), 0, () => {}), HttpParseError, JSON.stringify(bad));
  }
});
