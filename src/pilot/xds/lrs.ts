// Envoy's LoadReportingService (envoy.service.load_stats.v3) on the pilot's xDS port: sidecars,
// real Envoys and proxyless gRPC clients stream their per-cluster load here. The first
// request names the node; the pilot answers once with `send_all_clusters` and the interval it
// wants (1 s), and each later request carries the ClusterStats of that interval, which are
// handed, parsed, to whoever listens (the adaptive-limits controller).
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { ServerDuplexStream, ServiceDefinition } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { decodeMessage, encodeMessage, parseDuration } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import { ConnectionRefusedError, errorMessage } from './ads.ts';

const REQUEST_TYPE = 'envoy.service.load_stats.v3.LoadStatsRequest';
const RESPONSE_TYPE = 'envoy.service.load_stats.v3.LoadStatsResponse';

export const LRS_SERVICE: ServiceDefinition = {
  StreamLoadStats: {
    path: '/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats',
    requestStream: true,
    responseStream: true,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => decodeMessage(REQUEST_TYPE, b),
    responseSerialize: (m: ProtoJson) => Buffer.from(encodeMessage(RESPONSE_TYPE, m)),
    responseDeserialize: (b: Buffer) => b,
  },
};

/** One named load metric over the interval: samples and their sum (Envoy's EndpointLoadMetricStats). */
export interface LoadMetric {
  count: number;
  total: number;
}

/** One cluster's load over one reporting interval, from one proxy. */
export interface ClusterLoad {
  cluster: string;
  successful: number;
  errors: number;
  issued: number;
  inProgress: number;
  dropped: number;
  /** The interval the proxy says the report covers (0 when it did not say). */
  intervalMs: number;
  /** `load_metric_stats` of every locality, summed by name. */
  metrics: ReadonlyMap<string, LoadMetric>;
}

export interface LoadReport {
  proxy: Proxy;
  /** When the pilot received it (ms since epoch). */
  receivedAt: number;
  clusters: ClusterLoad[];
}

export interface LoadReportingOptions {
  proxyFromNode(node: ProtoJson): Proxy;
  /** Refuses a stream that may not speak for its node (throws ConnectionRefusedError); the ADS server's rule. */
  authorize?: (call: ServerDuplexStream<unknown, unknown>, proxy: Proxy) => void;
  logger: Logger;
  /** The interval the pilot asks for (default 1000 ms). */
  intervalMs?: number;
  /** Streams accepted at once; more are refused with RESOURCE_EXHAUSTED (default 20,000). */
  maxStreams?: number;
  /** Cluster stats read from one request; the rest are dropped, and said so once per stream (default 1,000). */
  maxClustersPerReport?: number;
  now?: () => number;
}

type Listener = (report: LoadReport) => void;

const num = (v: unknown): number => {
  const n = typeof v === 'string' ? Number(v) : typeof v === 'number' ? v : 0;
  return Number.isFinite(n) ? n : 0;
};

function durationMs(v: unknown): number {
  if (v === undefined || v === null) return 0;
  try {
    const d = parseDuration(v as never, 'load_report_interval');
    return num(d['seconds']) * 1000 + num(d['nanos']) / 1e6;
  } catch {
    return 0;
  }
}

/** Parses one ClusterStats (proto3 JSON form) into a ClusterLoad; undefined without a name. */
export function clusterLoad(stats: ProtoJson): ClusterLoad | undefined {
  const cluster = stats['clusterName'];
  if (typeof cluster !== 'string' || cluster === '') return undefined;
  let successful = 0;
  let errors = 0;
  let issued = 0;
  let inProgress = 0;
  const metrics = new Map<string, LoadMetric>();
  for (const l of (stats['upstreamLocalityStats'] as ProtoJson[] | undefined) ?? []) {
    successful += num(l['totalSuccessfulRequests']);
    errors += num(l['totalErrorRequests']);
    issued += num(l['totalIssuedRequests']);
    inProgress += num(l['totalRequestsInProgress']);
    for (const m of (l['loadMetricStats'] as ProtoJson[] | undefined) ?? []) {
      const name = m['metricName'];
      if (typeof name !== 'string' || name === '') continue;
      const prev = metrics.get(name) ?? { count: 0, total: 0 };
      metrics.set(name, { count: prev.count + num(m['numRequestsFinishedWithMetric']), total: prev.total + num(m['totalMetricValue']) });
    }
  }
  return { cluster, successful, errors, issued, inProgress, dropped: num(stats['totalDroppedRequests']), intervalMs: durationMs(stats['loadReportInterval']), metrics };
}

