// The pilot's monitoring port: readiness, Prometheus metrics, and JSON debug pages
// (sync status per proxy, the last push, the config being served).
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { DiscoveryServer } from './xds/index.ts';
import { proxyStatus } from './xds/index.ts';
import type { PilotMetrics } from './metrics.ts';
import type { Resource } from '../api/resource.ts';
import { redactSecrets } from '../api/secret.ts';
import type { ConfigStoreStatus } from '../config/index.ts';
import type { LeaderStatus } from './leader/index.ts';
import type { LogStore } from '../telemetry/types.ts';
import { isDashboardPath } from '../dashboard/index.ts';

// node:http without an ESM import: the ESM facade of node:http reads every export, which
// loads Node's bundled fetch (undici), 14 MB of RSS and 3 MB of heap for nothing.
const { createServer } = process.getBuiltinModule('node:http');

export interface DebugSources {
  server: DiscoveryServer;
  metrics: PilotMetrics;
  logger: Logger;
  /** The config being served, what the store refused, and whether it follows its source. */
  config(): { backend: string; resources: readonly Resource[]; errors: readonly unknown[]; status?: ConfigStoreStatus | undefined };
  queue(): { queued: number; running: number };
  /** The registration API (`--registration-tokens`); absent: it is off and answers 404. */
  registration?: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  /** The monitoring API (/api/v1) and /dashboard (`--api-tokens` or `--dashboard-insecure`); absent: off, 404. */
  dashboard?: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  /**
   * Who may read /debug/* (the config, proxies, push state): the monitoring API's tokens when the
   * pilot has them (`--api-tokens`, the CLI's default on a closed control plane); absent: anyone.
   */
  debugRefusal?: ((req: http.IncomingMessage) => { status: number; error: string; headers: Record<string, string> } | undefined) | undefined;
  /** Leadership among the pilots on the same store; undefined until the store is open. */
  leader?(): LeaderStatus | undefined;
  /** The adaptive limits: each rule's setpoint, measurement, budget and per-instance limits. */
  limits?(): unknown;
  /** Lazy scope: each lazy workload's learned dependencies, their source and its Sidecar. */
  lazyScope?(): unknown;
  /** The access-log store the ALS sink writes (`--log-store`), for the monitoring API; absent: none. */
  logStore?: LogStore | undefined;
}

const REGISTRATION_PREFIX = '/apis/registration/v1';

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function pushStatus(src: DebugSources): unknown {
  const push = src.server.pushContext;
  return {
    ready: src.server.ready,
    version: push?.version ?? null,
    builtAt: push === undefined ? null : new Date(push.builtAt).toISOString(),
    stats: push?.stats ?? null,
    lastPush: src.server.lastPush === undefined ? null : { ...src.server.lastPush, at: new Date(src.server.lastPush.at).toISOString() },
    queue: src.queue(),
    connections: src.server.connections.size,
    encodedResources: src.server.cache.encodings,
    proxies: [...src.server.connections.values()].map((c) => ({ proxy: c.proxy.id, connection: c.id, lastConvergenceMs: c.lastConvergenceMs ?? null })),
  };
}

export function createMonitoringServer(src: DebugSources): http.Server {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://pilot');
    if (url.pathname === REGISTRATION_PREFIX || url.pathname.startsWith(`${REGISTRATION_PREFIX}/`)) {
      if (src.registration !== undefined) src.registration(req, res);
      else sendJson(res, 404, { error: 'the registration API is off: start the pilot with --registration-tokens FILE' });
      return;
    }
    if (isDashboardPath(url.pathname)) {
      if (src.dashboard !== undefined) src.dashboard(req, res);
      else sendJson(res, 404, { error: 'the monitoring API and dashboard are off: start the pilot with --api-tokens FILE (or --dashboard-insecure on a trusted host)' });
      return;
    }
    if (url.pathname.startsWith('/debug/') && src.debugRefusal !== undefined) {
      const refused = src.debugRefusal(req);
      if (refused !== undefined) {
        req.resume();
        res.writeHead(refused.status, { 'content-type': 'application/json', ...refused.headers });
        res.end(JSON.stringify({ error: refused.error }) + '\n');
        return;
      }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: `method ${req.method ?? ''} not allowed on ${url.pathname}: only GET` });
      return;
    }
    const route = async (): Promise<void> => {
      switch (url.pathname) {
        case '/ready':
          if (src.server.ready) {
            res.writeHead(200, { 'content-type': 'text/plain' }).end('ready\n');
          } else {
            res.writeHead(503, { 'content-type': 'text/plain' }).end('not ready: first config snapshot not built yet\n');
          }
          return;
        case '/metrics': {
          const body = await src.metrics.registry.metrics();
          res.writeHead(200, { 'content-type': src.metrics.registry.contentType }).end(body);
          return;
        }
        case '/debug/syncz': {
          const proxy = url.searchParams.get('proxy');
          const all = [...src.server.connections.values()].filter((c) => proxy === null || c.proxy.id === proxy).map(proxyStatus);
          sendJson(res, 200, all);
          return;
        }
        case '/debug/push_status':
          sendJson(res, 200, pushStatus(src));
          return;
        case '/debug/configz': {
          const config = src.config();
          const kind = url.searchParams.get('kind');
          sendJson(res, 200, {
            backend: config.backend,
            version: src.server.pushContext?.version ?? null,
            // Secrets (gateway credentials) are listed with every value redacted.
            resources: redactSecrets(kind === null ? config.resources : config.resources.filter((r) => r.kind === kind)),
            errors: config.errors,
            store: config.status ?? null,
          });
          return;
        }
        case '/debug/limits': {
          const limits = src.limits?.();
          if (limits === undefined) sendJson(res, 503, { error: 'adaptive limits not started yet: the config store is still opening' });
          else sendJson(res, 200, limits);
          return;
        }
        case '/debug/lazyscope': {
          const report = src.lazyScope?.();
          if (report === undefined) sendJson(res, 503, { error: 'lazy scope not started yet: the config store is still opening' });
          else sendJson(res, 200, report);
          return;
        }
        case '/debug/leader': {
          const leader = src.leader?.();
          if (leader === undefined) sendJson(res, 503, { error: 'leader election not started yet: the config store is still opening' });
          else sendJson(res, 200, leader);
          return;
        }
        default:
          sendJson(res, 404, { error: `no such endpoint ${url.pathname}`, endpoints: ['/ready', '/metrics', '/debug/syncz', '/debug/push_status', '/debug/configz', '/debug/leader', '/debug/limits', '/debug/lazyscope'] });
      }
    };
    route().catch((err: unknown) => {
      src.logger.error({ path: url.pathname, err: err instanceof Error ? err.message : String(err) }, 'monitoring request failed');
      if (!res.headersSent) sendJson(res, 500, { error: err instanceof Error ? err.message : String(err) });
      else res.destroy();
    });
  });
  // Longer than scrapers' and clients' idle timeouts, so they close first and never reuse a
  // connection the pilot is closing.
  server.keepAliveTimeout = 65_000;
  return server;
}

export function listen(server: http.Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
