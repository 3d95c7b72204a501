// Large bodies stream through the sidecar with backpressure and never stall, even with
// many slow-body connections open beside them; a request body that stops arriving is
// bounded by bodyIdleTimeoutMs (408), and a pause for backpressure does not count.
//
// The stall these tests pin: a streaming writer (upstream request body, downstream
// response body) remembered `write()` returning false and, at the next chunk, waited for
// 'drain'. When the socket had drained while the writer was waiting for that next chunk
// (the reading side slower than the writing side: a busy event loop, a slow client), the
// one 'drain' event had gone by unheard and the transfer stopped for good.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { codecRelay, localResponse, recordingUpstream, sleep } from './harness.ts';
import { rawServer, RawClient } from './wire.ts';

const MB = 1024 * 1024;

// An upstream that counts the body bytes of Content-Length requests and answers with the count.
async function countingUpstream(opts: { pauseFirstMs?: number } = {}): Promise<{ port: number; received: number[] }> {
  const received: number[] = [];
  const srv = await rawServer((s) => {
    let head = '';
    let want = -1;
    let got = 0;
    if (opts.pauseFirstMs !== undefined) {
      s.pause();
      setTimeout(() => s.resume(), opts.pauseFirstMs);
    }
    s.on('data', (d: Buffer) => {
      let body = d;
      if (want < 0) {
        head += d.toString('latin1');
        const i = head.indexOf('\r\n\r\n');
        if (i < 0) return;
        want = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        body = Buffer.from(head.slice(i + 4), 'latin1');
        got = 0;
      }
      got += body.length;
      if (got >= want) {
        received.push(got);
        s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${String(got).length}\r\n\r\n${got}`);
        head = '';
        want = -1;
      }
    });
  });
  return { port: srv.port, received };
}

// Uploads `size` bytes in 64 KiB writes with backpressure; resolves with the response, or
// rejects when no byte moved either way for `stallMs`.
function upload(port: number, size: number, stallMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let sent = 0;
    let response = '';
    let progress = 0;
    let seen = -1;
    const watch = setInterval(() => {
      if (progress !== seen) seen = progress;
      else {
        clearInterval(watch);
        s.destroy();
        reject(new Error(`upload stalled at ${sent} of ${size} bytes`));
      }
    }, stallMs);
    s.on('error', (e) => {
      clearInterval(watch);
      reject(e);
    });
    s.on('data', (d: Buffer) => {
      response += d.toString('latin1');
      progress++;
      if (response.endsWith(String(size))) {
        clearInterval(watch);
        s.destroy();
        resolve(response);
      }
    });
    s.write(`POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Length: ${size}\r\n\r\n`);
    const pump = (): void => {
      while (sent < size) {
        const n = Math.min(chunk.length, size - sent);
        sent += n;
        progress++;
        if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          s.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
}

// Opens `n` connections that send a head and one byte of a 1 MB body, then nothing.
async function slowBodies(port: number, n: number): Promise<net.Socket[]> {
  const out: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const c = await RawClient.connect(port);
    c.write('POST /slow HTTP/1.1\r\nHost: svc\r\nContent-Length: 1000000\r\n\r\nx');
    out.push(c.socket);
  }
  return out;
}

test('50 slow-body connections, then 3 concurrent 20 MB uploads: every upload completes', async () => {
  const app = await countingUpstream();
  const relay = await codecRelay(app.port);
  const slow = await slowBodies(relay.port, 50);
  await sleep(200);
  const size = 20 * MB;
  const results = await Promise.all([0, 1, 2].map(() => upload(relay.port, size, 5000)));
  for (const r of results) assert.equal(r, `HTTP/1.1 200 OK\r\nContent-Length: ${String(size).length}\r\n\r\n${size}`);
  assert.deepEqual(app.received, [size, size, size]);
  for (const s of slow) s.destroy();
});

test('3 concurrent 20 MB downloads complete', async () => {
  const size = 20 * MB;
  const srv = await rawServer((s) => {
    s.once('data', () => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`);
      const chunk = Buffer.alloc(64 * 1024, 0x62);
      let sent = 0;
      const pump = (): void => {
        while (sent < size) {
          sent += chunk.length;
          if (!s.write(chunk)) {
            s.once('drain', pump);
            return;
          }
        }
      };
      pump();
    });
  });
  const relay = await codecRelay(srv.port);
  const got = await Promise.all(
    [0, 1, 2].map(
      () =>
        new Promise<number>((resolve, reject) => {
          const c = net.connect(relay.port, '127.0.0.1');
          let n = -1;
          let head = '';
          let last = 0;
          const watch = setInterval(() => {
            if (n === last) {
              clearInterval(watch);
              c.destroy();
              reject(new Error(`download stalled at ${n} bytes`));
            }
            last = n;
          }, 5000);
          c.on('data', (d: Buffer) => {
            if (n < 0) {
              head += d.toString('latin1');
              const i = head.indexOf('\r\n\r\n');
              if (i < 0) return;
              n = head.length - i - 4;
            } else n += d.length;
            if (n >= size) {
              clearInterval(watch);
              c.destroy();
              resolve(n);
            }
          });
          c.write('GET /big HTTP/1.1\r\nHost: svc\r\n\r\n');
        }),
    ),
  );
  assert.deepEqual(got, [size, size, size]);
});

test('a request body that stops arriving: 408 after bodyIdleTimeoutMs, the upstream request aborted', async () => {
  const app = await recordingUpstream();
  const relay = await codecRelay(app.port, { bodyIdleTimeoutMs: 300 });
  const c = await RawClient.connect(relay.port);
  const head = 'POST /slow HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\n';
  const t0 = Date.now();
  c.write(head + 'abc');
  await sleep(200);
  c.write('def'); // a byte in time moves the deadline
  assert.equal(await c.untilClosed(), localResponse(408, 'Request Timeout', 'request body not received in time'));
  const took = Date.now() - t0;
  assert.ok(took >= 450 && took < 2000, `answered after ${took} ms`);
  await sleep(50);
  assert.equal(app.connections[0]!.raw, head + 'abcdef');
  assert.equal(app.connections[0]!.closed, true);
  assert.equal(app.requests.length, 0);
  // chunked, with the first chunk line never finished: bounded as well
  const d = await RawClient.connect(relay.port);
  d.write('POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel');
  assert.equal(await d.untilClosed(), localResponse(408, 'Request Timeout', 'request body not received in time'));
});

test('a pause for backpressure is not idleness: a slow app still gets the whole body', async () => {
  const app = await countingUpstream({ pauseFirstMs: 1000 });
  const relay = await codecRelay(app.port, { bodyIdleTimeoutMs: 300 });
  const size = 16 * MB;
  assert.equal(await upload(relay.port, size, 5000), `HTTP/1.1 200 OK\r\nContent-Length: ${String(size).length}\r\n\r\n${size}`);
  assert.deepEqual(app.received, [size]);
});
