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

const identity = (b: Buffer): Buffer => b;
// Typed as Buffer for grpc-js; a ResponseParts is framed by its byteLength and copy().
const prepared = (r: SerializedResponse): Buffer => r as Buffer;

export const ADS_SERVICE: ServiceDefinition = {
  StreamAggregatedResources: {
    path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: decoder<SotwRequest>('envoy.service.discovery.v3.DiscoveryRequest'),
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
