// serveHttp1 seen from a raw TCP client: exact response bytes, framing per client
// version, keep-alive, pipelining, and refusals of malformed requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { http1Limits, serveHttp1, type DownstreamRequest, type Http1Limits } from '../../../src/proxy/http/index.ts';
import { rawServer, RawClient } from './wire.ts';

async function serve(
  handler: (req: DownstreamRequest) => void | Promise<void>,
  limits: Partial<Http1Limits> = {},
  serverOpts: net.ServerOpts = {},
): Promise<number> {
  const l = http1Limits(limits);
  const srv = await rawServer((s) => {
    serveHttp1(s, l, (req) => {
      void Promise.resolve(handler(req)).catch(() => {});
    });
  }, serverOpts);
  return srv.port;
}

async function readBody(req: DownstreamRequest): Promise<string> {
  let s = '';
  for await (const b of req.body) s += b.toString('latin1');
  return s;
}

// Echoes method, target, version and headers (one line each) as the body.
async function echo(req: DownstreamRequest): Promise<void> {
  const body = await readBody(req);
  const lines = [`${req.head.method} ${req.head.target} ${req.head.version}`, ...req.head.headers.map((h) => `${h.name}=${h.value}`), `body=${body}`];
  await req.respond({ status: 200, reason: 'OK', version: '1.1', headers: [{ name: 'X-Echo', value: 'yes' }] }, Buffer.from(lines.join('\n')));
}

test('keep-alive: two requests on one connection, response framed by Content-Length', async () => {
  const port = await serve(echo);
  const c = await RawClient.connect(port);
  c.write('GET /one HTTP/1.1\r\nHost: a\r\nX-Mixed-Case: 1\r\n\r\n');
  const first = await c.until((s) => s.includes('body='));
  const body1 = 'GET /one 1.1\nHost=a\nX-Mixed-Case=1\nbody=';
  assert.equal(first, `HTTP/1.1 200 OK\r\nX-Echo: yes\r\nContent-Length: ${body1.length}\r\n\r\n${body1}`);
  c.received = '';
  c.write('POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello');
  const second = await c.until((s) => s.endsWith('body=hello'));
  assert.match(second, /^HTTP\/1\.1 200 OK\r\n/);
  assert.equal(c.ended, false);
});

test('pipelined requests are answered in order', async () => {
  const port = await serve(async (req) => {
    // the first request is slow: its response must still come first
    if (req.head.target === '/slow') await new Promise((r) => setTimeout(r, 100));
    await req.respond({ status: 200, reason: 'OK', version: '1.1', headers: [] }, Buffer.from(req.head.target));
  });
  const c = await RawClient.connect(port);
  c.write('GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /fast HTTP/1.1\r\nHost: a\r\n\r\nPOST /third HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nzz');
  const all = await c.until((s) => s.endsWith('/third'));
  assert.equal(
    all,
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n/slow' +
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n/fast' +
      'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n/third',
  );
});

