// The ADS and CSDS services as gRPC method definitions, with requests decoded by Envoy's
// protos and responses written by hand so cached resource encodings are reused as bytes.
import type { ServiceDefinition } from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { messageType, decodeMessage } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';

/** A DiscoveryRequest as protobufjs decodes it (proto3 defaults filled in). */
export interface SotwRequest {
  versionInfo: string;
  node?: protobuf.Message | null;
  resourceNames: string[];
  typeUrl: string;
  responseNonce: string;
  errorDetail?: { code?: number; message?: string } | null;
  /**
   * The resource_names fields as they came on the wire, when they came as one run: a request
   * whose run is byte for byte the previous one names the same list, which need not be decoded
   * (a state-of-the-world ACK repeats the whole subscription, 10,000 names for a full mesh).
   */
  resourceNamesWire?: Buffer;
}

/** A DeltaDiscoveryRequest as protobufjs decodes it. */
export interface DeltaRequest {
  node?: protobuf.Message | null;
  typeUrl: string;
  resourceNamesSubscribe: string[];
  resourceNamesUnsubscribe: string[];
  initialResourceVersions: Record<string, string>;
  responseNonce: string;
  errorDetail?: { code?: number; message?: string } | null;
}

const NODE_TYPE = 'envoy.config.core.v3.Node';

function decoder<T>(typeName: string): (buf: Buffer) => T {
  return (buf: Buffer): T => {
    const type = messageType(typeName);
    const msg = type.decode(buf);
    return type.toObject(msg, { defaults: true, arrays: true, objects: true, longs: Number }) as unknown as T;
  };
}

/** The xDS node in proto3 JSON form (metadata as a plain object), as Generators.proxyFromNode wants it. */
export function nodeToJson(node: unknown): ProtoJson {
  const type = messageType(NODE_TYPE);
  return decodeMessage(NODE_TYPE, type.encode(type.fromObject(node as Record<string, unknown>)).finish());
}

/** Reads a varint at `pos`: [value, next position], or undefined past `end` or beyond 2^53. */
function readVarint(buf: Buffer, pos: number, end: number): [number, number] | undefined {
  let value = 0;
  let scale = 1;
  while (pos < end) {
    const b = buf[pos++]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
    if (scale > 2 ** 49) return undefined;
  }
  return undefined;
}

/** A decoded SotW request whose resource names are decoded from the wire only when read. */
class LazySotwRequest implements SotwRequest {
  versionInfo = '';
  typeUrl = '';
  responseNonce = '';
  errorDetail = null;
  resourceNamesWire: Buffer | undefined;
  private names: string[] | undefined;
  private readonly wire: Buffer;
  /** Where the resource_names fields are: one run [start, end), or every field's [start, end) when scattered. */
  private readonly spans: readonly number[];

  constructor(wire: Buffer, spans: readonly number[]) {
    this.wire = wire;
    this.spans = spans;
  }

  get resourceNames(): string[] {
    if (this.names === undefined) {
      const names: string[] = [];
      const buf = this.wire;
      // Each span holds resource_names fields only (checked when the request was read).
      for (let i = 0; i < this.spans.length; i += 2) {
        let pos = this.spans[i]!;
        const end = this.spans[i + 1]!;
        while (pos < end) {
          const len = readVarint(buf, pos + 1, end)!;
          names.push(buf.toString('utf8', len[1], len[1] + len[0]));
          pos = len[1] + len[0];
        }
      }
      this.names = names;
    }
    return this.names;
  }
}

const sotwDecoder = decoder<SotwRequest>('envoy.service.discovery.v3.DiscoveryRequest');

/**
 * DiscoveryRequest: version_info 1, node 2, resource_names 3, type_url 4, response_nonce 5,
 * error_detail 6. A request with only fields 1, 3, 4 and 5 (every ACK after the first request)
 * is read here, its names left as bytes until asked for; any other goes through protobufjs.
 */
export function decodeSotwRequest(buf: Buffer): SotwRequest {
  const spans: number[] = [];
  const strings: [string, string, string] = ['', '', ''];
  let pos = 0;
  const size = buf.length;
  while (pos < size) {
    const at = pos;
    // One-byte tags only: fields 1 to 15 (the four read here are 0x0a, 0x1a, 0x22 and 0x2a).
    const key = buf[pos]!;
    if (key !== 0x1a && key !== 0x0a && key !== 0x22 && key !== 0x2a) return sotwDecoder(buf);
    let len = buf[pos + 1] ?? 0x80;
    let start = pos + 2;
    if (len >= 0x80) {
      const v = readVarint(buf, pos + 1, size);
      if (v === undefined) return sotwDecoder(buf);
      [len, start] = v;
    }
    const end = start + len;
    if (end > size) return sotwDecoder(buf);
    if (key === 0x1a) {
      // Names in one run extend the current span.
      if (spans.length > 0 && spans[spans.length - 1] === at) spans[spans.length - 1] = end;
      else spans.push(at, end);
    } else {
      strings[key === 0x0a ? 0 : key === 0x22 ? 1 : 2] = buf.toString('utf8', start, end);
    }
    pos = end;
  }
  const req = new LazySotwRequest(buf, spans);
  req.versionInfo = strings[0];
  req.typeUrl = strings[1];
  req.responseNonce = strings[2];
  req.resourceNamesWire = spans.length === 0 ? EMPTY_WIRE : spans.length === 2 ? buf.subarray(spans[0], spans[1]) : undefined;
  return req;
}

const EMPTY_WIRE = Buffer.alloc(0);

