// The HTTPAccessLogEntry of one request (envoy.data.accesslog.v3), written straight into a
// reused byte buffer: this runs once per request when ALS is on, so it builds no message
// objects and allocates only the entry's final copy. Field numbers are those of Envoy's
// accesslog.proto; the tests decode every entry with Envoy's own protos.
import { encodeMessage } from '../../envoy/index.ts';
import { HTTP_VERSIONS, REQUEST_METHODS } from '../../envoy/access-log.ts';
import type { WorkloadIdentity } from '../cluster/host.ts';
import type { AccessLogRecord } from './access-log.ts';
import type { WorkloadInfo } from './peer.ts';

/** What the encoder needs of a logger's config. */
export interface EntryOptions {
  requestHeaders: readonly string[];
  downstreamPeer: boolean;
  upstreamPeer: boolean;
  customTags: readonly { tag: string; value: (r: AccessLogRecord) => string | undefined }[];
}

/** ResponseFlags' field numbers by short flag (UAEX is the message `unauthorized_details`, 13). */
const FLAG_FIELDS: Readonly<Record<string, number>> = {
  LH: 1, UH: 2, UT: 3, LR: 4, UR: 5, UF: 6, UC: 7, UO: 8, NR: 9, DI: 10, FI: 11, RL: 12, RLSE: 14, DC: 15, URX: 16,
  SI: 17, IH: 18, DPE: 19, UMSDR: 20, RFCF: 21, NFCF: 22, DT: 23, UPE: 24, NC: 25, OM: 26, DF: 27, DR: 28,
};
const UNAUTHORIZED_FIELD = 13;

const STRUCT_TYPE_URL = 'type.googleapis.com/google.protobuf.Struct';

/** Protobuf wire types. */
const Wire = { Varint: 0, Fixed64: 1, Len: 2 } as const;
type Wire = (typeof Wire)[keyof typeof Wire];

