// Access logs of an HCM or tcp_proxy: JSON lines (the file and stdout loggers, with Envoy's
// command operators for a json_format and Istio's default JSON field set otherwise) and ALS
// (`envoy.access_loggers.http_grpc`, ./als.ts), each behind its optional filter (./log-filter.ts).
// Writes are buffered with a bound; what is beyond it is dropped and counted. A logger type
// this proxy lacks is refused (NACK), as Envoy refuses an unknown extension.
import { createWriteStream } from 'node:fs';
import type { WriteStream } from 'node:fs';
import type { ProtoJson } from '../../envoy/index.ts';
import { HTTP_GRPC_ACCESS_LOG_TYPE } from '../../envoy/access-log.ts';
import { ConfigError } from '../config/fields.ts';
import type { WorkloadIdentity } from '../cluster/host.ts';
import { compileGrpcAccessLog } from './als.ts';
import type { AccessLogService, GrpcAccessLogSpec } from './als.ts';
import { compileLogFilter } from './log-filter.ts';
import type { LogFilter } from './log-filter.ts';
import type { WorkloadInfo } from './peer.ts';

/** Everything a log line may say about one request or connection. */
export interface AccessLogRecord {
  startTime: number;
  method: string;
  path: string;
  originalPath: string | undefined;
  protocol: string;
  responseCode: number;
  responseFlags: string;
  responseCodeDetails: string;
  bytesReceived: number;
  bytesSent: number;
  durationMs: number;
  upstreamServiceTimeMs: number | undefined;
  xForwardedFor: string | undefined;
  userAgent: string | undefined;
  requestId: string | undefined;
  authority: string | undefined;
  upstreamHost: string | undefined;
  upstreamCluster: string | undefined;
  upstreamLocalAddress: string | undefined;
  upstreamTransportFailureReason: string | undefined;
  downstreamLocalAddress: string;
  downstreamRemoteAddress: string;
  /** The mTLS caller's SPIFFE URI (%DOWNSTREAM_PEER_URI_SAN%); absent for plaintext. */
  downstreamPeerUriSan?: string | undefined;
  routeName: string | undefined;
  requestHeader: (name: string) => string | undefined;
  /** The caller's workload from Istio's peer metadata (inbound), for ALS. */
  downstreamPeer?: WorkloadInfo | undefined;
  /** The upstream endpoint's workload from EDS metadata (outbound), for ALS. */
  upstreamPeer?: WorkloadIdentity | undefined;
}

/** A JSON-lines logger (file or stdout). */
export interface FileAccessLogSpec {
  kind?: 'file';
  path: string;
  format: [string, (r: AccessLogRecord) => unknown][];
  /** Only records it accepts are logged; absent, all. */
  filter?: LogFilter | undefined;
}

/** An ALS logger (`envoy.access_loggers.http_grpc`). */
export interface GrpcAccessLogLoggerSpec {
  kind: 'grpc';
  grpc: GrpcAccessLogSpec;
  filter?: LogFilter | undefined;
}

export type AccessLogSpec = FileAccessLogSpec | GrpcAccessLogLoggerSpec;

/** Istio's default JSON access log format (meshConfig accessLogEncoding: JSON). */
export const ISTIO_JSON_FORMAT: Record<string, string> = {
  start_time: '%START_TIME%',
  method: '%REQ(:METHOD)%',
  path: '%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%',
  protocol: '%PROTOCOL%',
  response_code: '%RESPONSE_CODE%',
  response_flags: '%RESPONSE_FLAGS%',
  response_code_details: '%RESPONSE_CODE_DETAILS%',
  connection_termination_details: '%CONNECTION_TERMINATION_DETAILS%',
  upstream_transport_failure_reason: '%UPSTREAM_TRANSPORT_FAILURE_REASON%',
  bytes_received: '%BYTES_RECEIVED%',
  bytes_sent: '%BYTES_SENT%',
  duration: '%DURATION%',
  upstream_service_time: '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%',
  x_forwarded_for: '%REQ(X-FORWARDED-FOR)%',
  user_agent: '%REQ(USER-AGENT)%',
  request_id: '%REQ(X-REQUEST-ID)%',
  authority: '%REQ(:AUTHORITY)%',
  upstream_host: '%UPSTREAM_HOST%',
  upstream_cluster: '%UPSTREAM_CLUSTER%',
  upstream_local_address: '%UPSTREAM_LOCAL_ADDRESS%',
  downstream_local_address: '%DOWNSTREAM_LOCAL_ADDRESS%',
  downstream_remote_address: '%DOWNSTREAM_REMOTE_ADDRESS%',
  requested_server_name: '%REQUESTED_SERVER_NAME%',
  route_name: '%ROUTE_NAME%',
  // not in Istio's default: the mTLS caller's identity, null for plaintext (Sextant's addition)
  downstream_peer_uri_san: '%DOWNSTREAM_PEER_URI_SAN%',
};