const identity = (b: Buffer): Buffer => b;
// Typed as Buffer for grpc-js; a ResponseParts is framed by its byteLength and copy().
const prepared = (r: SerializedResponse): Buffer => r as Buffer;

export const ADS_SERVICE: ServiceDefinition = {
  StreamAggregatedResources: {
    path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: decodeSotwRequest,
    responseSerialize: prepared,
    responseDeserialize: identity,
  },
  DeltaAggregatedResources: {
    path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: decoder<DeltaRequest>('envoy.service.discovery.v3.DeltaDiscoveryRequest'),
    responseSerialize: prepared,
    responseDeserialize: identity,
  },
};

function encodeJson(typeName: string): (m: ProtoJson) => Buffer {
  return (m: ProtoJson): Buffer => {
    const type = messageType(typeName);
    return Buffer.from(type.encode(type.fromObject(m)).finish());
  };
}

export const CSDS_SERVICE: ServiceDefinition = {
  StreamClientStatus: {
    path: '/envoy.service.status.v3.ClientStatusDiscoveryService/StreamClientStatus',
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: decoder<ProtoJson>('envoy.service.status.v3.ClientStatusRequest'),
    responseSerialize: encodeJson('envoy.service.status.v3.ClientStatusResponse'),
    responseDeserialize: identity,
  },
  FetchClientStatus: {
    path: '/envoy.service.status.v3.ClientStatusDiscoveryService/FetchClientStatus',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: decoder<ProtoJson>('envoy.service.status.v3.ClientStatusRequest'),
    responseSerialize: encodeJson('envoy.service.status.v3.ClientStatusResponse'),
    responseDeserialize: identity,
  },
};

// --- hand-written protobuf: length-delimited fields only, which is all responses need ---

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** Field `fieldNo` (wire type 2) holding `payload`. */
export function lengthDelimited(fieldNo: number, payload: Uint8Array): Buffer {
  const tag = (fieldNo << 3) | 2;
  const out = Buffer.allocUnsafe(varintLength(tag) + varintLength(payload.length) + payload.length);
  let pos = writeVarint(out, 0, tag);
  pos = writeVarint(out, pos, payload.length);
  out.set(payload, pos);
  return out;
}

export function stringField(fieldNo: number, value: string): Buffer {
  if (value === '') return Buffer.alloc(0);
  return lengthDelimited(fieldNo, Buffer.from(value, 'utf8'));
}

/** google.protobuf.Any {type_url = 1, value = 2}. */
export function anyMessage(typeUrl: string, value: Uint8Array): Buffer {
  return Buffer.concat([stringField(1, typeUrl), lengthDelimited(2, value)]);
}

/**
 * A response held as its parts: the per-proxy fields around a `resources` section shared by
 * every proxy with the same set. grpc-js frames a message by reading its `byteLength` and
 * calling `copy(frame, 5)` (server-interceptors' serializeMessage, @grpc/grpc-js 1.14), so
 * handing it the parts copies the shared section once, into the frame, instead of first
 * concatenating a per-proxy message and then copying that (a full-mesh response is 13 MB).
 */
export class ResponseParts {
  readonly parts: readonly Uint8Array[];
  readonly byteLength: number;

  constructor(parts: readonly Uint8Array[]) {
    this.parts = parts;
    let n = 0;
    for (const p of parts) n += p.length;
    this.byteLength = n;
  }

  get length(): number {
    return this.byteLength;
  }

  /** Buffer.copy's contract: copies bytes [sourceStart, sourceEnd) to target at targetStart. */
  copy(target: Uint8Array, targetStart = 0, sourceStart = 0, sourceEnd = this.byteLength): number {
    const end = Math.min(sourceEnd, this.byteLength, sourceStart + target.length - targetStart);
    let at = targetStart;
    let offset = 0;
    for (const p of this.parts) {
      const from = Math.max(sourceStart - offset, 0);
      const to = Math.min(end - offset, p.length);
      if (to > from) {
        target.set(from === 0 && to === p.length ? p : p.subarray(from, to), at);
        at += to - from;
      }
      offset += p.length;
      if (offset >= end) break;
    }
    return at - targetStart;
  }

  /** The message as one Buffer (tests and non-gRPC callers). */
  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** What ADS_SERVICE's response serializer accepts. */
export type SerializedResponse = ResponseParts | Buffer;

/**
 * DiscoveryResponse: version_info 1, resources 2 (pre-encoded fields, concatenated), type_url 4,
 * nonce 5, control_plane 6.
 */
export function sotwResponse(versionInfo: string, resources: Buffer, typeUrl: string, nonce: string, controlPlane: Buffer): ResponseParts {
  return new ResponseParts([stringField(1, versionInfo), resources, Buffer.concat([stringField(4, typeUrl), stringField(5, nonce), controlPlane])]);
}

/** DeltaDiscoveryResponse: system_version_info 1, resources 2, type_url 4, nonce 5, removed_resources 6, control_plane 7. */
export function deltaResponse(systemVersion: string, resources: Buffer, typeUrl: string, nonce: string, removed: readonly string[], controlPlane: Buffer): ResponseParts {
  return new ResponseParts([
    stringField(1, systemVersion),
    resources,
    Buffer.concat([stringField(4, typeUrl), stringField(5, nonce), ...removed.map((name) => lengthDelimited(6, Buffer.from(name, 'utf8'))), controlPlane]),
  ]);
}

/** envoy.config.core.v3.ControlPlane {identifier = 1} as field `fieldNo` of a response. */
export function controlPlaneField(fieldNo: number, identifier: string): Buffer {
  return lengthDelimited(fieldNo, stringField(1, identifier));
}
