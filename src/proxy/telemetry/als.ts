// Access logs over Envoy's ALS (`envoy.access_loggers.http_grpc`): each request becomes an
// `HTTPAccessLogEntry`, encoded at once into a bounded buffer (entries and bytes), and batches
// stream on `AccessLogService/StreamAccessLogs` to the cluster the config names (or `xds-grpc`,
// the control plane). Logging never blocks or slows a request: a full buffer, a sink that is
// down or a stream that pushes back drops entries, counted in `sextant_accesslog_dropped_total`;
// the stream reconnects with a capped, jittered backoff.
import * as grpc from '@grpc/grpc-js';
import type pino from 'pino';
import type { ProtoJson } from '../../envoy/index.ts';
import { encodeMessage } from '../../envoy/index.ts';
import { STREAM_ACCESS_LOGS_METHOD, XDS_GRPC_CLUSTER } from '../../envoy/access-log.ts';
import { encodeHttpEntry } from './als-encode.ts';
import { ConfigError, durationMs } from '../config/fields.ts';
import type { AccessLogRecord } from './access-log.ts';

/** Where a gRPC access logger sends: a cluster of the config (`envoy_grpc`) or a target URI (`google_grpc`). */
export type AlsTarget = { cluster: string } | { uri: string };

export interface GrpcAccessLogSpec {
  logName: string;
  target: AlsTarget;
  /** Entries buffered past this many bytes are flushed at once (Envoy's buffer_size_bytes, default 16 KiB). */
  bufferSizeBytes: number;
  /** The longest an entry waits before its batch is sent (Envoy's buffer_flush_interval, default 1 s). */
  flushIntervalMs: number;
  /** additional_request_headers_to_log, lower-cased. */
  requestHeaders: readonly string[];
  /** Peer objects to log (filter_state_objects_to_log): `downstream_peer`, `upstream_peer` (with or without `wasm.`). */
  downstreamPeer: boolean;
  upstreamPeer: boolean;
  customTags: readonly { tag: string; value: (r: AccessLogRecord) => string | undefined }[];
  /** The sender this logger writes to: one stream per target and log name. */
  key: string;
}

const V3 = 'V3';

