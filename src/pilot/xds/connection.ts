// One ADS stream from one proxy: what it subscribed to per type, what was sent and acked,
// and a serial task chain so requests and pushes on the stream never interleave.
import type { Writable } from 'node:stream';
import type { Proxy } from '../model.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import { VersionAccumulator } from './cache.ts';
import { ResponseParts } from './wire.ts';
import type { SerializedResponse } from './wire.ts';
import type { EncodedResource } from './cache.ts';

export type XdsProtocol = 'sotw' | 'delta';

/** The last rejection of one type by one proxy. */
export interface Nack {
  message: string;
  nonce: string;
  /** The version the proxy rejected (what was sent). */
  version: string;
  at: number;
}

/** Per type: subscription and the sent/acked bookkeeping xDS needs. */
export interface WatchedResource {
  readonly typeUrl: string;
  /** Subscribed to everything (legacy empty-name request for LDS/CDS, or explicit `*`). */
  wildcard: boolean;
  /** Explicitly subscribed names. */
  names: Set<string>;
  /** SotW: the resource_names of the last request that changed the subscription, as sent. */
  requested?: readonly string[];
  /** SotW: the last request's resource_names as they came on the wire (SotwRequest.resourceNamesWire). */
  requestedWire?: Buffer | undefined;
  /**
   * What the proxy holds, by name: for delta all types, for SotW the named types (RDS/EDS)
   * whose responses may carry only what changed.
   */
  readonly sent: Map<string, EncodedResource>;
  /** SotW LDS/CDS: the full set last sent (each response carries everything). */
  lastFull: EncodedResource[];
  readonly acc: VersionAccumulator;
  nonceSent?: string;
  versionSent?: string;
  sentAt?: number;
  nonceAcked?: string;
  versionAcked?: string;
  ackedAt?: number;
  nack?: Nack;
  /**
   * EDS: the sequence number (see nonceSeq) of the response that last carried each name, and of
   * the latest response ACKed: a name whose response is at or before the ACKed one was applied
   * by the proxy, however many responses came after it (the registration API's acks).
   */
  sentSeq?: Map<string, number>;
  ackedSeq?: number;
  /** Earliest config-event time behind the responses not yet acked (convergence start). */
  pendingEventTime?: number;
  responses: number;
  bytesSent: number;
}

/** The per-connection sequence number a nonce from Connection.nextNonce starts with. */
export function nonceSeq(nonce: string): number {
  return parseInt(nonce.slice(0, nonce.indexOf('-')), 36);
}

/**
 * Records that the proxy applied the EDS response `nonce` (an ACK of it, the latest or an
 * earlier one: responses of a type apply in order). Nonces this stream never sent are ignored.
 */
export function noteApplied(w: WatchedResource, nonce: string, error: { code?: number; message?: string } | null | undefined): void {
  if (w.sentSeq === undefined || w.nonceSent === undefined || (error?.code ?? 0) !== 0 || (error?.message ?? '') !== '') return;
  const seq = nonceSeq(nonce);
  if (seq <= nonceSeq(w.nonceSent) && seq > (w.ackedSeq ?? -1)) w.ackedSeq = seq;
}

export function newWatchedResource(typeUrl: string): WatchedResource {
  return { typeUrl, wildcard: false, names: new Set(), sent: new Map(), lastFull: [], acc: new VersionAccumulator(), responses: 0, bytesSent: 0 };
}

/** The gRPC duplex call a connection writes responses to. */
export type ResponseStream = Writable;

/**
 * The parts of a grpc-js (1.14) server call that writing a message frame directly needs. grpc-js
 * frames each message by copying it into a new buffer; writing the 5-byte frame prefix and the
 * response's parts straight to the HTTP/2 stream sends the shared resources section without
 * any copy. Found by shape, not version: when the call does not have it, responses go through
 * grpc-js's own serializer (ResponseParts.copy), which is correct, only slower.
 */
