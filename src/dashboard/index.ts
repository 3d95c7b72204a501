// The dashboard room: the monitoring API (/api/v1: graph, operations, peers, access logs,
// alerts) and the dashboard page (/dashboard: static HTML, CSS and plain JS, no build step),
// both served on the pilot's HTTP address behind the same tokens. See docs/monitoring.md.
import type http from 'node:http';
import type { Logger } from 'pino';
import type { LogStore } from '../telemetry/index.ts';
import { API_PREFIX, answerApi, type ApiSources } from './api.ts';
import { openGate, tokenCookie, type Access } from './auth.ts';
import { ApiError } from './params.ts';
import { PrometheusAlerts } from './prometheus.ts';
import { DASHBOARD_PATH, StaticPage } from './page.ts';

export { API_PREFIX, apiIndex } from './api.ts';
export { DASHBOARD_PATH } from './page.ts';
export { TOKEN_COOKIE } from './auth.ts';
export type { Access } from './auth.ts';
export type { AlertsAnswer, MeshAlert } from './prometheus.ts';

export interface DashboardOptions {
  /** Tokens from a file (`--api-tokens`, read now: TokenFileError when missing or invalid), or open to all (`--dashboard-insecure`). */
  access: Access;
  /** The access-log store; undefined while it opens, or when the pilot keeps none. */
  logStore: () => LogStore | undefined;
  /** What a 503 says when logStore() is undefined. */
  logStoreMissing?: () => string;
  /** Prometheus's base URL (`--prometheus`): /api/v1/alerts reads its alerts. */
  prometheusUrl?: string | undefined;
  logger: Logger;
  /** Lazy scope's report (`/api/v1/dependencies`); absent: the endpoint answers 404. */
  dependencies?: () => unknown;
  /** How often the token file is checked for changes a file watch misses (default 2 s). */
  tokensPollMs?: number;
  now?: () => number;
}

export interface Dashboard {
  /** Serves a request under /api/v1 or /dashboard; never throws. */
  handle(req: http.IncomingMessage, res: http.ServerResponse): void;
  /**
   * The same check for the pilot's other private pages (/debug/*): undefined when the request may
   * go on, else the status, body and headers to answer with.
   */
  refusal(req: http.IncomingMessage): { status: number; error: string; headers: Record<string, string> } | undefined;
  close(): void;
}

/** Whether the dashboard room serves this path. */
export function isDashboardPath(pathname: string): boolean {
  return pathname === API_PREFIX || pathname.startsWith(`${API_PREFIX}/`) || pathname === DASHBOARD_PATH || pathname.startsWith(`${DASHBOARD_PATH}/`);
}

const NO_STORE = { 'cache-control': 'no-store' };

export function createDashboard(options: DashboardOptions): Dashboard {
  const logger = options.logger.child({ component: 'dashboard' });
  const gate = openGate(options.access, logger, options.tokensPollMs);
  const page = new StaticPage({ insecure: gate.insecure, prometheus: options.prometheusUrl !== undefined });
  const sources: ApiSources = {
    logStore: options.logStore,
    logStoreMissing: options.logStoreMissing ?? (() => 'no access-log store: the pilot\'s access-log sink is off or still opening'),
    prometheus: options.prometheusUrl === undefined ? undefined : new PrometheusAlerts(options.prometheusUrl),
    now: options.now ?? Date.now,
    dependencies: options.dependencies,
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const started = performance.now();
    const url = new URL(req.url ?? '/', 'http://pilot');
    const method = req.method ?? 'GET';
    const head = method === 'HEAD';
    const isApi = url.pathname === API_PREFIX || url.pathname.startsWith(`${API_PREFIX}/`);
    const log = (status: number): void => {
      const line = { method, path: url.pathname, status, ms: Math.round(performance.now() - started) };
      if (status >= 500) logger.error(line, 'monitoring request failed');
      else if (status === 401 || status === 403) logger.warn({ ...line, remote: req.socket.remoteAddress }, 'monitoring request refused');
      else logger.debug(line, 'monitoring request');
    };
    const json = (status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void => {
      const text = `${JSON.stringify(body)}\n`;
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...NO_STORE, ...headers });
      res.end(head ? undefined : text);
      log(status);
    };
    const fail = (err: unknown): void => {
      const e = err instanceof ApiError ? err : new ApiError(500, err instanceof Error ? err.message : String(err));
      if (res.headersSent) {
        res.destroy();
        log(e.status);
        return;
      }
      if (isApi || e.status >= 500) {
        json(e.status, e.body(), e.headers);
        return;
      }
      const html = page.errorPage(e.status, e.message);
      res.writeHead(e.status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html), ...NO_STORE, ...page.securityHeaders(), ...e.headers });
      res.end(head ? undefined : html);
      log(e.status);
    };

    const serve = async (): Promise<void> => {
      req.resume();
      if (method !== 'GET' && !head) throw new ApiError(405, `${method} not allowed on ${url.pathname}: only GET`, { headers: { allow: 'GET, HEAD' } });
      // `/dashboard?token=T`: the token is checked, kept in the page's cookie, and dropped from the address bar.
      const offered = url.pathname === DASHBOARD_PATH ? url.searchParams.get('token') : null;
      if (offered !== null) {
        if (!gate.accepts(offered)) throw new ApiError(401, 'this token is not in the pilot\'s --api-tokens file');
        res.writeHead(303, { location: DASHBOARD_PATH, ...NO_STORE, ...(gate.insecure ? {} : { 'set-cookie': tokenCookie(offered) }), 'referrer-policy': 'no-referrer' });
        res.end();
        log(303);
        return;
      }
      gate.check(req);
      if (isApi) {
        json(200, await answerApi(url.pathname.slice(API_PREFIX.length), url.searchParams, sources));
        return;
      }
      const file = page.file(url.pathname);
      if (file === undefined) throw new ApiError(404, `no such page ${url.pathname}`);
      res.writeHead(200, { 'content-type': file.type, 'content-length': file.body.length, ...NO_STORE, ...page.securityHeaders() });
      res.end(head ? undefined : file.body);
      log(200);
    };
    serve().catch(fail);
  };

  const refusal = (req: http.IncomingMessage): ReturnType<Dashboard['refusal']> => {
    try {
      gate.check(req);
      return undefined;
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      return { status: err.status, error: err.message, headers: err.headers };
    }
  };
  return { handle, refusal, close: () => gate.close() };
}