/** Compiles an HttpGrpcAccessLogConfig; what this proxy cannot honour is a ConfigError naming the field. */
export function compileGrpcAccessLog(tc: ProtoJson, at: string): GrpcAccessLogSpec {
  const common = tc['commonConfig'] as ProtoJson | undefined;
  if (common === undefined) throw new ConfigError(`${at}.commonConfig: required`);
  const c = `${at}.commonConfig`;
  const logName = String(common['logName'] ?? '');
  if (logName === '') throw new ConfigError(`${c}.logName: required`);
  const svc = common['grpcService'] as ProtoJson | undefined;
  if (svc === undefined) throw new ConfigError(`${c}.grpcService: required`);
  let target: AlsTarget;
  const envoyGrpc = svc['envoyGrpc'] as ProtoJson | undefined;
  const googleGrpc = svc['googleGrpc'] as ProtoJson | undefined;
  if (envoyGrpc !== undefined) {
    const cluster = String(envoyGrpc['clusterName'] ?? '');
    if (cluster === '') throw new ConfigError(`${c}.grpcService.envoyGrpc.clusterName: required`);
    target = { cluster };
  } else if (googleGrpc !== undefined) {
    const uri = String(googleGrpc['targetUri'] ?? '');
    if (!/^[^\s/]+:\d{1,5}$/.test(uri)) throw new ConfigError(`${c}.grpcService.googleGrpc.targetUri: expected HOST:PORT, got ${JSON.stringify(uri)}`);
    if (googleGrpc['channelCredentials'] !== undefined || googleGrpc['callCredentials'] !== undefined) {
      throw new ConfigError(`${c}.grpcService.googleGrpc: channel and call credentials are not supported by this proxy (plaintext only)`);
    }
    target = { uri };
  } else {
    throw new ConfigError(`${c}.grpcService: needs envoyGrpc or googleGrpc`);
  }
  const version = common['transportApiVersion'] ?? V3;
  if (version !== V3 && version !== 2 && version !== 'AUTO' && version !== 0) throw new ConfigError(`${c}.transportApiVersion: only V3 is supported, got ${JSON.stringify(version)}`);
  const flush = durationMs(common['bufferFlushInterval'], `${c}.bufferFlushInterval`) ?? 1000;
  if (flush <= 0) throw new ConfigError(`${c}.bufferFlushInterval: must be greater than 0`);
  const sizeRaw = common['bufferSizeBytes'];
  const bufferSizeBytes = sizeRaw === undefined ? 16_384 : Number(typeof sizeRaw === 'object' && sizeRaw !== null ? (sizeRaw as { value?: number }).value ?? 0 : sizeRaw);
  if (!Number.isInteger(bufferSizeBytes) || bufferSizeBytes < 0) throw new ConfigError(`${c}.bufferSizeBytes: expected a byte count, got ${JSON.stringify(sizeRaw)}`);
  const objects = ((common['filterStateObjectsToLog'] as string[] | undefined) ?? []).map((o) => o.replace(/^wasm\./, ''));
  const known = new Set(['downstream_peer', 'downstream_peer_id', 'upstream_peer', 'upstream_peer_id']);
  objects.forEach((o, i) => {
    if (!known.has(o)) throw new ConfigError(`${c}.filterStateObjectsToLog[${i}]: filter state ${JSON.stringify(o)} is not kept by this proxy (it logs downstream_peer and upstream_peer)`);
  });
  const customTags = ((common['customTags'] as ProtoJson[] | undefined) ?? []).map((t, i) => compileCustomTag(t, `${c}.customTags[${i}]`));
  for (const f of ['additionalResponseHeadersToLog', 'additionalResponseTrailersToLog']) {
    if (((tc[f] as unknown[] | undefined) ?? []).length > 0) throw new ConfigError(`${at}.${f}: response headers and trailers are not logged by this proxy`);
  }
  const requestHeaders = ((tc['additionalRequestHeadersToLog'] as string[] | undefined) ?? []).map((h) => h.toLowerCase());
  const key = 'cluster' in target ? `cluster:${target.cluster}|${logName}` : `uri:${target.uri}|${logName}`;
  return {
    logName, target, bufferSizeBytes, flushIntervalMs: flush, requestHeaders,
    downstreamPeer: objects.includes('downstream_peer'), upstreamPeer: objects.includes('upstream_peer'), customTags, key,
  };
}

function compileCustomTag(t: ProtoJson, at: string): { tag: string; value: (r: AccessLogRecord) => string | undefined } {
  const tag = String(t['tag'] ?? '');
  if (tag === '') throw new ConfigError(`${at}.tag: required`);
  const literal = t['literal'] as ProtoJson | undefined;
  if (literal !== undefined) {
    const v = String(literal['value'] ?? '');
    return { tag, value: () => v };
  }
  const env = t['environment'] as ProtoJson | undefined;
  if (env !== undefined) {
    const v = process.env[String(env['name'] ?? '')] ?? String(env['defaultValue'] ?? '');
    return { tag, value: () => v };
  }
  const header = t['requestHeader'] as ProtoJson | undefined;
  if (header !== undefined) {
    const name = String(header['name'] ?? '').toLowerCase();
    const dflt = header['defaultValue'] === undefined ? undefined : String(header['defaultValue']);
    return { tag, value: (r) => r.requestHeader(name) ?? dflt };
  }
  throw new ConfigError(`${at}: custom tag ${JSON.stringify(tag)}: only literal, environment and requestHeader tags are supported by this proxy`);
}

// ---------------------------------------------------------------- encoding

export { encodeHttpEntry } from './als-encode.ts';

// ---------------------------------------------------------------- streaming

