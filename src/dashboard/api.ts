// The monitoring API's routes under /api/v1: the call graph, per-operation statistics, who
// called a path, the access logs, and the alerts Prometheus holds. Each route checks its
// parameters (400 naming the one at fault), asks the LogStore one bounded query and answers JSON.
import type { LogStore } from '../telemetry/index.ts';
import { ApiError, CODE_CLASSES, ORIGINS, Params, REPORTERS, badParameter } from './params.ts';
import type { PrometheusAlerts } from './prometheus.ts';

export const API_PREFIX = '/api/v1';

/** How far back each route looks when the request does not say. */
export const DEFAULT_GRAPH_WINDOW_MS = 5 * 60_000;
export const DEFAULT_OPERATIONS_WINDOW_MS = 15 * 60_000;
export const DEFAULT_RANGE_MS = 3_600_000;

export interface ApiSources {
  /** The access-log store; undefined while it is opening or when the pilot runs without one. */
  logStore(): LogStore | undefined;
  /** Why there is no store, said in a 503 when logStore() is undefined. */
  logStoreMissing(): string;
  prometheus: PrometheusAlerts | undefined;
  now(): number;
  /** Lazy scope: each lazy workload's learned dependencies and their source (the pilot's store). */
  dependencies?: (() => unknown) | undefined;
}

type Route = (params: URLSearchParams, src: ApiSources) => Promise<unknown>;

function store(src: ApiSources): LogStore {
  const s = src.logStore();
  if (s === undefined) throw new ApiError(503, src.logStoreMissing());
  return s;
}

const ROUTES: Readonly<Record<string, { describe: string; run: Route }>> = {
  '/graph': {
    describe: 'the call graph: nodes (workloads, services, unknown callers) and edges with rps, p50/p99 and 4xx/5xx by origin; window=5m',
    run: async (search, src) => {
      const p = new Params(search, ['window']);
      const w = p.window(src.now(), DEFAULT_GRAPH_WINDOW_MS);
      return store(src).graph(w);
    },
  },
  '/operations': {
    describe: 'per-operation statistics: requests, 4xx/5xx by origin, rps, p50/p99; service, window=15m, sort=requests|errors|p99|name, limit',
    run: async (search, src) => {
      const p = new Params(search, ['service', 'window', 'sort', 'limit']);
      const w = p.window(src.now(), DEFAULT_OPERATIONS_WINDOW_MS);
      const sort = p.oneOf('sort', ['requests', 'errors', 'p99', 'name'] as const);
      const limit = p.integer('limit', 1, 1000);
      const service = p.string('service');
      const operations = await store(src).operations({ ...w, ...(service !== undefined ? { service } : {}), ...(sort !== undefined ? { sort } : {}), ...(limit !== undefined ? { limit } : {}) });
      return { window: w, operations };
    },
  },
  '/access/peers': {
    describe: 'the distinct callers and destinations of a path or an operation, with counts, first and last seen; path | operation, service, from, to | since, limit',
    run: async (search, src) => {
      const p = new Params(search, ['path', 'operation', 'service', 'from', 'to', 'since', 'limit']);
      const path = p.string('path');
      const operation = p.string('operation');
      if ((path === undefined) === (operation === undefined)) throw badParameter(path === undefined ? 'path' : 'operation', 'give exactly one of path and operation');
      const w = p.range(src.now(), DEFAULT_RANGE_MS);
      const service = p.string('service');
      const limit = p.integer('limit', 1, 1000);
      const peers = await store(src).peers({
        ...w, ...(path !== undefined ? { path } : { operation: operation! }), ...(service !== undefined ? { service } : {}), ...(limit !== undefined ? { limit } : {}),
      });
      return { window: w, ...(path !== undefined ? { path } : { operation }), peers };
    },
  },
  '/access/logs': {
    describe: 'access-log entries, newest first, a page at a time; service, operation, path, sourceIp, codeClass=2xx..5xx, origin=app|proxy|client, reporter, from, to | since, limit, cursor',
    run: async (search, src) => {
      const p = new Params(search, ['service', 'operation', 'path', 'sourceIp', 'codeClass', 'origin', 'reporter', 'from', 'to', 'since', 'limit', 'cursor']);
      const w = p.range(src.now(), DEFAULT_RANGE_MS);
      const q = {
        ...w,
        service: p.string('service'),
        operation: p.string('operation'),
        path: p.string('path'),
        sourceIp: p.string('sourceIp'),
        codeClass: p.oneOf('codeClass', CODE_CLASSES),
        origin: p.oneOf('origin', ORIGINS),
        reporter: p.oneOf('reporter', REPORTERS),
        limit: p.integer('limit', 1, 1000),
        cursor: p.string('cursor'),
      };
      const page = await store(src).logs(Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined)) as typeof w);
      return { window: w, entries: page.entries, ...(page.next !== undefined ? { next: page.next } : {}) };
    },
  },
  '/dependencies': {
    describe: 'lazy scope: each lazy workload\'s learned dependencies (host, where each was seen first and last, ACTIVE or EXPIRING, first and last use) and its Sidecar',
    run: async (search, src) => {
      new Params(search, []);
      // a pilot without lazy scope has no lazy workload (a 200, so the page logs no failed request)
      if (src.dependencies === undefined) return { workloads: [] };
      return src.dependencies();
    },
  },
  '/alerts': {
    describe: 'the alerts Prometheus holds (firing and pending), when the pilot runs with --prometheus URL',
    run: async (search, src) => {
      new Params(search, []);
      if (src.prometheus === undefined) throw new ApiError(404, 'no Prometheus to read alerts from: start the pilot with --prometheus URL (e.g. http://127.0.0.1:9090)');
      return src.prometheus.alerts();
    },
  },
};

/** The index of the API (GET /api/v1). */
export function apiIndex(): Record<string, string> {
  return Object.fromEntries(Object.entries(ROUTES).map(([p, r]) => [`${API_PREFIX}${p}`, r.describe]));
}

/** Answers one GET under /api/v1 (the path without the prefix); throws ApiError. */
export async function answerApi(rel: string, search: URLSearchParams, src: ApiSources): Promise<unknown> {
  if (rel === '' || rel === '/') return { endpoints: apiIndex() };
  const route = ROUTES[rel];
  if (route === undefined) throw new ApiError(404, `no such endpoint ${API_PREFIX}${rel}; the endpoints are ${Object.keys(ROUTES).map((p) => API_PREFIX + p).join(', ')}`);
  try {
    return await route.run(search, src);
  } catch (err) {
    // The stores check queries too (LogQueryError names the field): that is the caller's mistake.
    if (err instanceof Error && err.name === 'LogQueryError') {
      const field = /^(\w+):/.exec(err.message)?.[1];
      throw new ApiError(400, err.message, { parameter: field });
    }
    throw err;
  }
}