/** A growable protobuf writer; a nested message is written in place, its length fixed up at its end. */
class Writer {
  buf = Buffer.allocUnsafe(2048);
  pos = 0;

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  varint(n: number): void {
    this.room(10);
    while (n > 0x7f) {
      this.buf[this.pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
  }

  tag(field: number, wire: Wire): void {
    this.varint(field * 8 + wire);
  }

  /** A non-empty string field (proto3 writes no empty string). */
  string(field: number, s: string | undefined): void {
    if (s === undefined || s === '') return;
    this.tag(field, Wire.Len);
    const len = Buffer.byteLength(s);
    this.varint(len);
    this.room(len);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  bytes(field: number, b: Uint8Array): void {
    this.tag(field, Wire.Len);
    this.varint(b.length);
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** A non-zero unsigned integer field. */
  uint(field: number, n: number): void {
    if (!(n > 0)) return;
    this.tag(field, Wire.Varint);
    this.varint(Math.floor(n));
  }

  double(field: number, v: number): void {
    this.tag(field, Wire.Fixed64);
    this.room(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  /** Opens a nested message: returns where its content starts (one length byte reserved). */
  begin(field: number): number {
    this.tag(field, Wire.Len);
    this.room(1);
    this.pos++;
    return this.pos;
  }

  /** Closes a nested message: its length before it (content moved when it needs more than one byte). */
  end(start: number): void {
    const len = this.pos - start;
    if (len < 0x80) {
      this.buf[start - 1] = len;
      return;
    }
    let extra = 0;
    for (let n = len; n > 0x7f; n = Math.floor(n / 128)) extra++;
    this.room(extra);
    this.buf.copy(this.buf, start + extra, start, this.pos);
    let p = start - 1;
    let n = len;
    while (n > 0x7f) {
      this.buf[p++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[p] = n;
    this.pos += extra;
  }

  /** A `config.core.v3.Address` with its socket address from `ip:port` or `[ip6]:port`. */
  address(field: number, hostPort: string | undefined): void {
    if (hostPort === undefined || hostPort === '') return;
    const i = hostPort.lastIndexOf(':');
    let host = i < 0 ? hostPort : hostPort.slice(0, i);
    if (host.charCodeAt(0) === 91 /* [ */) host = host.slice(1, -1);
    const port = i < 0 ? 0 : Number(hostPort.slice(i + 1)) || 0;
    const a = this.begin(field);
    const sa = this.begin(1); // socket_address
    this.string(2, host);
    this.uint(3, port);
    this.end(sa);
    this.end(a);
  }

  /** A Timestamp or Duration from milliseconds. */
  time(field: number, ms: number): void {
    const seconds = Math.floor(ms / 1000);
    const nanos = Math.round((ms - seconds * 1000) * 1e6);
    const t = this.begin(field);
    this.uint(1, seconds);
    this.uint(2, nanos);
    this.end(t);
  }

  /** A map<string, string> entry. */
  mapEntry(field: number, key: string, value: string): void {
    const e = this.begin(field);
    this.string(1, key);
    this.string(2, value);
    this.end(e);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.pos);
    out.set(this.buf.subarray(0, this.pos));
    this.pos = 0;
    return out;
  }
}

const writer = new Writer();

/** Istio's peer metadata object, packed once per peer object: a google.protobuf.Struct. */
const packedPeers = new WeakMap<object, Uint8Array>();

function packPeer(p: WorkloadInfo | WorkloadIdentity): Uint8Array {
  let packed = packedPeers.get(p);
  if (packed === undefined) {
    const workload = 'workload' in p ? p.workload : p.name;
    const fields: Record<string, string> = { workload, namespace: p.namespace };
    const known = (v: string | undefined): v is string => v !== undefined && v !== '' && v !== 'unknown';
    if (known(p.cluster)) fields['cluster'] = p.cluster;
    if (known(p.canonicalService)) fields['service'] = p.canonicalService;
    if (known(p.canonicalRevision)) fields['revision'] = p.canonicalRevision;
    if ('app' in p && known(p.app)) fields['app'] = p.app;
    if ('version' in p && known(p.version)) fields['version'] = p.version;
    packed = encodeMessage('google.protobuf.Struct', fields);
    packedPeers.set(p, packed);
  }
  return packed;
}

/** `filter_state_objects` entry: key → Any{type_url, value}. */
function filterState(w: Writer, key: string, value: Uint8Array): void {
  const e = w.begin(21);
  w.string(1, key);
  const any = w.begin(2);
  w.string(1, STRUCT_TYPE_URL);
  w.bytes(2, value);
  w.end(any);
  w.end(e);
}

/** The HTTPAccessLogEntry of one request, as protobuf bytes. */
export function encodeHttpEntry(spec: EntryOptions, r: AccessLogRecord): Uint8Array {
  const w = writer;
  w.pos = 0;
  // 1: common_properties (AccessLogCommon)
  const c = w.begin(1);
  w.double(1, 1); // sample_rate
  w.address(2, r.downstreamRemoteAddress);
  w.address(3, r.downstreamLocalAddress);
  if (r.downstreamPeerUriSan !== undefined) {
    const tls = w.begin(4);
    const peer = w.begin(5); // peer_certificate_properties
    const san = w.begin(1); // subject_alt_name
    w.string(1, r.downstreamPeerUriSan); // uri
    w.end(san);
    w.end(peer);
    w.end(tls);
  }
  w.time(5, r.startTime);
  if (r.upstreamServiceTimeMs !== undefined) w.time(9, r.upstreamServiceTimeMs); // time_to_first_upstream_rx_byte
  w.address(13, r.upstreamHost);
  w.string(15, r.upstreamCluster);
  const flags = r.responseFlags;
  if (flags !== '' && flags !== '-') {
    const f = w.begin(16);
    for (const short of flags.split(',')) {
      const n = FLAG_FIELDS[short];
      if (n !== undefined) {
        w.tag(n, Wire.Varint);
        w.varint(1);
      } else if (short === 'UAEX') {
        const u = w.begin(UNAUTHORIZED_FIELD);
        w.uint(1, 1); // reason EXTERNAL_SERVICE
        w.end(u);
      }
    }
    w.end(f);
  }
  w.string(18, r.upstreamTransportFailureReason);
  w.string(19, r.routeName);
  w.address(20, r.downstreamRemoteAddress); // downstream_direct_remote_address
  if (spec.downstreamPeer && r.downstreamPeer !== undefined) filterState(w, 'downstream_peer', packPeer(r.downstreamPeer));
  if (spec.upstreamPeer && r.upstreamPeer !== undefined) filterState(w, 'upstream_peer', packPeer(r.upstreamPeer));
  for (const t of spec.customTags) {
    const v = t.value(r);
    if (v !== undefined) w.mapEntry(22, t.tag, v);
  }
  w.time(23, r.durationMs); // duration
  w.end(c);
  // 2: protocol_version
  w.uint(2, HTTP_VERSIONS[r.protocol] ?? 0);
  // 3: request (HTTPRequestProperties)
  const q = w.begin(3);
  w.uint(1, REQUEST_METHODS[r.method] ?? 0);
  w.string(2, 'http');
  w.string(3, r.authority);
  const colon = r.authority?.lastIndexOf(':') ?? -1;
  if (colon > 0) {
    const port = Number(r.authority!.slice(colon + 1));
    if (Number.isInteger(port) && port > 0) {
      const p = w.begin(4);
      w.uint(1, port);
      w.end(p);
    }
  }
  w.string(5, r.path);
  w.string(6, r.userAgent);
  w.string(8, r.xForwardedFor);
  w.string(9, r.requestId);
  w.string(10, r.originalPath);
  w.uint(12, r.bytesReceived);
  for (const h of spec.requestHeaders) {
    const v = r.requestHeader(h);
    if (v !== undefined) w.mapEntry(13, h, v);
  }
  w.end(q);
  // 4: response (HTTPResponseProperties)
  const s = w.begin(4);
  if (r.responseCode > 0) {
    const code = w.begin(1);
    w.uint(1, r.responseCode);
    w.end(code);
  }
  w.uint(3, r.bytesSent);
  w.string(6, r.responseCodeDetails);
  w.end(s);
  return w.finish();
}