function varint(n: number, out: number[]): void {
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

/** Field `field` (length-delimited) header bytes for a payload of `len` bytes. */
function lengthPrefix(field: number, len: number): Buffer {
  const out: number[] = [(field << 3) | 2];
  varint(len, out);
  return Buffer.from(out);
}

/** Where a stream connects, and how. */
export interface AlsEndpoint {
  target: string;
  credentials?: grpc.ChannelCredentials | undefined;
  channelOptions?: grpc.ChannelOptions | undefined;
}

export interface AccessLogServiceOptions {
  /** The xDS node (JSON form), sent in each stream's first message as Envoy does. */
  node: ProtoJson;
  /**
   * An endpoint of a cluster (`xds-grpc`: the control plane) as `host:port`, with the channel
   * credentials to use (default plaintext); undefined when the cluster has none.
   */
  resolve(cluster: string): AlsEndpoint | undefined;
  logger: pino.Logger;
  /** Entries held while the sink is down or slow, per stream (default 10,000); past it, entries are dropped. */
  maxBufferedEntries?: number;
  /** Bytes held per stream (default 4 MiB); past it, entries are dropped. */
  maxBufferedBytes?: number;
  /** Reconnect backoff: first delay (default 500 ms), doubling up to the cap (default 10 s), jittered. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Streams at once (distinct target and log name, default 16); a logger past it drops its entries. */
  maxStreams?: number;
}

/** What the exposition and tests read. */
export interface AccessLogServiceStats {
  /** Entries written to a stream. */
  sent: number;
  /** Entries dropped: buffer full, stream limit, or an encoding failure. */
  dropped: number;
  /** Entries waiting in buffers. */
  buffered: number;
  /** Streams open now. */
  connected: number;
  streams: number;
}

/** Every ALS stream of a proxy, by target and log name, created when a logger first writes. */
export class AccessLogService {
  private readonly opts: Required<Omit<AccessLogServiceOptions, 'node' | 'resolve' | 'logger'>> & Pick<AccessLogServiceOptions, 'node' | 'resolve' | 'logger'>;
  private readonly streams = new Map<string, AlsStream>();
  /** Counts of streams closed for idleness, so totals never go down. */
  private closedSent = 0;
  private closedDropped = 0;
  private refused = 0;
  private readonly sweep: NodeJS.Timeout;
  private closed = false;

  constructor(o: AccessLogServiceOptions) {
    this.opts = {
      maxBufferedEntries: 10_000, maxBufferedBytes: 4 * 1024 * 1024, initialBackoffMs: 500, maxBackoffMs: 10_000, maxStreams: 16,
      ...o,
    };
    // streams a config no longer uses are closed once their buffer is sent and they idled
    this.sweep = setInterval(() => this.closeIdle(Date.now() - 5 * 60_000), 60_000);
    this.sweep.unref();
  }

  /** Logs one request to the stream of `spec`; never throws, never waits. */
  log(spec: GrpcAccessLogSpec, r: AccessLogRecord): void {
    if (this.closed) return;
    let stream = this.streams.get(spec.key);
    if (stream === undefined) {
      if (this.streams.size >= this.opts.maxStreams) {
        this.refused++;
        return;
      }
      stream = new AlsStream(spec, this.opts);
      this.streams.set(spec.key, stream);
    }
    stream.use(spec);
    let bytes: Uint8Array;
    try {
      bytes = encodeHttpEntry(spec, r);
    } catch (err) {
      stream.dropped++;
      this.opts.logger.error({ logName: spec.logName, err: (err as Error).message }, 'access log entry could not be encoded; dropped');
      return;
    }
    stream.add(bytes);
  }

  stats(): AccessLogServiceStats {
    const s: AccessLogServiceStats = { sent: this.closedSent, dropped: this.closedDropped + this.refused, buffered: 0, connected: 0, streams: this.streams.size };
    for (const st of this.streams.values()) {
      s.sent += st.sent;
      s.dropped += st.dropped;
      s.buffered += st.buffered;
      if (st.isConnected) s.connected++;
    }
    return s;
  }

  /** Prometheus text for the proxy's stats. */
  exposition(): string {
    const s = this.stats();
    return [
      '# HELP sextant_accesslog_sent_total Access log entries streamed to an ALS sink.', '# TYPE sextant_accesslog_sent_total counter', `sextant_accesslog_sent_total ${s.sent}`,
      '# HELP sextant_accesslog_dropped_total Access log entries dropped because the ALS sink was down or slow (buffer full).', '# TYPE sextant_accesslog_dropped_total counter', `sextant_accesslog_dropped_total ${s.dropped}`,
      '# HELP sextant_accesslog_buffered Access log entries waiting to be streamed.', '# TYPE sextant_accesslog_buffered gauge', `sextant_accesslog_buffered ${s.buffered}`,
      '# HELP sextant_accesslog_streams_connected ALS streams open to their sink.', '# TYPE sextant_accesslog_streams_connected gauge', `sextant_accesslog_streams_connected ${s.connected}`,
    ].join('\n');
  }

  /** Sends what is buffered now (where a stream is open). */
  flush(): void {
    for (const s of this.streams.values()) s.flush();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweep);
    for (const s of this.streams.values()) s.close();
  }

  private closeIdle(before: number): void {
    for (const [key, s] of this.streams) {
      if (s.lastUsed < before && s.buffered === 0) {
        this.closedSent += s.sent;
        this.closedDropped += s.dropped;
        s.close();
        this.streams.delete(key);
      }
    }
  }
}

