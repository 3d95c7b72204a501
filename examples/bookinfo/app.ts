// A bookinfo workload: productpage, details, reviews (v1/v2/v3) or ratings, as small HTTP
// apps. Each listens on 127.0.0.1:PORT behind its sidecar and calls other services only
// through its sidecar's egress listener (http_proxy style, absolute-form requests).
//
//   node app.ts --service reviews --version v2 --port 19084 --egress 127.0.2.4:9080
//
// A control endpoint on the app's own port (never routed by the mesh) lets tests make an
// instance fail, POST /control/fail?status=503&rate=1 (rate 0 to heal; every=N fails
// exactly every Nth request instead of at random), or slow,
// POST /control/delay?ms=500 (0 to heal).
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    service: { type: 'string' },
    version: { type: 'string', default: 'v1' },
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    egress: { type: 'string' },
  },
});
const service = opts.service ?? fail('--service is required');
const version = opts.version ?? 'v1';
const port = Number(opts.port ?? fail('--port is required'));
const [egressHost, egressPort] = (opts.egress ?? '127.0.0.1:15001').split(':') as [string, string];
const PROPAGATED = ['end-user', 'x-request-id', 'user-agent'];

let failure = { status: 0, rate: 0, every: 0 };
let served = 0;
let delayMs = 0;
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function fail(msg: string): never {
  process.stderr.write(`app: ${msg}\n`);
  process.exit(2);
}

/** Calls another service through the sidecar, the way an app with http_proxy set does. */
function call(host: string, path: string, incoming: http.IncomingMessage): Promise<{ status: number; body: unknown }> {
  const headers: Record<string, string> = { host: `${host}:9080` };
  for (const h of PROPAGATED) {
    const v = incoming.headers[h];
    if (typeof v === 'string') headers[h] = v;
  }
  return new Promise((resolve) => {
    const req = http.request(
      { host: egressHost, port: Number(egressPort), path: `http://${host}:9080${path}`, headers, agent, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON: keep the text (e.g. a fault-injected abort body)
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ status: 0, body: { error: err.message } }));
    req.end();
  });
}

async function handle(req: http.IncomingMessage): Promise<{ status: number; body: unknown }> {
  const url = new URL(req.url ?? '/', 'http://app');
  switch (service) {
    case 'details':
      return { status: 200, body: { id: 0, author: 'William Shakespeare', year: 1595, type: 'paperback', pages: 200, publisher: 'PublisherA', language: 'English', version } };
    case 'ratings':
      return { status: 200, body: { id: 0, ratings: { Reviewer1: 5, Reviewer2: 4 }, version } };
    case 'reviews': {
      const reviews: Record<string, unknown> = { id: 0, version, podname: `reviews-${version}` };
      if (version !== 'v1') {
        const ratings = await call('ratings', '/ratings/0', req);
        reviews['ratings'] = ratings.status === 200 ? ratings.body : { error: `ratings unavailable (${ratings.status})` };
        reviews['stars'] = version === 'v2' ? 'black' : 'red';
      }
      return { status: 200, body: reviews };
    }
    case 'productpage': {
      if (url.pathname === '/health') return { status: 200, body: { status: 'ok' } };
      const [details, reviews] = await Promise.all([call('details', '/details/0', req), call('reviews', '/reviews/0', req)]);
      const status = details.status === 200 && reviews.status === 200 ? 200 : 503;
      return { status, body: { product: 'The Comedy of Errors', details: details.body, reviews: reviews.body, upstream: { details: details.status, reviews: reviews.status } } };
    }
    default:
      return { status: 404, body: { error: `unknown service ${service}` } };
  }
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://app');
  if (url.pathname === '/control/fail' && req.method === 'POST') {
    failure = {
      status: Number(url.searchParams.get('status') ?? 503),
      rate: Number(url.searchParams.get('rate') ?? 1),
      every: Number(url.searchParams.get('every') ?? 0),
    };
    served = 0;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(failure));
    return;
  }
  if (url.pathname === '/control/delay' && req.method === 'POST') {
    delayMs = Number(url.searchParams.get('ms') ?? 0);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ delayMs }));
    return;
  }
  if (delayMs > 0) {
    setTimeout(() => respond(req, res, url), delayMs);
    return;
  }
  respond(req, res, url);
});

function respond(req: http.IncomingMessage, res: http.ServerResponse, _url: URL): void {
  served++;
  const failNow = failure.every > 0 ? served % failure.every === 1 % failure.every : failure.rate > 0 && Math.random() < failure.rate;
  if (failNow) {
    res.writeHead(failure.status, { 'content-type': 'text/plain' }).end(`${service}-${version} failing on purpose\n`);
    return;
  }
  handle(req).then(
    ({ status, body }) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'x-served-by': `${service}-${version}` }).end(text);
    },
    (err: unknown) => res.writeHead(500).end(String(err)),
  );
}
server.keepAliveTimeout = 5_000;
server.listen(port, opts.host, () => {
  process.stdout.write(JSON.stringify({ msg: 'app listening', service, version, address: `${opts.host}:${port}` }) + '\n');
});
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => server.close(() => process.exit(0)));