const FILE_LOGGER = 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog';
const STDOUT_LOGGER = 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog';

/**
 * Compiles an HCM's or tcp_proxy's `access_log` list. `http` is false for tcp_proxy, where
 * the HTTP gRPC logger has nothing to log (Envoy's tcp_grpc logger is not supported).
 */
export function compileAccessLogs(v: unknown, at: string, http = true): AccessLogSpec[] {
  const out: AccessLogSpec[] = [];
  ((v as ProtoJson[] | undefined) ?? []).forEach((al, i) => {
    const where = `${at}[${i}]`;
    const tc = al['typedConfig'] as ProtoJson | undefined;
    const type = tc?.['@type'];
    const filter = compileLogFilter(al['filter'], `${where}.filter`);
    if (type === HTTP_GRPC_ACCESS_LOG_TYPE) {
      if (!http) throw new ConfigError(`${where}.typedConfig: the HTTP gRPC access logger applies to HTTP connection managers, not tcp_proxy`);
      out.push({ kind: 'grpc', grpc: compileGrpcAccessLog(tc!, `${where}.typedConfig`), filter });
      return;
    }
    if (type !== FILE_LOGGER && type !== STDOUT_LOGGER) {
      throw new ConfigError(`${where}.typedConfig: access logger ${JSON.stringify(type ?? al['name'] ?? '')} is not supported by this proxy (supported: ${FILE_LOGGER}, ${STDOUT_LOGGER}, ${HTTP_GRPC_ACCESS_LOG_TYPE})`);
    }
    const path = type === STDOUT_LOGGER ? '/dev/stdout' : String(tc!['path'] ?? '');
    if (!path) throw new ConfigError(`${where}.typedConfig.path: required`);
    const lf = tc!['logFormat'] as ProtoJson | undefined;
    const json = (lf?.['jsonFormat'] as Record<string, unknown> | undefined) ?? ISTIO_JSON_FORMAT;
    out.push({ path, format: Object.entries(json).map(([k, op]) => [k, compileOperator(String(op), `${where}.typedConfig.logFormat.jsonFormat.${k}`)]), filter });
  });
  return out;
}

