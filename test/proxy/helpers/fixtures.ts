// Builders for Envoy resources as Istio's pilot shapes them, test backends on loopback, and
// an HTTP client that sets exactly the headers given (Host included).
import http from 'node:http';
import net from 'node:net';
import pino from 'pino';
import { CLUSTER_TYPE, ENDPOINT_TYPE, HCM_TYPE, LISTENER_TYPE, ROUTE_TYPE, ROUTER_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { startProxy } from '../../../src/proxy/index.ts';
import type { Proxy, ProxyOptions } from '../../../src/proxy/index.ts';
import { TestAdsServer } from './ads-server.ts';

export const silent = pino({ level: 'silent' });

export { freePort } from '../../helpers/ports.ts';

/**
 * A loopback port where every connect is refused: port 1 (tcpmux), privileged and unused.
 * A port from freePort() would do only until a test running alongside binds it.
 */
export const REFUSED_PORT = 1;

export interface Backend {
  name: string;
  port: number;
  hits: number;
  server: http.Server;
  /** Raw header lines of the last request received. */
  lastHeaders: string[];
  lastUrl: string;
  close(): Promise<void>;
}

/** A backend answering `{name, url, headers}` as JSON, or what `handler` decides. */
export async function startBackend(name: string, handler?: (req: http.IncomingMessage, res: http.ServerResponse, b: Backend) => void): Promise<Backend> {
  const b = { name, port: 0, hits: 0, lastHeaders: [] as string[], lastUrl: '' } as Backend;
  b.server = http.createServer((req, res) => {
    b.hits++;
    b.lastHeaders = req.rawHeaders;
    b.lastUrl = req.url ?? '';
    if (handler) return handler(req, res, b);
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ name, url: req.url, headers: req.rawHeaders });
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name });
      res.end(body);
    });
  });
  await new Promise<void>((r) => b.server.listen(0, '127.0.0.1', () => r()));
  b.port = (b.server.address() as net.AddressInfo).port;
  b.close = () => new Promise<void>((r) => { b.server.closeAllConnections(); b.server.close(() => r()); });
  return b;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** Sends a request with exactly these headers (Host too) to the proxy listener. */
export function send(port: number, path: string, headers: Record<string, string> = {}, opts: { method?: string; body?: string; host?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: opts.host ?? '127.0.0.1', port, path, method: opts.method ?? 'GET', headers, setHost: false, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function edsCluster(name: string, extra: ProtoJson = {}): ProtoJson {
  return {
    name, type: 'EDS', connectTimeout: '1s',
    edsClusterConfig: { edsConfig: { ads: {}, resourceApiVersion: 'V3' }, serviceName: name },
    ...extra,
  };
}

export function assignment(name: string, ports: number[], extra: { priority?: number[]; address?: string; workload?: string } = {}): ProtoJson {
  const byPriority = new Map<number, ProtoJson[]>();
  ports.forEach((port, i) => {
    const p = extra.priority?.[i] ?? 0;
    const lbe: ProtoJson = { endpoint: { address: { socketAddress: { address: extra.address ?? '127.0.0.1', portValue: port } } } };
    if (extra.workload) lbe['metadata'] = { filterMetadata: { istio: { workload: extra.workload } } };
    byPriority.set(p, [...(byPriority.get(p) ?? []), lbe]);
  });
  return { clusterName: name, endpoints: [...byPriority].map(([priority, lbEndpoints]) => ({ priority, lbEndpoints, locality: { region: 'r', zone: `z${priority}` } })) };
}

export function httpListener(name: string, port: number, routeName: string, extra: { direction?: string; accessLogPath?: string; httpFilters?: ProtoJson[]; hcm?: ProtoJson } = {}): ProtoJson {
  const hcm: ProtoJson = {
    '@type': HCM_TYPE, statPrefix: name,
    rds: { configSource: { ads: {}, resourceApiVersion: 'V3' }, routeConfigName: routeName },
    httpFilters: [...(extra.httpFilters ?? []), { name: 'envoy.filters.http.router', typedConfig: { '@type': ROUTER_TYPE } }],
    ...extra.hcm,
  };
  if (extra.accessLogPath) {
    hcm['accessLog'] = [{ name: 'envoy.access_loggers.file', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog', path: extra.accessLogPath } }];
  }
  return {
    name,
    address: { socketAddress: { address: '127.0.0.1', portValue: port } },
    trafficDirection: extra.direction ?? 'OUTBOUND',
    filterChains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typedConfig: hcm }] }],
  };
}

export function routeConfig(name: string, virtualHosts: ProtoJson[]): ProtoJson {
  return { name, virtualHosts };
}

/** An ADS server serving `resources`, and a proxy connected to it; both cleaned up by `after`. */
export async function meshWith(resources: { clusters?: ProtoJson[]; endpoints?: ProtoJson[]; listeners?: ProtoJson[]; routes?: ProtoJson[] }, opts: Partial<ProxyOptions> & { delta?: boolean } = {}): Promise<{ ads: TestAdsServer; proxy: Proxy; close: () => Promise<void> }> {
  const ads = new TestAdsServer({ delta: opts.delta ?? true });
  ads.set(CLUSTER_TYPE, resources.clusters ?? []);
  ads.set(ENDPOINT_TYPE, resources.endpoints ?? []);
  ads.set(LISTENER_TYPE, resources.listeners ?? []);
  ads.set(ROUTE_TYPE, resources.routes ?? []);
  await ads.start();
  const proxy = await startProxy({
    xds: ads.address, id: 'sidecar~127.0.0.1~productpage-v1-abc12.default~default.svc.cluster.local',
    labels: { app: 'productpage', version: 'v1' }, adminAddress: '127.0.0.1:0', logger: silent, drainMs: 1000, ...opts,
  });
  return {
    ads, proxy,
    close: async () => {
      await proxy.drain(200);
      await ads.stop();
    },
  };
}
