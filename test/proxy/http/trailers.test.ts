// Chunked trailers through the sidecar: fields a trailer may carry travel as they came
// (name case, order, value); fields that are not allowed in trailers (RFC 9110 §6.5.1:
// framing, routing, request modifiers, authentication, response control, content format)
// are dropped at the hop, in both directions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serializeLastChunk } from '../../../src/proxy/http/serialize.ts';
import { codecRelay, recordingUpstream } from './harness.ts';
import { RawClient } from './wire.ts';

const PROHIBITED = [
  'Content-Length: 5',
  'transfer-encoding: chunked',
  'Trailer: X-Checksum',
  'TE: trailers',
  'Host: evil.example',
  'Cache-Control: no-cache',
  'Expect: 100-continue',
  'Max-Forwards: 0',
  'Pragma: no-cache',
  'Range: bytes=0-1',
  'If-None-Match: "x"',
  'Authorization: Bearer stolen',
  'Proxy-Authorization: Basic eA==',
  'Cookie: session=evil',
  'Set-Cookie: session=evil',
  'WWW-Authenticate: Basic',
  'Proxy-Authenticate: Basic',
  'Age: 1',
  'Expires: 0',
  'Date: Thu, 01 Jan 1970 00:00:00 GMT',
  'Location: http://evil.example/',
  'Retry-After: 1',
  'Vary: *',
  'Warning: 199 - "x"',
  'Content-Encoding: gzip',
  'Content-Type: text/html',
  'Content-Range: bytes 0-1/2',
  'Connection: close',
  'Keep-Alive: timeout=1',
  'Upgrade: h2c',
];

test('request trailers: prohibited fields are dropped, allowed ones reach the app byte for byte, in order', async () => {
  const app = await recordingUpstream();
  const relay = await codecRelay(app.port);
  const c = await RawClient.connect(relay.port);
  const trailers = ['X-Checksum: abc', ...PROHIBITED.slice(0, 15), 'grpc-STATUS:  0 ', ...PROHIBITED.slice(15), 'Server-Timing: db;dur=53'];
  c.write(`POST /upload HTTP/1.1\r\nHost: svc\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n${trailers.join('\r\n')}\r\n\r\n`);
  assert.equal(await c.until((s) => s.endsWith('ok')), 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  assert.equal(app.requests.length, 1);
  assert.equal(app.requests[0]!.head, 'POST /upload HTTP/1.1\r\nHost: svc\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n');
  assert.equal(app.requests[0]!.body, '3\r\nabc\r\n0\r\nX-Checksum: abc\r\ngrpc-STATUS: 0\r\nServer-Timing: db;dur=53\r\n\r\n');
});

test('request trailers that are all prohibited leave a bare last chunk', async () => {
  const app = await recordingUpstream();
  const relay = await codecRelay(app.port);
  const c = await RawClient.connect(relay.port);
  c.write('POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nContent-Length: 2\r\nHost: other\r\nTransfer-Encoding: chunked\r\n\r\n');
  assert.equal(await c.until((s) => s.endsWith('ok')), 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  assert.equal(app.requests[0]!.body, '2\r\nhi\r\n0\r\n\r\n');
  // the connection to the app stays in use: nothing after the request confused it
  c.received = '';
  c.write('GET /next HTTP/1.1\r\nHost: svc\r\n\r\n');
  assert.equal(await c.until((s) => s.endsWith('ok')), 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  assert.deepEqual(app.requests.map((r) => r.connection), [0, 0]);
});

test('response trailers: prohibited fields are dropped before the client sees them', async () => {
  const app = await recordingUpstream(
    () =>
      'HTTP/1.1 200 OK\r\nTrailer: grpc-status\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n' +
      'grpc-status: 0\r\nSet-Cookie: admin=1\r\nContent-Length: 99\r\nLocation: http://evil.example/\r\ngrpc-message: fine\r\nContent-Type: text/html\r\n\r\n',
  );
  const relay = await codecRelay(app.port);
  const c = await RawClient.connect(relay.port);
  c.write('GET / HTTP/1.1\r\nHost: svc\r\n\r\n');
  assert.equal(
    await c.until((s) => s.endsWith('\r\n\r\n') && s.includes('grpc-message')),
    'HTTP/1.1 200 OK\r\nTrailer: grpc-status\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n',
  );
});

test('serializeLastChunk drops every prohibited name whatever its case', () => {
  for (const line of PROHIBITED) {
    const [name, value] = line.split(': ') as [string, string];
    for (const n of [name, name.toUpperCase(), name.toLowerCase()]) {
      assert.equal(serializeLastChunk([{ name: n, value }]).toString('latin1'), '0\r\n\r\n', n);
    }
  }
  assert.equal(
    serializeLastChunk([{ name: 'X-A', value: '1' }, { name: 'Host', value: 'h' }, { name: 'Digest', value: 'sha-256=x' }]).toString('latin1'),
    '0\r\nX-A: 1\r\nDigest: sha-256=x\r\n\r\n',
  );
});
