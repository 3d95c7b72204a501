// An HTTP app that degrades past a concurrency knee, for the adaptive-limits end-to-end test
// and the overload benchmark: an M/M/c server made of timers (not CPU, so it behaves the same
// on a loaded host): c workers with exponential service times behind an unbounded FIFO, each
// service slowed by 1 + thrash·max(0, n − c)/c with n requests in the app, so throughput
// falls under overload. Requests a client gave up on are still worked on. `POST
// /admin/workers?c=N` changes c at run time; `GET /admin/stats` reports what it holds.
//
//   node test/support/knee-app.ts --port 0 [--host 127.0.0.1] [--workers 8] [--mean-ms 20] [--thrash 0.5] [--seed 1]
//
// prints one JSON line {"port": N} once it listens.
import http from 'node:http';
import { Rng } from './mmc.ts';

export interface KneeAppOptions {
  host: string;
  port: number;
  workers: number;
  meanServiceMs: number;
  thrash: number;
  seed: number;
}

export interface KneeApp {
  port: number;
  server: http.Server;
  stats(): { workers: number; inSystem: number; busy: number; completed: number };
  close(): Promise<void>;
}

export function startKneeApp(o: KneeAppOptions): Promise<KneeApp> {
  const rng = new Rng(o.seed);
  let workers = o.workers;
  let inSystem = 0;
  let busy = 0;
  let completed = 0;
  let fifo: (() => void)[] = [];
  let head = 0;
  const startNext = (): void => {
    while (busy < workers && head < fifo.length) fifo[head++]!();
    if (head > 1024 && head * 2 > fifo.length) {
      fifo = fifo.slice(head);
      head = 0;
    }
  };
  const serve = (res: http.ServerResponse): void => {
    busy++;
    const slow = 1 + (o.thrash * Math.max(0, inSystem - workers)) / workers;
    setTimeout(() => {
      busy--;
      inSystem--;
      completed++;
      if (!res.destroyed) res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 }).end('ok\n');
      startNext();
    }, rng.exp(o.meanServiceMs) * slow);
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://app');
    if (url.pathname === '/admin/workers' && req.method === 'POST') {
      const c = Number(url.searchParams.get('c'));
      if (!Number.isInteger(c) || c < 1 || c > 10_000) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('c must be an integer in 1..10000\n');
        return;
      }
      workers = c;
      startNext();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ workers }));
      return;
    }
    if (url.pathname === '/admin/stats') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ workers, inSystem, busy, completed }));
      return;
    }
    req.resume();
    inSystem++;
    if (busy < workers) serve(res);
    else fifo.push(() => serve(res));
  });
  server.keepAliveTimeout = 65_000;
  server.maxRequestsPerSocket = 0;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      const port = (server.address() as { port: number }).port;
      resolve({
        port,
        server,
        stats: () => ({ workers, inSystem, busy, completed }),
        close: () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }),
      });
    });
  });
}

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

if (import.meta.filename === process.argv[1]) {
  const app = await startKneeApp({
    host: flag('host', '127.0.0.1'),
    port: Number(flag('port', '0')),
    workers: Number(flag('workers', '8')),
    meanServiceMs: Number(flag('mean-ms', '20')),
    thrash: Number(flag('thrash', '0.5')),
    seed: Number(flag('seed', '1')),
  });
  process.stdout.write(`${JSON.stringify({ port: app.port })}\n`);
  process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
}