type StreamOptions = AccessLogService['opts'];

/** One client stream to one sink: buffer, batches, backpressure, reconnect. */
class AlsStream {
  private spec: GrpcAccessLogSpec;
  private readonly opts: StreamOptions;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  sent = 0;
  dropped = 0;
  lastUsed = Date.now();
  private client: grpc.Client | undefined;
  private call: grpc.ClientWritableStream<Buffer> | undefined;
  private state: 'idle' | 'connecting' | 'ready' | 'backoff' | 'closed' = 'idle';
  private writable = true;
  private identifierSent = false;
  private identifier: Buffer | undefined;
  private backoffMs: number;
  private timer: NodeJS.Timeout | undefined;
  private flushTimer: NodeJS.Timeout;
  private flushScheduled = false;
  /** Whether the last connection problem was logged (one line per outage, not per attempt). */
  private outageLogged = false;

  constructor(spec: GrpcAccessLogSpec, opts: StreamOptions) {
    this.spec = spec;
    this.opts = opts;
    this.backoffMs = opts.initialBackoffMs;
    this.flushTimer = setInterval(() => this.flush(), spec.flushIntervalMs);
    this.flushTimer.unref();
    this.connect();
  }

  get buffered(): number {
    return this.pending.length;
  }

  get isConnected(): boolean {
    return this.state === 'ready';
  }

  /** The logger's latest settings (several listeners may share one stream). */
  use(spec: GrpcAccessLogSpec): void {
    this.lastUsed = Date.now();
    if (spec === this.spec) return;
    if (spec.flushIntervalMs !== this.spec.flushIntervalMs) {
      clearInterval(this.flushTimer);
      this.flushTimer = setInterval(() => this.flush(), spec.flushIntervalMs);
      this.flushTimer.unref();
    }
    this.spec = spec;
  }

