// The pilot's access-log sink: Envoy's ALS (`AccessLogService/StreamAccessLogs`) served on the
// xDS port. Each HTTPAccessLogEntry becomes an AccessLogEntry (reporter, both ends' IPs and
// workloads from the stream's node, the peer metadata and the pilot's registry, the origin by
// `originOf`, the operation by an OperationNamer with the RouteTemplates), queued (bounded) and
// written to the LogStore in batches. ALS is lossy by contract: entries the queue cannot hold,
// or a batch the store refuses, are dropped and counted (`sextant_accesslog_sink_dropped_total`).
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import { messageType } from '../envoy/index.ts';
import {
  ACCESS_LOG_SERVICE, ISTIO_GENERATED_ROUTE_NAMES, STREAM_ACCESS_LOGS_MESSAGE, requestMethodName, shortResponseFlags,
} from '../envoy/access-log.ts';
import { originOf } from './origin.ts';
import { OperationNamer } from './operations.ts';
import type { OperationTemplate } from './operations.ts';
import type { AccessLogEntry, LogStore, Reporter } from './types.ts';

/** What the sink asks the pilot about the mesh: names of IPs and the declared operations. */
export interface SinkDirectory {
  /** The workload at an address (a connected proxy, a WorkloadEntry), when known. */
  workloadAt(ip: string): { workload: string; namespace: string } | undefined;
  /** The services a workload at `ip` serves on its port `port` (several services may share a workload's port). */
  servicesAt(ip: string, port: number): readonly string[];
  /** The RouteTemplates of the mesh (the same array while they do not change). */
  templates(): readonly OperationTemplate[];
}

export interface AccessLogSinkOptions {
  store: LogStore;
  logger: Logger;
  directory?: SinkDirectory;
  /** Where the sink's counters go (the pilot's /metrics). */
  registry?: Registry;
  /** Entries waiting for the store at most (default 100,000); past it, entries are dropped and counted. */
  maxQueuedEntries?: number;
  /** Entries per insert (default 1,000). */
  batchSize?: number;
  /** The longest an entry waits for its batch (default 100 ms). */
  flushIntervalMs?: number;
  /** Operations per service (default 200, then `__other__`). */
  operationBudget?: number;
  /**
   * Checks a stream's caller may speak for the node its identifier names (on a TLS port: its
   * certificate's namespace); throws an Error with a gRPC `code` to refuse the stream.
   */
  authorize?: (call: grpc.ServerReadableStream<Buffer, Buffer>, node: { id: string; namespace: string }) => void;
}

/** The reporting proxy, from the stream's first message. */
interface StreamNode {
  id: string;
  type: string;
  ip: string;
  workload: string;
  namespace: string;
}

const UNKNOWN_NODE: StreamNode = { id: '', type: 'sidecar', ip: '', workload: '', namespace: '' };

type Msg = Record<string, unknown>;

/** A uint64/int64 as protobufjs decodes it (a number or a Long) → number. */
function num(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v === null || v === undefined) return 0;
  if (typeof v === 'object' && 'toNumber' in v) return (v as { toNumber(): number }).toNumber();
  return Number(v);
}

function ms(t: unknown): number {
  if (t === null || t === undefined) return 0;
  const o = t as { seconds?: unknown; nanos?: number };
  return num(o.seconds) * 1000 + (o.nanos ?? 0) / 1e6;
}

function addressOf(a: unknown): { ip: string; port: number } {
  const sa = (a as { socketAddress?: { address?: string; portValue?: number } } | undefined)?.socketAddress;
  return { ip: sa?.address ?? '', port: sa?.portValue ?? 0 };
}

let structType: ReturnType<typeof messageType> | undefined;

/** A google.protobuf.Struct (decoded message) of string values → a plain object. */
function structStrings(s: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const fields = (s as { fields?: Record<string, { stringValue?: string; structValue?: unknown }> } | undefined)?.fields ?? {};
  for (const [k, v] of Object.entries(fields)) if (typeof v.stringValue === 'string') out[k] = v.stringValue;
  return out;
}

function structField(s: unknown, key: string): unknown {
  return (s as { fields?: Record<string, unknown> } | undefined)?.fields?.[key];
}

