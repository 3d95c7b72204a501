// The app of the start-order test: the moment it starts it makes one request through its
// sidecar's egress listener, as an app that calls a dependency on start-up does, and exits 0
// when the answer is 200, 1 otherwise (printing what it got). No retry: the first request is
// the one M10 is about.
import http from 'node:http';

const target = new URL(process.env['TARGET'] ?? '');
const host = process.env['TARGET_HOST'] ?? target.host;
const started = performance.now();
const req = http.request(target, { headers: { host }, timeout: 10_000, agent: false }, (res) => {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => {
    const body = Buffer.concat(chunks).toString();
    process.stdout.write(`${JSON.stringify({ status: res.statusCode, body, ms: Math.round(performance.now() - started) })}\n`);
    process.exitCode = res.statusCode === 200 ? 0 : 1;
  });
});
req.on('timeout', () => req.destroy(new Error('timeout')));
req.on('error', (err: NodeJS.ErrnoException) => {
  process.stdout.write(`${JSON.stringify({ error: err.code ?? err.message, ms: Math.round(performance.now() - started) })}\n`);
  process.exitCode = 1;
});
req.end();