function compileOperator(op: string, at: string): (r: AccessLogRecord) => unknown {
  const m = /^%([A-Z_]+)(?:\(([^)]*)\))?(?::\d+)?%$/.exec(op);
  if (!m) return () => op; // a literal
  const arg = m[2] ?? '';
  const nz = (s: string | undefined): string | null => (s === undefined || s === '' ? null : s);
  switch (m[1]) {
    case 'START_TIME': return (r) => new Date(r.startTime).toISOString();
    case 'PROTOCOL': return (r) => nz(r.protocol);
    case 'RESPONSE_CODE': return (r) => r.responseCode;
    case 'RESPONSE_FLAGS': return (r) => r.responseFlags || '-';
    case 'RESPONSE_CODE_DETAILS': return (r) => nz(r.responseCodeDetails);
    case 'CONNECTION_TERMINATION_DETAILS': return () => null;
    case 'UPSTREAM_TRANSPORT_FAILURE_REASON': return (r) => nz(r.upstreamTransportFailureReason);
    case 'BYTES_RECEIVED': return (r) => r.bytesReceived;
    case 'BYTES_SENT': return (r) => r.bytesSent;
    case 'DURATION': return (r) => Math.round(r.durationMs);
    case 'UPSTREAM_HOST': return (r) => nz(r.upstreamHost);
    case 'UPSTREAM_CLUSTER': return (r) => nz(r.upstreamCluster);
    case 'UPSTREAM_LOCAL_ADDRESS': return (r) => nz(r.upstreamLocalAddress);
    case 'DOWNSTREAM_LOCAL_ADDRESS': return (r) => r.downstreamLocalAddress;
    case 'DOWNSTREAM_REMOTE_ADDRESS': case 'DOWNSTREAM_PEER_ADDRESS': return (r) => r.downstreamRemoteAddress;
    case 'DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT': return (r) => r.downstreamRemoteAddress.replace(/:\d+$/, '');
    case 'REQUESTED_SERVER_NAME': return () => null;
    case 'DOWNSTREAM_PEER_URI_SAN': return (r) => nz(r.downstreamPeerUriSan);
    case 'ROUTE_NAME': return (r) => nz(r.routeName);
    case 'RESP': {
      if (arg.toUpperCase() === 'X-ENVOY-UPSTREAM-SERVICE-TIME') return (r) => (r.upstreamServiceTimeMs === undefined ? null : String(Math.round(r.upstreamServiceTimeMs)));
      return () => null;
    }
    case 'REQ': {
      const [main = '', alt] = arg.split('?').map((s) => s.toLowerCase());
      const get = (r: AccessLogRecord, name: string): string | undefined => {
        if (name === ':method') return r.method;
        if (name === ':path') return r.path;
        if (name === ':authority') return r.authority;
        if (name === 'x-forwarded-for') return r.xForwardedFor;
        if (name === 'x-request-id') return r.requestId;
        if (name === 'user-agent') return r.userAgent;
        if (name === 'x-envoy-original-path') return r.originalPath;
        return r.requestHeader(name);
      };
      return (r) => nz(get(r, main) ?? (alt ? get(r, alt) : undefined));
    }
    default:
      throw new ConfigError(`${at}: unsupported command operator ${op}`);
  }
}

/** One open log file (shared by every listener that logs to the same path). */
class LogSink {
  private readonly stream: WriteStream | NodeJS.WriteStream;
  private buffer: string[] = [];
  private bytes = 0;
  private scheduled = false;
  dropped = 0;
  private readonly maxBytes: number;

  constructor(path: string, maxBytes: number) {
    this.maxBytes = maxBytes;
    this.stream = path === '/dev/stdout' ? process.stdout : path === '/dev/stderr' ? process.stderr : createWriteStream(path, { flags: 'a' });
  }

  write(line: string): void {
    if (this.bytes + line.length > this.maxBytes || this.stream.writableNeedDrain) {
      this.dropped++;
      return;
    }
    this.buffer.push(line);
    this.bytes += line.length;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.buffer.length === 0) return;
    const chunk = this.buffer.join('');
    this.buffer = [];
    this.bytes = 0;
    this.stream.write(chunk);
  }

  close(): void {
    this.flush();
    if (this.stream !== process.stdout && this.stream !== process.stderr) (this.stream as WriteStream).end();
  }
}

/**
 * Writes records for every AccessLogSpec of a listener; file sinks are opened once per path,
 * ALS loggers go to `als` (the proxy's streams; without one, ALS loggers log nothing).
 */
export class AccessLogWriter {
  private readonly sinks = new Map<string, LogSink>();
  private readonly maxBufferedBytes: number;
  readonly als: AccessLogService | undefined;

  constructor(maxBufferedBytes = 4 * 1024 * 1024, als?: AccessLogService) {
    this.maxBufferedBytes = maxBufferedBytes;
    this.als = als;
  }

  write(specs: readonly AccessLogSpec[], record: AccessLogRecord): void {
    for (const spec of specs) {
      if (spec.filter !== undefined && !spec.filter(record)) continue;
      if (spec.kind === 'grpc') {
        this.als?.log(spec.grpc, record);
        continue;
      }
      let sink = this.sinks.get(spec.path);
      if (!sink) {
        sink = new LogSink(spec.path, this.maxBufferedBytes);
        this.sinks.set(spec.path, sink);
      }
      const obj: Record<string, unknown> = {};
      for (const [k, f] of spec.format) obj[k] = f(record);
      sink.write(JSON.stringify(obj) + '\n');
    }
  }

  get dropped(): number {
    let n = 0;
    for (const s of this.sinks.values()) n += s.dropped;
    return n;
  }

  flush(): void {
    for (const s of this.sinks.values()) s.flush();
  }

  close(): void {
    for (const s of this.sinks.values()) s.close();
    this.sinks.clear();
    this.als?.close();
  }
}
