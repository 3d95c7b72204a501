// Micro-benchmark of the HTTP/1 codec: parse + serialize of typical request and response
// heads, and chunked decoding, in ops/s. Run: node bench/http-codec.ts [seconds]
// Writes bench/results/http-codec.json.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { findHeadEnd, parseRequestHead, parseResponseHead, ChunkedDecoder } from '../src/proxy/http/parser.ts';
import { serializeRequestHead, serializeResponseHead, type BodyFraming } from '../src/proxy/http/serialize.ts';

const seconds = Number(process.argv[2] ?? 2);

const REQUEST = Buffer.from(
  'GET /productpage/reviews/0?user=jason&limit=10 HTTP/1.1\r\n' +
    'Host: reviews.default.svc.cluster.local:9080\r\n' +
    'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n' +
    'Accept: application/json, text/plain, */*\r\n' +
    'Accept-Encoding: gzip, deflate\r\n' +
    'Accept-Language: en-US,en;q=0.9\r\n' +
    'Cookie: session=7f9c2ba4e88f827d616045507605853e; theme=dark\r\n' +
    'X-Request-Id: 0f8fad5b-d9cb-469f-a165-70867728950e\r\n' +
    'X-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\r\n' +
    'X-B3-SpanId: e457b5a2e4d86bd1\r\n' +
    'Connection: keep-alive\r\n\r\n',
  'latin1',
);

const RESPONSE = Buffer.from(
  'HTTP/1.1 200 OK\r\n' +
    'Content-Type: application/json\r\n' +
    'Content-Length: 1024\r\n' +
    'Date: Wed, 25 Nov 2026 06:00:00 GMT\r\n' +
    'Server: reviews\r\n' +
    'Cache-Control: no-cache\r\n' +
    'X-Envoy-Upstream-Service-Time: 3\r\n\r\n',
  'latin1',
);

const CHUNKED = Buffer.from('400\r\n' + 'x'.repeat(1024) + '\r\n' + '400\r\n' + 'y'.repeat(1024) + '\r\n0\r\n\r\n', 'latin1');

const results: Record<string, number> = {};

function bench(name: string, fn: () => void): number {
  for (let i = 0; i < 20_000; i++) fn(); // warm up
  let ops = 0;
  const start = process.hrtime.bigint();
  const budget = BigInt(Math.round(seconds * 1e9));
  for (;;) {
    for (let i = 0; i < 1000; i++) fn();
    ops += 1000;
    if (process.hrtime.bigint() - start >= budget) break;
  }
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  const rate = ops / secs;
  results[name] = Math.round(rate);
  console.log(`${name.padEnd(48)} ${Math.round(rate).toLocaleString('en-US').padStart(12)} ops/s`);
  return rate;
}

const LEN: BodyFraming = { kind: 'length', length: 1024 };
let sink = 0;

bench('parse request head (11 headers)', () => {
  const end = findHeadEnd(REQUEST, 0, 0);
  sink += parseRequestHead(REQUEST, 0, end, 100).head.headers.length;
});
const req = parseRequestHead(REQUEST, 0, REQUEST.length, 100).head;
bench('serialize request head', () => {
  sink += serializeRequestHead(req, { kind: 'none' }, '', 'reviews:9080').length;
});
bench('parse response head (6 headers)', () => {
  const end = findHeadEnd(RESPONSE, 0, 0);
  sink += parseResponseHead(RESPONSE, 0, end, 100).head.headers.length;
});
const res = parseResponseHead(RESPONSE, 0, RESPONSE.length, 100).head;
bench('serialize response head', () => {
  sink += serializeResponseHead('1.1', res.status, res.reason, res.headers, LEN, '').length;
});
const rt = bench('round trip: parse+serialize request and response', () => {
  const e1 = findHeadEnd(REQUEST, 0, 0);
  const q = parseRequestHead(REQUEST, 0, e1, 100).head;
  sink += serializeRequestHead(q, { kind: 'none' }, '', 'reviews:9080').length;
  const e2 = findHeadEnd(RESPONSE, 0, 0);
  const r = parseResponseHead(RESPONSE, 0, e2, 100).head;
  sink += serializeResponseHead('1.1', r.status, r.reason, r.headers, LEN, '').length;
});
bench('chunked decode (2 x 1 KiB chunks)', () => {
  const d = new ChunkedDecoder(60 * 1024, 100, 502);
  sink += d.feed(CHUNKED, 0, (b) => (sink += b.length));
});
console.log(`\nround trips per second: ${Math.round(rt).toLocaleString('en-US')} (${(1e6 / rt).toFixed(2)} µs each)${sink < 0 ? '' : ''}`);
await mkdir(path.join(import.meta.dirname, 'results'), { recursive: true });
await writeFile(
  path.join(import.meta.dirname, 'results', 'http-codec.json'),
  JSON.stringify({ date: new Date().toISOString(), node: process.version, opsPerSecond: results }, null, 2) + '\n',
);