interface GrpcCallInternals {
  stream: Writable;
  maxSendMessageSize: number;
  checkCancelled(): boolean;
  maybeSendMetadata(): void;
  callEventTracker?: { addMessageSent?: () => void } | null;
}

function grpcCallInternals(stream: ResponseStream): GrpcCallInternals | undefined {
  const call = (stream as { call?: unknown }).call as Partial<GrpcCallInternals> | undefined;
  if (call === undefined || call === null || typeof call !== 'object') return undefined;
  const s = call.stream;
  if (s === undefined || typeof s.write !== 'function' || typeof s.cork !== 'function' || typeof s.uncork !== 'function') return undefined;
  if (typeof call.checkCancelled !== 'function' || typeof call.maybeSendMetadata !== 'function' || typeof call.maxSendMessageSize !== 'number') return undefined;
  return call as GrpcCallInternals;
}

/** Resolves when `stream` drains or closes. */
function drained(stream: Writable): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

export class Connection {
  readonly id: string;
  readonly proxy: Proxy;
  readonly protocol: XdsProtocol;
  /** The node as decoded from the first request (for CSDS). */
  readonly node: ProtoJson;
  readonly connectedAt = Date.now();
  readonly peer: string;
  readonly watched = new Map<string, WatchedResource>();
  closed = false;
  /** Last time from a config event to this proxy's ACK, in ms. */
  lastConvergenceMs?: number;
  private chain: Promise<void> = Promise.resolve();
  private readonly stream: ResponseStream;
  private readonly direct: GrpcCallInternals | undefined;
  /** Responses are written to the HTTP/2 stream directly (no framing copy); see GrpcCallInternals. */
  readonly writesFrames: boolean;
  private nonceSeq = 0;

  constructor(id: string, proxy: Proxy, protocol: XdsProtocol, node: ProtoJson, peer: string, stream: ResponseStream) {
    this.id = id;
    this.proxy = proxy;
    this.protocol = protocol;
    this.node = node;
    this.peer = peer;
    this.stream = stream;
    this.direct = grpcCallInternals(stream);
    this.writesFrames = this.direct !== undefined;
  }

  /** Runs `task` after every task queued before it; a failing task does not stop the chain. */
  run(task: () => Promise<void>): Promise<void> {
    const next = this.chain.then(() => (this.closed ? undefined : task()));
    this.chain = next.catch(() => undefined);
    return next;
  }

  nextNonce(): string {
    this.nonceSeq++;
    return `${this.nonceSeq.toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  }

  /** Writes one response, waiting while the stream's buffer is full (back-pressure). */
  async write(response: SerializedResponse): Promise<void> {
    if (this.closed || this.stream.destroyed) return;
    const direct = this.direct;
    // Larger than grpc-js allows: its own path refuses it with RESOURCE_EXHAUSTED.
    if (direct !== undefined && response instanceof ResponseParts && (direct.maxSendMessageSize === -1 || response.byteLength <= direct.maxSendMessageSize)) {
      if (direct.checkCancelled()) return;
      direct.maybeSendMetadata();
      const prefix = Buffer.allocUnsafe(5);
      prefix[0] = 0; // not compressed
      prefix.writeUInt32BE(response.byteLength, 1);
      const h2 = direct.stream;
      h2.cork();
      let ok = h2.write(prefix);
      for (const part of response.parts) if (part.length > 0) ok = h2.write(part);
      h2.uncork();
      direct.callEventTracker?.addMessageSent?.();
      if (!ok && !h2.destroyed) await drained(h2);
      return;
    }
    if (this.stream.write(response)) return;
    await drained(this.stream);
  }

  watch(typeUrl: string): WatchedResource {
    let w = this.watched.get(typeUrl);
    if (w === undefined) {
      w = newWatchedResource(typeUrl);
      this.watched.set(typeUrl, w);
    }
    return w;
  }
}