  add(entry: Uint8Array): void {
    if (this.pending.length >= this.opts.maxBufferedEntries || this.pendingBytes + entry.length > this.opts.maxBufferedBytes) {
      this.dropped++;
      return;
    }
    this.pending.push(entry);
    this.pendingBytes += entry.length;
    if (this.pendingBytes >= this.spec.bufferSizeBytes && !this.flushScheduled && this.state === 'ready') {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  flush(): void {
    if (this.state !== 'ready' || this.call === undefined) return;
    while (this.writable && this.pending.length > 0) {
      // one message of at most ~1 MiB of entries
      let n = 0;
      let size = 0;
      while (n < this.pending.length && (n === 0 || size + this.pending[n]!.length < 1024 * 1024)) size += this.pending[n++]!.length + 6;
      const parts: Uint8Array[] = [];
      if (!this.identifierSent) {
        this.identifier ??= Buffer.from(encodeMessage('envoy.service.accesslog.v3.StreamAccessLogsMessage.Identifier', { node: this.opts.node, logName: this.spec.logName }));
        parts.push(lengthPrefix(1, this.identifier.length), this.identifier);
      }
      const entries: Uint8Array[] = [];
      let entriesLen = 0;
      for (let i = 0; i < n; i++) {
        const e = this.pending[i]!;
        const p = lengthPrefix(1, e.length);
        entries.push(p, e);
        entriesLen += p.length + e.length;
      }
      parts.push(lengthPrefix(2, entriesLen), ...entries);
      const message = Buffer.concat(parts);
      const batch = this.pending.splice(0, n);
      for (const e of batch) this.pendingBytes -= e.length;
      this.identifierSent = true;
      this.sent += n;
      this.writable = this.call.write(message);
    }
  }

  private connect(): void {
    if (this.state === 'closed') return;
    const endpoint: AlsEndpoint | undefined = 'uri' in this.spec.target ? { target: this.spec.target.uri } : this.opts.resolve(this.spec.target.cluster);
    if (endpoint === undefined) {
      const cluster = 'cluster' in this.spec.target ? this.spec.target.cluster : '';
      this.retry(cluster === XDS_GRPC_CLUSTER ? 'no xDS server to send access logs to' : `cluster ${cluster} has no endpoint (or is not in the config)`);
      return;
    }
    this.state = 'connecting';
    const target = endpoint.target;
    const client = new grpc.Client(target, endpoint.credentials ?? grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      // the stream's own backoff decides when to try again
      'grpc.initial_reconnect_backoff_ms': 1000,
      ...endpoint.channelOptions,
    });
    this.client = client;
    // Entries are only written to a connected channel, so none goes to a sink known to be down.
    client.waitForReady(Date.now() + 5000, (err) => {
      if (this.client !== client || this.state === 'closed') return;
      if (err) {
        client.close();
        this.client = undefined;
        this.retry(`${target}: ${err.message}`);
        return;
      }
      this.openCall(client, target);
    });
  }

  private openCall(client: grpc.Client, target: string): void {
    const call = client.makeClientStreamRequest<Buffer, Buffer>(
      STREAM_ACCESS_LOGS_METHOD,
      (b: Buffer) => b,
      (b: Buffer) => b,
      new grpc.Metadata(),
      {},
      (err) => {
        if (this.call !== call) return;
        this.call = undefined;
        client.close();
        if (this.client === client) this.client = undefined;
        if (this.state === 'closed') return;
        this.retry(`${target}: ${err ? err.details || err.message : 'the sink ended the stream'}`);
      },
    );
    call.on('drain', () => {
      if (this.call !== call) return;
      this.writable = true;
      this.flush();
    });
    this.call = call;
    this.state = 'ready';
    this.writable = true;
    this.identifierSent = false;
    this.backoffMs = this.opts.initialBackoffMs;
    if (this.outageLogged) this.opts.logger.info({ logName: this.spec.logName, target }, 'access log stream connected again');
    this.outageLogged = false;
    this.flush();
  }

  private retry(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'backoff';
    if (!this.outageLogged) {
      this.opts.logger.warn({ logName: this.spec.logName, reason, buffered: this.pending.length }, 'access log sink unreachable; buffering (bounded), then dropping; reconnecting with backoff');
      this.outageLogged = true;
    }
    const wait = this.backoffMs * (0.5 + Math.random() / 2);
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs);
    this.timer = setTimeout(() => this.connect(), wait);
    this.timer.unref();
  }

  close(): void {
    if (this.state === 'closed') return;
    // what is buffered goes out first when the stream is open
    this.flush();
    this.state = 'closed';
    clearTimeout(this.timer);
    clearInterval(this.flushTimer);
    const call = this.call;
    this.call = undefined;
    if (call !== undefined) call.end();
    const client = this.client;
    this.client = undefined;
    // give an ended stream a moment to reach the sink before the channel goes
    if (client !== undefined) setTimeout(() => client.close(), call !== undefined ? 200 : 0).unref();
  }
}
