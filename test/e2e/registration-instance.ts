// One instance of a service for the registration end-to-end tests: answers `/` with its id,
// `/slow?ms=N` after N ms, and `/inflight` (asked directly, not through the mesh) with the
// number of requests it is serving. On SIGTERM it stops accepting, lets the requests in flight
// finish, then exits 0, as a well-behaved app does when a release stops it.
//
//   node registration-instance.ts --id a1 --host 127.0.40.1 --port 18080
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { id: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' } } });
const id = values.id ?? 'instance';
let inflight = 0;

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://instance');
  if (url.pathname === '/inflight') {
    res.end(JSON.stringify({ id, inflight: inflight }));
    return;
  }
  inflight++;
  const reply = (): void => {
    inflight--;
    const body = JSON.stringify({ id });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const ms = url.pathname === '/slow' ? Number(url.searchParams.get('ms') ?? 1000) : 0;
  if (ms > 0) setTimeout(reply, ms);
  else reply();
});
server.keepAliveTimeout = 30_000;

process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  // Connections that carried a request close once its response is written.
  const timer = setInterval(() => server.closeIdleConnections(), 50);
  timer.unref();
});

server.listen(Number(values.port), values.host ?? '127.0.0.1', () => process.stdout.write(`listening ${values.host}:${values.port}\n`));