/** Peers by their encoded bytes: a proxy sends the same few peers over and over (bounded). */
const peerCache = new Map<string, { workload: string; namespace: string } | undefined>();
const PEER_CACHE_MAX = 4096;

/** A peer object logged by the proxy (an Any holding a Struct: workload, namespace, …). */
function peerOf(objects: unknown, key: string): { workload: string; namespace: string } | undefined {
  const any = (objects as Record<string, { type_url?: string; value?: Uint8Array }> | undefined)?.[key] ?? (objects as Record<string, { type_url?: string; value?: Uint8Array }> | undefined)?.[`wasm.${key}`];
  if (any?.value === undefined || !String(any.type_url ?? '').endsWith('google.protobuf.Struct')) return undefined;
  const cacheKey = Buffer.from(any.value.buffer, any.value.byteOffset, any.value.byteLength).toString('latin1');
  if (peerCache.has(cacheKey)) return peerCache.get(cacheKey);
  structType ??= messageType('google.protobuf.Struct');
  let peer: { workload: string; namespace: string } | undefined;
  try {
    const f = structStrings(structType.decode(any.value));
    const workload = f['workload'] ?? f['WORKLOAD_NAME'] ?? '';
    const namespace = f['namespace'] ?? f['NAMESPACE'] ?? '';
    peer = workload === '' || workload === 'unknown' ? undefined : { workload, namespace: namespace === 'unknown' ? '' : namespace };
  } catch {
    peer = undefined;
  }
  if (peerCache.size >= PEER_CACHE_MAX) peerCache.clear();
  peerCache.set(cacheKey, peer);
  return peer;
}

/** The reporting proxy as the stream's identifier names it (istio-agent's node id and metadata). */
function nodeOf(identifier: unknown): StreamNode {
  const node = (identifier as { node?: { id?: string; metadata?: unknown } } | undefined)?.node;
  if (node === undefined) return UNKNOWN_NODE;
  const id = node.id ?? '';
  const parts = id.split('~');
  const meta = structStrings(node.metadata);
  const ips = meta['INSTANCE_IPS'] ?? '';
  const podNs = parts[2] ?? '';
  const dot = podNs.lastIndexOf('.');
  const labels = structStrings(structField(node.metadata, 'LABELS') === undefined ? undefined : (structField(node.metadata, 'LABELS') as { structValue?: unknown }).structValue);
  const app = labels['app'];
  const workload = meta['WORKLOAD_NAME'] ?? (app !== undefined ? (labels['version'] !== undefined ? `${app}-${labels['version']}` : app) : (dot > 0 ? podNs.slice(0, dot) : podNs));
  return {
    id,
    type: parts[0] ?? 'sidecar',
    ip: ips.split(',')[0]?.trim() || (parts[1] ?? ''),
    workload,
    namespace: meta['NAMESPACE'] ?? (dot > 0 ? podNs.slice(dot + 1) : ''),
  };
}

/** `outbound|9080|v1|reviews.default.svc.cluster.local` → its host; '' for other clusters. */
function serviceOfCluster(cluster: string): string {
  if (!cluster.startsWith('outbound|')) return '';
  const host = cluster.slice(cluster.lastIndexOf('|') + 1);
  return host;
}

const PROTOCOLS: Readonly<Record<number, string>> = { 1: 'HTTP/1.0', 2: 'HTTP/1.1', 3: 'HTTP/2', 4: 'HTTP/3' };

/** Counts the sink keeps (also on /metrics). */
export interface SinkStats {
  streams: number;
  received: number;
  stored: number;
  dropped: number;
  queued: number;
  /** Messages that did not decode. */
  malformed: number;
}

export class AccessLogSink {
  readonly store: LogStore;
  readonly namer: OperationNamer;
  private readonly logger: Logger;
  private readonly directory: SinkDirectory | undefined;
  private readonly authorize: AccessLogSinkOptions['authorize'];
  private readonly maxQueued: number;
  private readonly batchSize: number;
  private queue: AccessLogEntry[] = [];
  private writing: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private templates: readonly OperationTemplate[] | undefined;
  private readonly calls = new Set<grpc.ServerReadableStream<Buffer, Buffer>>();
  private closed = false;
  /** Whether the store's current failure was logged (one line per outage). */
  private storeFailing = false;
  readonly counts: SinkStats = { streams: 0, received: 0, stored: 0, dropped: 0, queued: 0, malformed: 0 };
  /** In-process subscribers to every entry as it arrives (the lazy-scope controller), with the stream's log name. */
  private readonly subscribers = new Set<(entry: AccessLogEntry, logName: string) => void>();

