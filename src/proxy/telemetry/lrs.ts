// The proxy's LRS client (Envoy's envoy.service.load_stats.v3, what real Envoys and gRPC
// clients speak): one stream to the xDS server in use, the node in the first request, then a
// report of each admission gate's inbound cluster at the interval the server asks for (its
// `clusters`, or all with `send_all_clusters`). A server without LRS (UNIMPLEMENTED) is asked
// again only after a long pause; a lost stream is reopened with a capped backoff.
import * as grpc from '@grpc/grpc-js';
import type pino from 'pino';
import { decodeMessage, encodeMessage } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import type { GateReport } from '../filters/admission/index.ts';

const METHOD = '/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats';
const REQUEST_TYPE = 'envoy.service.load_stats.v3.LoadStatsRequest';
const RESPONSE_TYPE = 'envoy.service.load_stats.v3.LoadStatsResponse';

/** The interval asked for is kept within these bounds (a mistaken server must not make the proxy spin). */
const MIN_INTERVAL_MS = 100;
const MAX_INTERVAL_MS = 3_600_000;

export interface LoadReportingClientOptions {
  /** The server to report to now (the xDS server in use), `host:port`. */
  server: () => string;
  node: ProtoJson;
  /** One report per gate; each call starts a new interval. */
  reports: () => GateReport[];
  logger: pino.Logger;
  credentials?: () => { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions };
  /** Backoff after a lost stream (default 1 s, doubling to 30 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Pause before asking a server without LRS again (default 60 s). */
  unimplementedRetryMs?: number;
}

type Stream = grpc.ClientDuplexStream<ProtoJson, ProtoJson>;

export class LoadReportingClient {
  private readonly o: LoadReportingClientOptions;
  private client: grpc.Client | undefined;
  private clientFor = '';
  private stream: Stream | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private backoffMs: number;
  private closed = false;
  private clusters: ReadonlySet<string> | 'all' = new Set();
  /** The interval the server asked for (0 until it answered). */
  intervalMs = 0;
  /** Reports sent on the current and past streams. */
  sent = 0;
  /** True while the server has answered the current stream. */
  active = false;
  /** True when the last server asked has no load reporting service. */
  unimplemented = false;

  constructor(o: LoadReportingClientOptions) {
    this.o = o;
    this.backoffMs = o.initialBackoffMs ?? 1000;
  }

  start(): void {
    this.open();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.reconnectTimer);
    this.stream?.cancel();
    this.stream = undefined;
    this.client?.close();
    this.client = undefined;
  }

  private channel(server: string): grpc.Client {
    if (this.client !== undefined && this.clientFor === server) return this.client;
    this.client?.close();
    const secure = this.o.credentials?.();
    this.client = new grpc.Client(server, secure?.credentials ?? grpc.credentials.createInsecure(), {
      ...secure?.options,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
    });
    this.clientFor = server;
    return this.client;
  }

  private open(): void {
    if (this.closed) return;
    const server = this.o.server();
    const stream = this.channel(server).makeBidiStreamRequest<ProtoJson, ProtoJson>(
      METHOD,
      (m) => Buffer.from(encodeMessage(REQUEST_TYPE, m)),
      (b) => decodeMessage(RESPONSE_TYPE, b),
    );
    this.stream = stream;
    this.active = false;
    stream.on('data', (res: ProtoJson) => {
      if (this.stream !== stream) return;
      this.onResponse(res, server);
    });
    stream.on('error', (err: grpc.ServiceError) => {
      if (this.stream !== stream) return;
      if (err.code === grpc.status.UNIMPLEMENTED) {
        this.unimplemented = true;
        this.o.logger.info({ server }, 'the xDS server has no load reporting service; load is not reported');
        this.retry(this.o.unimplementedRetryMs ?? 60_000);
        return;
      }
      this.o.logger.warn({ server, err: err.details || err.message }, 'load reporting stream lost');
      this.lost();
    });
    stream.on('end', () => {
      if (this.stream !== stream) return;
      this.lost();
    });
    stream.write({ node: this.o.node, clusterStats: [] });
  }

  private onResponse(res: ProtoJson, server: string): void {
    const all = res['sendAllClusters'] === true;
    this.clusters = all ? 'all' : new Set(((res['clusters'] as string[] | undefined) ?? []));
    const ms = durationMs(res['loadReportingInterval']);
    this.intervalMs = Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, ms > 0 ? ms : 1000));
    this.unimplemented = false;
    if (!this.active) this.o.logger.info({ server, intervalMs: this.intervalMs, clusters: all ? 'all' : [...this.clusters] }, 'reporting load');
    this.active = true;
    this.backoffMs = this.o.initialBackoffMs ?? 1000;
    // As Envoy: a response starts a new interval.
    this.o.reports();
    clearTimeout(this.timer);
    this.schedule();
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.report();
      if (this.stream !== undefined && this.active) this.schedule();
    }, this.intervalMs);
    this.timer.unref();
  }

  private report(): void {
    const stream = this.stream;
    if (stream === undefined) return;
    const wanted = this.clusters;
    const clusterStats = this.o.reports().filter((r) => wanted === 'all' || wanted.has(r.cluster)).map(clusterStatsOf);
    stream.write({ clusterStats });
    this.sent++;
  }

  private lost(): void {
    const delay = Math.round(this.backoffMs * (0.5 + Math.random() / 2));
    this.backoffMs = Math.min(this.backoffMs * 2, this.o.maxBackoffMs ?? 30_000);
    this.retry(delay);
  }

  private retry(delayMs: number): void {
    clearTimeout(this.timer);
    this.stream = undefined;
    this.active = false;
    if (this.closed) return;
    // the next attempt dials afresh (and follows the xDS client to another server)
    this.client?.close();
    this.client = undefined;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.open(), delayMs);
    this.reconnectTimer.unref();
  }
}

/** One gate's interval as Envoy's ClusterStats, with the named load metrics of the contract. */
export function clusterStatsOf(r: GateReport): ProtoJson {
  const metric = (name: string, count: number, total: number): ProtoJson => ({ metricName: name, numRequestsFinishedWithMetric: count, totalMetricValue: total });
  const n = r.latency.samples;
  const metrics: ProtoJson[] = [
    metric('latency_ms_p50', n, r.latency.p50 * n),
    metric('latency_ms_p90', n, r.latency.p90 * n),
    metric('latency_ms_p99', n, r.latency.p99 * n),
    // gauges and counts: one "sample" carrying the value
    metric('concurrency_max', 1, r.concurrencyMax),
    metric('limit_in_effect', 1, r.limit),
    metric('shed_shadow', 1, r.shadowShed),
    ...r.shedByTier.map((v, i) => metric(`shed_tier_${i}`, 1, v)),
  ];
  return {
    clusterName: r.cluster,
    upstreamLocalityStats: [{
      locality: {},
      totalSuccessfulRequests: r.successful,
      totalRequestsInProgress: r.inProgress,
      totalErrorRequests: r.errors,
      totalIssuedRequests: r.issued,
      loadMetricStats: metrics,
    }],
    totalDroppedRequests: r.dropped,
    loadReportInterval: `${(r.intervalMs / 1000).toFixed(3)}s`,
  };
}

function durationMs(v: unknown): number {
  if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)s$/.exec(v);
    return m ? Number(m[1]) * 1000 : 0;
  }
  if (v !== null && typeof v === 'object') {
    const d = v as { seconds?: number | string; nanos?: number };
    return Number(d.seconds ?? 0) * 1000 + Number(d.nanos ?? 0) / 1e6;
  }
  return 0;
}