/** The LRS server: one stream per proxy, reports fanned out to the listeners. */
export class LoadReportingServer {
  private readonly options: LoadReportingOptions;
  private readonly listeners = new Set<Listener>();
  private readonly now: () => number;
  /** Open streams, by proxy id (a proxy may hold several). */
  readonly streams = new Map<ServerDuplexStream<ProtoJson, ProtoJson>, Proxy | undefined>();
  reports = 0;

  constructor(options: LoadReportingOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
  }

  /** Calls `listener` with every report; returns the unsubscribe. */
  onReport(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  handlers(): { StreamLoadStats: (call: ServerDuplexStream<ProtoJson, ProtoJson>) => void } {
    return { StreamLoadStats: (call) => this.handle(call) };
  }

  private handle(call: ServerDuplexStream<ProtoJson, ProtoJson>): void {
    const log = this.options.logger;
    if (this.streams.size >= (this.options.maxStreams ?? 20_000)) {
      call.emit('error', { code: GrpcStatus.RESOURCE_EXHAUSTED, details: `load reporting stream limit ${this.options.maxStreams ?? 20_000} reached` });
      return;
    }
    this.streams.set(call, undefined);
    let proxy: Proxy | undefined;
    let failed = false;
    let truncatedSaid = false;
    const max = this.options.maxClustersPerReport ?? 1000;
    const fail = (code: GrpcStatus, details: string): void => {
      if (failed) return;
      failed = true;
      this.streams.delete(call);
      call.emit('error', { code, details });
    };
    call.on('data', (req: ProtoJson) => {
      if (failed) return;
      if (proxy === undefined) {
        const node = req['node'] as ProtoJson | undefined | null;
        if (node === undefined || node === null) {
          fail(GrpcStatus.INVALID_ARGUMENT, 'the first LoadStatsRequest on a stream must carry the node');
          return;
        }
        try {
          proxy = this.options.proxyFromNode(node);
          this.options.authorize?.(call as ServerDuplexStream<unknown, unknown>, proxy);
        } catch (err) {
          log.warn({ peer: call.getPeer(), node: node['id'], err: errorMessage(err) }, 'load reporting stream refused');
          fail(err instanceof ConnectionRefusedError ? err.code : GrpcStatus.INVALID_ARGUMENT, `invalid node ${JSON.stringify(node['id'] ?? '')}: ${errorMessage(err)}`);
          return;
        }
        this.streams.set(call, proxy);
        const ms = this.options.intervalMs ?? 1000;
        call.write({ sendAllClusters: true, loadReportingInterval: `${ms / 1000}s` });
        log.debug({ proxy: proxy.id }, 'load reporting stream opened');
      }
      const stats = (req['clusterStats'] as ProtoJson[] | undefined) ?? [];
      if (stats.length === 0) return;
      if (stats.length > max && !truncatedSaid) {
        truncatedSaid = true;
        log.warn({ proxy: proxy.id, clusters: stats.length, read: max }, 'load report has more clusters than the pilot reads; the rest are dropped');
      }
      const clusters: ClusterLoad[] = [];
      for (const s of stats.slice(0, max)) {
        const c = clusterLoad(s);
        if (c !== undefined) clusters.push(c);
      }
      this.reports++;
      const report: LoadReport = { proxy, receivedAt: this.now(), clusters };
      for (const l of this.listeners) {
        try {
          l(report);
        } catch (err) {
          log.error({ proxy: proxy.id, err: errorMessage(err) }, 'a load report listener threw');
        }
      }
    });
    const close = (): void => {
      this.streams.delete(call);
    };
    call.on('end', () => {
      close();
      if (!failed) call.end();
    });
    call.on('cancelled', close);
    call.on('close', close);
    call.on('error', close);
  }

  /** Ends every stream (the pilot is closing). */
  close(): void {
    for (const call of this.streams.keys()) call.end();
    this.streams.clear();
  }
}