test('HTTP/1.0 client without Host: HTTP/1.0 response with Content-Length, then close (M11)', async () => {
  const port = await serve(echo);
  const c = await RawClient.connect(port);
  c.write('GET /old HTTP/1.0\r\nUser-Agent: old\r\n\r\n');
  const out = await c.untilClosed();
  const body = 'GET /old 1.0\nUser-Agent=old\nbody=';
  assert.equal(out, `HTTP/1.0 200 OK\r\nX-Echo: yes\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
});

test('HTTP/1.0 client with Connection: keep-alive keeps the connection', async () => {
  const port = await serve(echo);
  const c = await RawClient.connect(port);
  c.write('GET /a HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n');
  const out = await c.until((s) => s.includes('body='));
  assert.match(out, /^HTTP\/1\.0 200 OK\r\nX-Echo: yes\r\nContent-Length: \d+\r\nConnection: keep-alive\r\n\r\n/);
  c.received = '';
  c.write('GET /b HTTP/1.0\r\nHost: h\r\n\r\n');
  const out2 = await c.untilClosed();
  assert.match(out2, /^HTTP\/1\.0 200 OK\r\n/);
  assert.ok(!out2.includes('Connection: keep-alive'));
});

test('a streamed body of unknown length goes chunked to HTTP/1.1 and close-delimited to HTTP/1.0', async () => {
  async function* gen(): AsyncIterable<Buffer> {
    yield Buffer.from('abc');
    yield Buffer.from('defgh');
  }
  const port = await serve((req) => req.respond({ status: 200, reason: 'OK', version: '1.1', headers: [{ name: 'x-a', value: '1' }] }, gen()));
  const c = await RawClient.connect(port);
  c.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n');
  assert.equal(
    await c.until((s) => s.endsWith('0\r\n\r\n')),
    'HTTP/1.1 200 OK\r\nx-a: 1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n',
  );
  const d = await RawClient.connect(port);
  d.write('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
  assert.equal(await d.untilClosed(), 'HTTP/1.0 200 OK\r\nx-a: 1\r\n\r\nabcdefgh');
});

test('a streamed body with a declared Content-Length keeps that header where it was', async () => {
  async function* gen(): AsyncIterable<Buffer> {
    yield Buffer.from('12');
    yield Buffer.from('345');
  }
  const port = await serve((req) =>
    req.respond({ status: 201, reason: 'Made', version: '1.1', headers: [{ name: 'content-length', value: '5' }, { name: 'X-Z', value: 'z' }] }, gen()),
  );
  const c = await RawClient.connect(port);
  c.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n');
  assert.equal(await c.until((s) => s.endsWith('345')), 'HTTP/1.1 201 Made\r\ncontent-length: 5\r\nX-Z: z\r\n\r\n12345');
});

test('HEAD, 204 and 304 responses carry no body', async () => {
  const port = await serve((req) => {
    const status = req.head.target === '/204' ? 204 : req.head.target === '/304' ? 304 : 200;
    return req.respond({ status, reason: 'R', version: '1.1', headers: [{ name: 'Content-Length', value: '10' }] }, Buffer.from('0123456789'));
  });
  const c = await RawClient.connect(port);
  c.write('HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET /204 HTTP/1.1\r\nHost: h\r\n\r\nGET /304 HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n');
  const out = await c.until((s) => s.endsWith('0123456789'));
  assert.equal(
    out,
    'HTTP/1.1 200 R\r\nContent-Length: 10\r\n\r\n' +
      'HTTP/1.1 204 R\r\n\r\n' +
      'HTTP/1.1 304 R\r\nContent-Length: 10\r\n\r\n' +
      'HTTP/1.1 200 R\r\nContent-Length: 10\r\n\r\n0123456789',
  );
});

test('chunked request bodies are de-framed; trailers are kept', async () => {
  let trailers: unknown = null;
  const port = await serve(async (req) => {
    assert.equal(req.bodyLength, 'chunked');
    const body = await readBody(req);
    trailers = req.body.trailers;
    await req.respond({ status: 200, reason: 'OK', version: '1.1', headers: [] }, Buffer.from(`${body}|${req.bytesReceived()}`));
  });
  const c = await RawClient.connect(port);
  c.write('POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nX-T: 1\r\n\r\n');
  assert.equal(await c.until((s) => s.endsWith('|9')), 'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nwikipedia|9');
  assert.deepEqual(trailers, [{ name: 'X-T', value: '1' }]);
});

test('ambiguous framing, bad chunk sizes and invalid headers get 400 and a closed connection', async () => {
  let handled = 0;
  const port = await serve(async (req) => {
    handled++;
    await readBody(req).catch(() => {});
    if (!req.responded) await req.respond({ status: 200, reason: 'OK', version: '1.1', headers: [] }).catch(() => {});
  });
  const cases = [
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab',
    'GET / HTTP/1.1\r\nHost: h\r\nBad\x01Name: x\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n',
  ];
  for (const raw of cases) {
    const c = await RawClient.connect(port);
    c.write(raw);
    const out = await c.untilClosed();
    assert.match(out, /^HTTP\/1\.1 400 Bad Request\r\nContent-Length: \d+\r\nContent-Type: text\/plain\r\nConnection: close\r\n\r\n/, JSON.stringify(raw));
  }
  assert.equal(handled, 0);
  // a bad chunk size is found after the head was handed out: 400 if no response started
  const c = await RawClient.connect(port);
  c.write('POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n');
  assert.match(await c.untilClosed(), /^HTTP\/1\.1 400 Bad Request\r\n/);
});

test('a head larger than maxHeaderBytes gets 431', async () => {
  const port = await serve(echo, { maxHeaderBytes: 1024 });
  const c = await RawClient.connect(port);
  c.write(`GET / HTTP/1.1\r\nHost: h\r\nX-Big: ${'a'.repeat(2000)}\r\n\r\n`);
  assert.match(await c.untilClosed(), /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
});

test('a head not completed within headersTimeoutMs gets 408 and close', async () => {
  const port = await serve(echo, { headersTimeoutMs: 200 });
  const c = await RawClient.connect(port);
  c.write('GET / HTTP/1.1\r\nHost: h\r\n');
  assert.match(await c.untilClosed(), /^HTTP\/1\.1 408 Request Timeout\r\n/);
});

test('an idle keep-alive connection is closed silently after idleTimeoutMs', async () => {
  const port = await serve(echo, { idleTimeoutMs: 200 });
  const c = await RawClient.connect(port);
  assert.equal(await c.untilClosed(), '');
});

test('Expect: 100-continue gets 100 Continue when the body is read', async () => {
  const port = await serve(echo);
  const c = await RawClient.connect(port);
  c.write('POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n');
  await c.until((s) => s.includes('100 Continue'));
  assert.equal(c.received, 'HTTP/1.1 100 Continue\r\n\r\n');
  c.write('hi');
  assert.match(await c.until((s) => s.endsWith('body=hi')), /HTTP\/1\.1 200 OK\r\n/);
});

test('a response sent before the request body was read keeps the connection when the rest is small', async () => {
  const port = await serve((req) => req.respond({ status: 413, reason: 'Too Large', version: '1.1', headers: [] }, Buffer.from('no')));
  const c = await RawClient.connect(port);
  c.write('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234');
  await c.until((s) => s.endsWith('no'));
  c.write('56789GET /next HTTP/1.1\r\nHost: h\r\n\r\n');
  const out = await c.until((s) => s.split('HTTP/1.1 413').length === 3);
  assert.equal(out, 'HTTP/1.1 413 Too Large\r\nContent-Length: 2\r\n\r\nno'.repeat(2));
  // a large unread body closes the connection instead
  const d = await RawClient.connect(port);
  d.write('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10000000\r\n\r\n01234');
  assert.equal(await d.untilClosed(), 'HTTP/1.1 413 Too Large\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno');
});

test('the request signal aborts when the client goes away mid-request', async () => {
  let resolveSignal!: (v: string) => void;
  const aborted = new Promise<string>((r) => (resolveSignal = r));
  const port = await serve((req) => {
    req.signal.addEventListener('abort', () => resolveSignal((req.signal.reason as Error).name));
  });
  const c = await RawClient.connect(port);
  c.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n');
  await new Promise((r) => setTimeout(r, 50));
  c.socket.destroy();
  assert.equal(await aborted, 'DownstreamClosedError');
});

test('a half-closing HTTP/1.0 client still gets its response when the listener allows half-open', async () => {
  const port = await serve(
    async (req) => {
      await new Promise((r) => setTimeout(r, 50));
      await req.respond({ status: 200, reason: 'OK', version: '1.0', headers: [] }, Buffer.from('late'));
    },
    {},
    { allowHalfOpen: true },
  );
  const c = await RawClient.connect(port);
  c.socket.end('GET / HTTP/1.0\r\n\r\n');
  assert.equal(await c.untilClosed(), 'HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nlate');
});

test('hop-by-hop headers of the response are replaced by the codec; others pass untouched', async () => {
  const port = await serve((req) =>
    req.respond(
      {
        status: 200,
        reason: 'OK',
        version: '1.1',
        headers: [
          { name: 'Connection', value: 'close, X-Hop' },
          { name: 'X-Hop', value: 'gone' },
          { name: 'Keep-Alive', value: 'timeout=5' },
          { name: 'Set-Cookie', value: 'a=1' },
          { name: 'Set-Cookie', value: 'b=2' },
        ],
      },
      Buffer.from('x'),
    ),
  );
  const c = await RawClient.connect(port);
  c.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n');
  assert.equal(await c.until((s) => s.endsWith('x')), 'HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 1\r\n\r\nx');
  assert.equal(c.ended, false);
});

test('a client that pipelines without reading gets no further responses until it reads (bounded memory)', async () => {
  const big = Buffer.alloc(4 * 1024 * 1024, 0x61);
  let handled = 0;
  const port = await serve((req) => {
    handled++;
    return req.respond({ status: 200, reason: 'OK', version: '1.1', headers: [] }, big);
  });
  const c = await RawClient.connect(port);
  c.socket.pause();
  c.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n'.repeat(8));
  await new Promise((r) => setTimeout(r, 300));
  // the kernel buffers hold at most a few MB: the server stopped after the first responses
  assert.ok(handled < 5, `handled ${handled} requests while the client read nothing`);
  let got = 0;
  c.socket.on('data', (b: Buffer) => (got += b.length));
  c.socket.resume();
  const deadline = Date.now() + 20_000;
  while (handled < 8 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(handled, 8);
});

test('a final response to Expect: 100-continue before the body was asked for closes the connection', async () => {
  const port = await serve((req) => req.respond({ status: 404, reason: 'Not Found', version: '1.1', headers: [] }, Buffer.from('nope')));
  const c = await RawClient.connect(port);
  c.write('POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n');
  assert.equal(await c.untilClosed(), 'HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope');
});

test('a response head that would split the response is refused before any byte is sent', async () => {
  const port = await serve(async (req) => {
    await assert.rejects(
      req.respond({ status: 200, reason: 'OK', version: '1.1', headers: [{ name: 'X-A', value: 'a\r\nSet-Cookie: evil=1' }] }),
      /invalid value for header X-A/,
    );
    await assert.rejects(req.respond({ status: 200, reason: 'OK', version: '1.1', headers: [{ name: 'Bad Name', value: 'v' }] }), /invalid header name/);
    await req.respond({ status: 500, reason: 'Internal Server Error', version: '1.1', headers: [] }, Buffer.from('x'));
  });
  const c = await RawClient.connect(port);
  c.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n');
  assert.equal(await c.until((s) => s.endsWith('x')), 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1\r\n\r\nx');
});
