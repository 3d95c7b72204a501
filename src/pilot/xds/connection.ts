// One ADS stream from one proxy: what it subscribed to per type, what was sent and acked,
// and a serial task chain so requests and pushes on the stream never interleave.
import type { Writable } from 'node:stream';
import type { Proxy } from '../model.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import { VersionAccumulator } from './cache.ts';
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
  /** Earliest config-event time behind the responses not yet acked (convergence start). */
  pendingEventTime?: number;
  responses: number;
  bytesSent: number;
}

export function newWatchedResource(typeUrl: string): WatchedResource {
  return { typeUrl, wildcard: false, names: new Set(), sent: new Map(), lastFull: [], acc: new VersionAccumulator(), responses: 0, bytesSent: 0 };
}

/** The gRPC duplex call a connection writes responses to. */
export type ResponseStream = Writable;

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
  private nonceSeq = 0;

  constructor(id: string, proxy: Proxy, protocol: XdsProtocol, node: ProtoJson, peer: string, stream: ResponseStream) {
    this.id = id;
    this.proxy = proxy;
    this.protocol = protocol;
    this.node = node;
    this.peer = peer;
    this.stream = stream;
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
    if (this.stream.write(response)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        resolve();
      };
      this.stream.on('drain', done);
      this.stream.on('close', done);
    });
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