  constructor(o: AccessLogSinkOptions) {
    this.store = o.store;
    this.logger = o.logger;
    this.directory = o.directory;
    this.authorize = o.authorize;
    this.maxQueued = o.maxQueuedEntries ?? 100_000;
    this.batchSize = o.batchSize ?? 1000;
    this.namer = new OperationNamer({ budget: o.operationBudget ?? 200 });
    this.timer = setInterval(() => this.flush(), o.flushIntervalMs ?? 100);
    this.timer.unref();
    if (o.registry !== undefined) this.registerMetrics(o.registry);
  }

  /**
   * Calls `listener` with every entry as it arrives (before it is queued for the store), with the
   * log name its stream announced; returns the unsubscribe. A listener must be quick and must
   * not throw (a throw is caught and logged).
   */
  subscribe(listener: (entry: AccessLogEntry, logName: string) => void): () => void {
    this.subscribers.add(listener);
    return () => { this.subscribers.delete(listener); };
  }

  /** Serves ALS on a gRPC server (the pilot's xDS port). */
  register(server: grpc.Server): void {
    const raw = (b: Buffer): Buffer => b;
    server.addService({
      StreamAccessLogs: {
        path: `/${ACCESS_LOG_SERVICE}/StreamAccessLogs`,
        requestStream: true,
        responseStream: false,
        requestSerialize: raw,
        requestDeserialize: raw,
        responseSerialize: raw,
        responseDeserialize: raw,
      },
    }, {
      StreamAccessLogs: (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => this.handleStream(call, callback),
    });
  }

  /** One proxy's stream: its identifier first, then batches of entries; answered when the proxy ends it. */
  handleStream(call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>): void {
    if (this.closed) {
      callback({ code: grpc.status.UNAVAILABLE, details: 'the access-log sink is closing' });
      return;
    }
    this.counts.streams++;
    this.calls.add(call);
    let node: StreamNode | undefined;
    let logName = '';
    const type = messageType(STREAM_ACCESS_LOGS_MESSAGE);
    let done = false;
    const finish = (err: grpc.ServiceError | null): void => {
      if (done) return;
      done = true;
      this.calls.delete(call);
      this.counts.streams--;
      if (err === null) callback(null, Buffer.alloc(0));
    };
    call.on('data', (buf: Buffer) => {
      let msg: Msg;
      try {
        msg = type.decode(buf) as unknown as Msg;
      } catch (err) {
        this.counts.malformed++;
        this.logger.warn({ node: node?.id, err: (err as Error).message }, 'access-log message did not decode; ignored');
        return;
      }
      if (msg['identifier'] !== undefined && msg['identifier'] !== null) {
        node = nodeOf(msg['identifier']);
        logName = String((msg['identifier'] as { logName?: unknown }).logName ?? '');
        try {
          this.authorize?.(call, node);
        } catch (err) {
          const code = (err as { code?: unknown }).code;
          this.logger.warn({ node: node.id, err: (err as Error).message }, 'access-log stream refused');
          done = true;
          this.calls.delete(call);
          this.counts.streams--;
          callback({ code: typeof code === 'number' ? code : grpc.status.PERMISSION_DENIED, details: (err as Error).message });
          return;
        }
      }
      if (done) return;
      const entries = (msg['httpLogs'] as { logEntry?: Msg[] } | undefined)?.logEntry ?? [];
      if (entries.length === 0) return;
      this.counts.received += entries.length;
      this.accept(entries, node ?? UNKNOWN_NODE, logName);
    });
    call.on('end', () => finish(null));
    call.on('error', () => finish({ code: grpc.status.CANCELLED } as grpc.ServiceError));
    call.on('cancelled', () => finish({ code: grpc.status.CANCELLED } as grpc.ServiceError));
  }

  private accept(raw: readonly Msg[], node: StreamNode, logName = ''): void {
    const room = this.maxQueued - this.queue.length;
    if (room <= 0) {
      this.counts.dropped += raw.length;
      return;
    }
    const n = Math.min(room, raw.length);
    if (n < raw.length) this.counts.dropped += raw.length - n;
    this.refreshTemplates();
    for (let i = 0; i < n; i++) {
      try {
        const entry = this.entryOf(raw[i]!, node);
        this.queue.push(entry);
        if (this.subscribers.size > 0) this.publish(entry, logName);
      } catch (err) {
        this.counts.malformed++;
        this.counts.dropped++;
        this.logger.warn({ node: node.id, err: (err as Error).message }, 'access-log entry could not be read; dropped');
      }
    }
    if (this.queue.length >= this.batchSize) this.flush();
  }

  private refreshTemplates(): void {
    const t = this.directory?.templates();
    if (t !== undefined && t !== this.templates) {
      this.templates = t;
      this.namer.setTemplates(t);
    }
  }

  private publish(entry: AccessLogEntry, logName: string): void {
    for (const l of this.subscribers) {
      try {
        l(entry, logName);
      } catch (err) {
        this.logger.error({ err: (err as Error).message }, 'access-log subscriber failed');
      }
    }
  }

  /** HTTPAccessLogEntry (decoded) → AccessLogEntry. */
  entryOf(e: Msg, node: StreamNode): AccessLogEntry {
    const c = (e['commonProperties'] ?? {}) as Msg;
    const req = (e['request'] ?? {}) as Msg;
    const res = (e['response'] ?? {}) as Msg;
    const tags = (c['customTags'] ?? {}) as Record<string, string>;
    const upstreamCluster = String(c['upstreamCluster'] ?? '');
    const tag = tags['reporter'];
    const reporter: Reporter = tag === 'source' || tag === 'destination' || tag === 'gateway' ? tag
      : node.type === 'router' ? 'gateway' : upstreamCluster.startsWith('inbound|') ? 'destination' : 'source';
    const downstream = addressOf(c['downstreamDirectRemoteAddress'] ?? c['downstreamRemoteAddress']);
    const local = addressOf(c['downstreamLocalAddress']);
    const upstream = addressOf(c['upstreamRemoteAddress']);
    const flags = shortResponseFlags(c['responseFlags'] as Msg | null | undefined);
    const code = num((res['responseCode'] as { value?: number } | undefined)?.value);
    const authority = String(req['authority'] ?? '');
    const fullPath = String(req['path'] ?? '');
    const q = fullPath.search(/[?#]/);
    const path = q < 0 ? fullPath : fullPath.slice(0, q);
    const method = requestMethodName(req['requestMethod']);
    const objects = c['filterStateObjects'];
    let sourceIp: string;
    let source: { workload: string; namespace: string } | undefined;
    let destinationIp: string;
    let destinationPort: number;
    let destination: { workload: string; namespace: string } | undefined;
    let service = serviceOfCluster(upstreamCluster);
    if (reporter === 'destination') {
      sourceIp = downstream.ip;
      source = peerOf(objects, 'downstream_peer') ?? this.directory?.workloadAt(sourceIp);
      destinationIp = local.ip || node.ip;
      destinationPort = local.port;
      destination = node.workload !== '' ? { workload: node.workload, namespace: node.namespace } : this.directory?.workloadAt(destinationIp);
      if (service === '') {
        // of the services the workload serves on that port, the one the request named
        const hosts = this.directory?.servicesAt(destinationIp, destinationPort) ?? [];
        const host = authority.replace(/:\d+$/, '');
        service = hosts.find((h) => h === host || h.startsWith(`${host}.`)) ?? hosts[0] ?? '';
      }
    } else {
      // the caller is the reporting workload (a gateway: whoever called it)
      sourceIp = reporter === 'gateway' ? downstream.ip : node.ip || downstream.ip;
      source = reporter === 'gateway' ? this.directory?.workloadAt(sourceIp) : node.workload !== '' ? { workload: node.workload, namespace: node.namespace } : undefined;
      destinationIp = upstream.ip;
      destinationPort = upstream.port;
      destination = destinationIp === '' ? undefined : peerOf(objects, 'upstream_peer') ?? this.directory?.workloadAt(destinationIp);
    }
    if (service === '' && authority !== '') service = authority.replace(/:\d+$/, '');
    const routeName = String(c['routeName'] ?? '');
    const principal = ((((c['tlsProperties'] as Msg | undefined)?.['peerCertificateProperties'] as Msg | undefined)?.['subjectAltName'] as { uri?: string }[] | undefined) ?? []).find((s) => s.uri !== undefined)?.uri ?? '';
    return {
      time: ms(c['startTime']),
      durationMs: ms(c['duration']),
      reporter,
      node: node.id,
      sourceIp,
      sourceWorkload: source?.workload ?? '',
      sourceNamespace: source?.namespace ?? '',
      sourcePrincipal: principal,
      destinationIp,
      destinationWorkload: destination?.workload ?? '',
      destinationNamespace: destination?.namespace ?? '',
      destinationService: service,
      destinationPort,
      method,
      path,
      operation: this.namer.name({
        service: service || upstreamCluster || 'unknown',
        path,
        method,
        ...(routeName !== '' && !ISTIO_GENERATED_ROUTE_NAMES.has(routeName) ? { routeName } : {}),
      }),
      authority,
      protocol: PROTOCOLS[num(e['protocolVersion'])] ?? '',
      responseCode: code,
      responseFlags: flags,
      origin: originOf(code, flags),
      bytesReceived: num(req['requestBodyBytes']),
      bytesSent: num(res['responseBodyBytes']),
      requestId: String(req['requestId'] ?? ''),
      upstreamCluster,
      routeName,
    };
  }

  /** Writes a batch when one is full or due; one insert at a time, so the store is never flooded. */
  flush(): void {
    if (this.writing !== undefined || this.queue.length === 0) return;
    const batch = this.queue.length <= this.batchSize ? this.queue : this.queue.slice(0, this.batchSize);
    this.queue = batch === this.queue ? [] : this.queue.slice(this.batchSize);
    this.writing = this.store.insert(batch).then(
      () => {
        this.counts.stored += batch.length;
        if (this.storeFailing) this.logger.info({ store: this.store.kind }, 'access-log store writable again');
        this.storeFailing = false;
      },
      (err: unknown) => {
        this.counts.dropped += batch.length;
        if (!this.storeFailing) this.logger.error({ store: this.store.kind, entries: batch.length, err: err instanceof Error ? err.message : String(err) }, 'access-log store refused a batch; its entries are dropped (counted)');
        this.storeFailing = true;
      },
    ).finally(() => {
      this.writing = undefined;
      if (this.queue.length >= this.batchSize || (this.closed && this.queue.length > 0)) this.flush();
    });
  }

  stats(): SinkStats {
    return { ...this.counts, queued: this.queue.length };
  }

  /** Resolves once everything received so far is stored (or dropped). */
  async drained(): Promise<void> {
    while (this.queue.length > 0 || this.writing !== undefined) {
      this.flush();
      await (this.writing ?? new Promise((r) => setTimeout(r, 10)));
    }
  }

  /** Ends the streams, stores what is queued; the store stays open (its owner closes it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const call of this.calls) call.destroy();
    await this.drained();
  }

  private registerMetrics(registry: Registry): void {
    const counts = this.counts;
    const queued = (): number => this.queue.length;
    new Counter({ name: 'sextant_accesslog_sink_received_total', help: 'Access-log entries received over ALS.', registers: [registry], collect() { this.reset(); this.inc(counts.received); } });
    new Counter({ name: 'sextant_accesslog_sink_stored_total', help: 'Access-log entries written to the store.', registers: [registry], collect() { this.reset(); this.inc(counts.stored); } });
    new Counter({ name: 'sextant_accesslog_sink_dropped_total', help: 'Access-log entries dropped by the sink: its queue was full, or the store refused the batch.', registers: [registry], collect() { this.reset(); this.inc(counts.dropped); } });
    new Gauge({ name: 'sextant_accesslog_sink_queued', help: 'Access-log entries waiting for the store.', registers: [registry], collect() { this.set(queued()); } });
    new Gauge({ name: 'sextant_accesslog_sink_streams', help: 'ALS streams open from proxies.', registers: [registry], collect() { this.set(counts.streams); } });
  }
}
