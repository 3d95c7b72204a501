// The proxy's ADS client: one gRPC stream to any Envoy v3 xDS server, delta by default with
// state-of-the-world as fallback. Each response is handed whole to a ResourceSink that
// validates and compiles it; the client ACKs what compiled and NACKs (with the reason) what
// did not, so the last good config keeps serving. Given several servers (pilot replicas), it
// uses one at a time and, when that stream is lost, moves to the next, telling the new server
// what it holds; a round of servers that all fail is followed by a capped, jittered backoff.
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import type pino from 'pino';
import {
  CLUSTER_TYPE, DISCOVERY_RESOURCE_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, NAME_TABLE_TYPE, ROUTE_TYPE, RUNTIME_TYPE, SHORT_TYPE_NAMES,
  decodeMessage, encodeMessage, messageType,
} from '../../envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../envoy/index.ts';

const ADS_SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
const SOTW_METHOD = `${ADS_SERVICE}/StreamAggregatedResources`;
const DELTA_METHOD = `${ADS_SERVICE}/DeltaAggregatedResources`;
const DISCOVERY_REQUEST = 'envoy.service.discovery.v3.DiscoveryRequest';
const DISCOVERY_RESPONSE = 'envoy.service.discovery.v3.DiscoveryResponse';
const DELTA_REQUEST = 'envoy.service.discovery.v3.DeltaDiscoveryRequest';
const DELTA_RESPONSE = 'envoy.service.discovery.v3.DeltaDiscoveryResponse';
/** google.rpc.Code INVALID_ARGUMENT, what Envoy sends in a NACK's error_detail. */
const INVALID_ARGUMENT = 3;

/** Types subscribed as wildcards (everything the server has for this node). */
const WILDCARD_TYPES: readonly XdsTypeUrl[] = [CLUSTER_TYPE, LISTENER_TYPE];
/** Request order on a fresh stream: clusters before listeners, as Envoy does. */
const SUBSCRIBE_ORDER: readonly XdsTypeUrl[] = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE];

/** The resource types this client subscribes to: the pushed ones, and RTDS (runtime layers). */
export type SubscribedTypeUrl = XdsTypeUrl | typeof RUNTIME_TYPE;

/** A resource as received: its name, the version the server gave it, and its body. */
export interface XdsResource {
  name: string;
  version: string;
  resource: ProtoJson;
  /** xDS `Resource.ttl` in ms: the resource lapses unless refreshed within it (Envoy's TTL). */
  ttlMs?: number;
  /** A TTL refresh without a body (the body is the one accepted before). */
  heartbeat?: boolean;
}

/**
 * Where updates go. `apply` receives the complete set of resources of one type after the
 * update (not a diff), and throws an Error whose message is the NACK reason when the update
 * is invalid; nothing of a rejected update may take effect.
 */
export interface ResourceSink {
  apply(typeUrl: SubscribedTypeUrl, resources: ReadonlyMap<string, XdsResource>): void;
  /** Names this proxy needs of a non-wildcard type (EDS: cluster names, RDS: route names, RTDS: layers). */
  interest(typeUrl: SubscribedTypeUrl): ReadonlySet<string>;
}

export interface AdsClientOptions {
  /**
   * The xDS servers, `host:port` each, in order of preference; a string may list several,
   * comma-separated. All must serve the same config (replicas of one control plane).
   */
  server: string | readonly string[];
  /** The xDS node (id, cluster, metadata, …) in JSON form. */
  node: ProtoJson;
  sink: ResourceSink;
  logger: pino.Logger;
  /** 'delta' (default) or 'sotw'; delta falls back to sotw when the server lacks it. */
  protocol?: 'delta' | 'sotw';
  /** Further types subscribed as wildcards after the four (NDS, when the DNS proxy runs). */
  extraTypes?: readonly XdsTypeUrl[];
  /** Further types subscribed by name (the sink's interest), after the others: RTDS's runtime layers. */
  namedTypes?: readonly SubscribedTypeUrl[];
  /**
   * Backoff after a round in which every server failed: the first delay, doubling up to
   * maxBackoffMs, jittered (50-100 %). A stream that was working and is lost moves to the next
   * server after a jitter of up to half the first delay; a server that cannot be reached moves
   * to the next at once, until the round is done.
   */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * With several servers: a stream that has had no answer this long (a server that cannot be
   * connected to, e.g. a host that drops packets, or one that does not answer) is given up for
   * the next server. Default 10 s.
   */
  establishTimeoutMs?: number;
  /**
   * Credentials for each new channel (the closed control plane: TLS with the workload
   * certificate of the moment); default plaintext.
   */
  credentials?: () => { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions };
}

/** The outcome of one response, as kept for config_dump and tests. */
export interface XdsUpdateStatus {
  typeUrl: SubscribedTypeUrl;
  nonce: string;
  accepted: boolean;
  error?: string;
  at: number;
}

interface TypeState {
  /** What the sink accepted last, by name. */
  accepted: Map<string, XdsResource>;
  /** SotW: version_info of the last accepted response. */
  versionInfo: string;
  /** SotW: nonce of the last response (accepted or not), echoed in the next request. */
  lastNonce: string;
  /** Names currently subscribed (for non-wildcard types). */
  subscribed: Set<string>;
  /** True once a response for this type has been accepted. */
  received: boolean;
}

type Stream = grpc.ClientDuplexStream<ProtoJson, ProtoJson>;

/** The servers a `server` option names, each `host:port`. */
export function xdsServerList(server: string | readonly string[]): string[] {
  const list = (typeof server === 'string' ? server.split(',') : [...server]).map((s) => s.trim()).filter((s) => s !== '');
  if (list.length === 0) throw new Error('no xDS server given: expected HOST:PORT[,HOST:PORT…]');
  return list;
}

export class AdsClient {
  private readonly opts: Required<Omit<AdsClientOptions, 'protocol' | 'server' | 'extraTypes' | 'namedTypes' | 'credentials'>> & { protocol: 'delta' | 'sotw'; credentials?: AdsClientOptions['credentials'] };
  private readonly wildcardTypes: readonly SubscribedTypeUrl[];
  private readonly subscribeOrder: readonly SubscribedTypeUrl[];
  /** Non-wildcard types whose names follow the sink's interest. */
  private readonly namedTypes: readonly SubscribedTypeUrl[];
  /** The servers in order of preference. */
  readonly servers: readonly string[];
  /** Index in `servers` of the one in use (or tried next). */
  private serverIndex = 0;
  /** Servers that failed in a row since the last working stream. */
  private failuresInRound = 0;
  /** A channel per server, kept while its connection may still complete (see openStream). */
  private readonly channels = new Map<string, grpc.Client>();
  private readonly state = new Map<SubscribedTypeUrl, TypeState>();
  private stream: Stream | undefined;
  private mode: 'delta' | 'sotw';
  private backoffMs: number;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** True once the current stream has received a response. */
  private established = false;
  private lostStreams = 0;
  /** The last few outcomes (bounded), newest last. */
  readonly history: XdsUpdateStatus[] = [];
  private static readonly HISTORY_LIMIT = 64;

  constructor(options: AdsClientOptions) {
    const { server, extraTypes = [], namedTypes = [], ...rest } = options;
    this.wildcardTypes = [...WILDCARD_TYPES, ...extraTypes];
    this.subscribeOrder = [...SUBSCRIBE_ORDER, ...extraTypes, ...namedTypes];
    this.namedTypes = [ENDPOINT_TYPE, ROUTE_TYPE, ...namedTypes];
    this.servers = xdsServerList(server);
    this.opts = {
      ...rest,
      protocol: options.protocol ?? 'delta',
      initialBackoffMs: options.initialBackoffMs ?? 500,
      maxBackoffMs: options.maxBackoffMs ?? 30_000,
      establishTimeoutMs: options.establishTimeoutMs ?? 10_000,
    };
    this.mode = this.opts.protocol;
    this.backoffMs = this.opts.initialBackoffMs;
    for (const t of this.subscribeOrder) {
      this.state.set(t, { accepted: new Map(), versionInfo: '', lastNonce: '', subscribed: new Set(), received: false });
    }
  }

  /** The server in use, or the one being tried. */
  get server(): string {
    return this.servers[this.serverIndex]!;
  }

  /** Working streams lost so far (each followed by a move to the next server). */
  get failovers(): number {
    return this.lostStreams;
  }

  /** The protocol in use now (delta, or sotw after a fallback). */
  get protocol(): 'delta' | 'sotw' {
    return this.mode;
  }

  /** True while a stream is open and has received at least one response. */
  get connected(): boolean {
    return this.stream !== undefined && this.established;
  }

  /** Resources currently accepted for a type (for config_dump). */
  accepted(typeUrl: SubscribedTypeUrl): ReadonlyMap<string, XdsResource> {
    return this.typeState(typeUrl).accepted;
  }

  versionInfo(typeUrl: SubscribedTypeUrl): string {
    return this.typeState(typeUrl).versionInfo;
  }

  start(): void {
    this.openStream();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.stream?.cancel();
    this.stream = undefined;
    for (const c of this.channels.values()) c.close();
    this.channels.clear();
  }

  /**
   * Re-reads the sink's interest in EDS and RDS names and subscribes/unsubscribes as needed;
   * the compile layer calls this after CDS/LDS changes what is referenced.
   */
  refreshInterest(): void {
    for (const t of this.namedTypes) {
      const st = this.typeState(t);
      const want = this.opts.sink.interest(t);
      const add = [...want].filter((n) => !st.subscribed.has(n));
      const remove = [...st.subscribed].filter((n) => !want.has(n));
      if (add.length === 0 && remove.length === 0) continue;
      st.subscribed = new Set(want);
      for (const n of remove) st.accepted.delete(n);
      if (!this.stream) continue;
      if (this.mode === 'delta') {
        this.send({ typeUrl: t, resourceNamesSubscribe: add, resourceNamesUnsubscribe: remove });
      } else {
        this.send({ typeUrl: t, versionInfo: st.versionInfo, responseNonce: st.lastNonce, resourceNames: [...want].sort() });
      }
    }
  }

  private typeState(t: SubscribedTypeUrl): TypeState {
    const st = this.state.get(t);
    if (!st) throw new Error(`unsupported xDS type ${t}`);
    return st;
  }

  private channel(server: string): grpc.Client {
    let c = this.channels.get(server);
    if (c === undefined) {
      const secure = this.opts.credentials?.();
      c = new grpc.Client(server, secure?.credentials ?? grpc.credentials.createInsecure(), {
        ...secure?.options,
        'grpc.keepalive_time_ms': 30_000,
        'grpc.keepalive_timeout_ms': 10_000,
        'grpc.max_receive_message_length': 256 * 1024 * 1024,
      });
      this.channels.set(server, c);
    }
    return c;
  }

  /**
   * Closes a server's channel after its stream failed, so the next attempt connects afresh
   * instead of waiting out grpc-js's own reconnect backoff (up to 2 minutes).
   */
  private dropChannel(server: string): void {
    this.channels.get(server)?.close();
    this.channels.delete(server);
  }

  private openStream(): void {
    if (this.closed) return;
    const delta = this.mode === 'delta';
    const server = this.server;
    const reqType = messageType(delta ? DELTA_REQUEST : DISCOVERY_REQUEST);
    const resType = messageType(delta ? DELTA_RESPONSE : DISCOVERY_RESPONSE);
    const stream = this.channel(server).makeBidiStreamRequest<ProtoJson, ProtoJson>(
      delta ? DELTA_METHOD : SOTW_METHOD,
      (msg) => Buffer.from(encodeMessage(reqType.fullName.slice(1), msg)),
      // Resources stay as raw Any here; each is decoded on its own so one unknown type
      // NACKs that update with its name instead of failing the whole stream.
      (buf) => resType.toObject(resType.decode(buf), { longs: Number, defaults: false }) as ProtoJson,
    );
    this.stream = stream;
    this.established = false;
    let gotResponse = false;
    // grpc-js has no connect timeout: without this, a server whose host drops packets would hold
    // the proxy until TCP gives up (minutes) while the other replicas are fine. The channel is
    // kept: closing it would not abort its pending connection (grpc-js 1.14), and the next try
    // of this server waits on that same connection instead of opening another.
    const establishTimer = this.servers.length === 1 ? undefined : setTimeout(() => {
      if (this.stream !== stream || gotResponse) return;
      this.scheduleReconnect(`no answer within ${this.opts.establishTimeoutMs} ms`, false);
      stream.cancel();
    }, this.opts.establishTimeoutMs);
    establishTimer?.unref();
    stream.on('data', (msg: ProtoJson) => {
      if (this.stream !== stream) return;
      if (!gotResponse) {
        clearTimeout(establishTimer);
        gotResponse = true;
        this.established = true;
        this.failuresInRound = 0;
        this.backoffMs = this.opts.initialBackoffMs;
        this.opts.logger.info({ server, protocol: this.mode }, 'xDS stream established');
      }
      try {
        if (delta) this.onDeltaResponse(msg);
        else this.onSotwResponse(msg);
      } catch (err) {
        this.opts.logger.error({ err }, 'xDS response handling failed');
      }
    });
    stream.on('error', (err: grpc.ServiceError) => {
      clearTimeout(establishTimer);
      if (this.stream !== stream) return;
      if (delta && !gotResponse && err.code === grpc.status.UNIMPLEMENTED) {
        this.opts.logger.warn({ server }, 'xDS server has no delta ADS; using state of the world');
        this.mode = 'sotw';
        this.stream = undefined;
        this.openStream();
        return;
      }
      this.dropChannel(server);
      this.scheduleReconnect(err.details || err.message, gotResponse);
    });
    stream.on('end', () => {
      clearTimeout(establishTimer);
      if (this.stream !== stream) return;
      this.dropChannel(server);
      this.scheduleReconnect('stream ended', gotResponse);
    });
    // Initial subscriptions. On a reconnect (to the same server or another replica) say what
    // is held, as Envoy does: delta lists every resource's version (initial_resource_versions)
    // so only differences come back; state of the world repeats the last accepted version_info
    // and the subscribed names, without a nonce. Every answer is then ACKed or NACKed as usual.
    for (const t of this.subscribeOrder) {
      const st = this.typeState(t);
      const wildcard = this.wildcardTypes.includes(t);
      if (!wildcard) st.subscribed = new Set(this.opts.sink.interest(t));
      if (!wildcard && st.subscribed.size === 0) continue;
      if (delta) {
        const initialResourceVersions: Record<string, string> = {};
        for (const [name, r] of st.accepted) initialResourceVersions[name] = r.version;
        this.send({
          node: this.opts.node, typeUrl: t,
          resourceNamesSubscribe: wildcard ? [] : [...st.subscribed].sort(),
          initialResourceVersions,
        });
      } else {
        st.lastNonce = '';
        this.send({
          node: this.opts.node, typeUrl: t, versionInfo: st.versionInfo,
          resourceNames: wildcard ? [] : [...st.subscribed].sort(),
        });
      }
    }
  }

  /**
   * Moves to the next server. A working stream that is lost is followed at once (after a small
   * jitter, so a thousand proxies do not arrive together); a server that cannot be reached is
   * followed by the next at once, and when every server of the round has failed, the next round
   * waits a capped, jittered, doubling backoff.
   */
  private scheduleReconnect(reason: string, wasWorking: boolean): void {
    this.stream = undefined;
    this.established = false;
    if (this.closed) return;
    const from = this.server;
    if (wasWorking) {
      this.lostStreams++;
      this.failuresInRound = 0;
      this.backoffMs = this.opts.initialBackoffMs;
    }
    this.failuresInRound++;
    this.serverIndex = (this.serverIndex + 1) % this.servers.length;
    let delay: number;
    if (this.failuresInRound < this.servers.length) {
      delay = wasWorking ? Math.round(Math.random() * this.opts.initialBackoffMs / 2) : 0;
    } else {
      this.failuresInRound = 0;
      delay = Math.round(this.backoffMs * (0.5 + Math.random() / 2));
      this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs);
    }
    this.opts.logger.warn({ server: from, reason, next: this.server, retryInMs: delay }, 'xDS stream lost; serving last good config');
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.openStream(), delay);
    this.reconnectTimer.unref();
  }

  private send(msg: ProtoJson): void {
    this.stream?.write(msg);
  }

  private onDeltaResponse(msg: ProtoJson): void {
    const typeUrl = String(msg['typeUrl'] ?? '') as SubscribedTypeUrl;
    const nonce = String(msg['nonce'] ?? '');
    if (!this.state.has(typeUrl)) {
      this.send({ typeUrl, responseNonce: nonce, errorDetail: { code: INVALID_ARGUMENT, message: `unsupported type ${typeUrl}` } });
      return;
    }
    const st = this.typeState(typeUrl);
    const next = new Map(st.accepted);
    let error: string | undefined;
    for (const name of (msg['removedResources'] as string[] | undefined) ?? []) next.delete(name);
    for (const r of (msg['resources'] as ProtoJson[] | undefined) ?? []) {
      const name = String(r['name'] ?? '');
      const any = r['resource'] as { typeUrl?: string; value?: Uint8Array } | undefined;
      const ttlMs = ttlOf(r['ttl']);
      if (!any) {
        // Envoy's TTL: a resource with a ttl and no body refreshes the lease of the one held.
        const held = next.get(name);
        if (ttlMs !== undefined && held !== undefined) next.set(name, { ...held, ttlMs, heartbeat: true });
        else if (ttlMs === undefined) next.delete(name);
        continue;
      }
      try {
        const body = decodeResource(typeUrl, any);
        const entry: XdsResource = { name: name || String(body['name'] ?? ''), version: String(r['version'] ?? ''), resource: body };
        if (ttlMs !== undefined) entry.ttlMs = ttlMs;
        next.set(entry.name, entry);
      } catch (err) {
        error = `${shortName(typeUrl)} resource ${name}: ${(err as Error).message}`;
        break;
      }
    }
    if (!this.wildcardTypes.includes(typeUrl)) {
      for (const name of next.keys()) if (!st.subscribed.has(name)) next.delete(name);
    }
    error ??= this.applyToSink(typeUrl, next);
    this.record(typeUrl, nonce, error);
    if (error === undefined) {
      st.accepted = next;
      st.received = true;
      st.versionInfo = String(msg['systemVersionInfo'] ?? st.versionInfo);
      this.send({ typeUrl, responseNonce: nonce });
      this.refreshInterest();
    } else {
      this.send({ typeUrl, responseNonce: nonce, errorDetail: { code: INVALID_ARGUMENT, message: error } });
    }
  }

  private onSotwResponse(msg: ProtoJson): void {
    const typeUrl = String(msg['typeUrl'] ?? '') as SubscribedTypeUrl;
    const nonce = String(msg['nonce'] ?? '');
    const versionInfo = String(msg['versionInfo'] ?? '');
    if (!this.state.has(typeUrl)) {
      this.send({ typeUrl, responseNonce: nonce, errorDetail: { code: INVALID_ARGUMENT, message: `unsupported type ${typeUrl}` } });
      return;
    }
    const st = this.typeState(typeUrl);
    st.lastNonce = nonce;
    const next = new Map<string, XdsResource>();
    let error: string | undefined;
    for (const any of (msg['resources'] as { typeUrl?: string; type_url?: string; value?: Uint8Array }[] | undefined) ?? []) {
      try {
        if ((any.typeUrl ?? any.type_url) === DISCOVERY_RESOURCE_TYPE) {
          // A resource wrapped to carry a TTL; without a body it is a heartbeat for the one held.
          const w = unwrapResource(typeUrl, any.value ?? new Uint8Array());
          const held = w.body === undefined ? st.accepted.get(w.name) : undefined;
          if (w.body !== undefined) {
            const name = w.name || resourceName(typeUrl, w.body);
            next.set(name, { name, version: versionInfo, resource: w.body, ...(w.ttlMs !== undefined ? { ttlMs: w.ttlMs } : {}) });
          } else if (held !== undefined && w.ttlMs !== undefined) {
            next.set(w.name, { ...held, ttlMs: w.ttlMs, heartbeat: true });
          }
          continue;
        }
        const body = decodeResource(typeUrl, any);
        const name = resourceName(typeUrl, body);
        next.set(name, { name, version: versionInfo, resource: body });
      } catch (err) {
        error = `${shortName(typeUrl)} resource: ${(err as Error).message}`;
        break;
      }
    }
    if (!this.wildcardTypes.includes(typeUrl)) {
      // A SotW response for EDS/RDS carries only the named resources; keep ones not in
      // this response that we still want (Envoy's behaviour for non-wildcard types).
      for (const [name, r] of st.accepted) if (!next.has(name) && st.subscribed.has(name)) next.set(name, r);
    }
    error ??= this.applyToSink(typeUrl, next);
    this.record(typeUrl, nonce, error);
    const resourceNames = this.wildcardTypes.includes(typeUrl) ? [] : [...st.subscribed].sort();
    if (error === undefined) {
      st.accepted = next;
      st.received = true;
      st.versionInfo = versionInfo;
      this.send({ typeUrl, versionInfo, responseNonce: nonce, resourceNames });
      this.refreshInterest();
    } else {
      this.send({ typeUrl, versionInfo: st.versionInfo, responseNonce: nonce, resourceNames, errorDetail: { code: INVALID_ARGUMENT, message: error } });
    }
  }

  private applyToSink(typeUrl: SubscribedTypeUrl, next: ReadonlyMap<string, XdsResource>): string | undefined {
    try {
      this.opts.sink.apply(typeUrl, next);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  private record(typeUrl: SubscribedTypeUrl, nonce: string, error: string | undefined): void {
    const entry: XdsUpdateStatus = { typeUrl, nonce, accepted: error === undefined, at: Date.now() };
    if (error !== undefined) {
      entry.error = error;
      this.opts.logger.warn({ type: shortName(typeUrl), nonce, reason: error }, 'xDS update rejected (NACK); keeping last good config');
    } else {
      this.opts.logger.debug({ type: shortName(typeUrl), nonce }, 'xDS update applied (ACK)');
    }
    this.history.push(entry);
    if (this.history.length > AdsClient.HISTORY_LIMIT) this.history.shift();
  }
}

/**
 * Decodes one resource of the `expected` type. Inside a Listener, an Any whose type the
 * protos lack (a filter this proxy has never heard of) decodes to just its `@type`: the
 * listener compiler refuses a filter it does not implement, by that type, or skips it when
 * it is marked optional, as Envoy finds a filter's implementation by its type. Elsewhere an
 * unknown type fails the decode, naming the type.
 */
export function decodeResource(expected: SubscribedTypeUrl, any: { typeUrl?: string; type_url?: string; value?: Uint8Array }): ProtoJson {
  // protobufjs's built-in Any keeps the proto field name (type_url).
  const url = any.typeUrl ?? any.type_url ?? '';
  if (url !== expected) throw new Error(`resource has type ${url}, expected ${expected}`);
  return decodeMessage(url, any.value ?? new Uint8Array(), expected === LISTENER_TYPE ? typeOrOpaque : messageType);
}

/** A message type with no fields: what an Any of an unknown type decodes as (its fields dropped). */
const OPAQUE = new protobuf.Type('Opaque');
new protobuf.Root().add(OPAQUE);

function typeOrOpaque(url: string): protobuf.Type {
  try {
    return messageType(url);
  } catch {
    return OPAQUE;
  }
}

/** The short name of a type for logs and NACK reasons (CDS, …, RTDS). */
function shortName(t: SubscribedTypeUrl): string {
  return t === RUNTIME_TYPE ? 'RTDS' : SHORT_TYPE_NAMES[t];
}

/** A google.protobuf.Duration as decoded raw ({seconds, nanos}) in ms; undefined when absent or zero. */
function ttlOf(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  const d = v as { seconds?: number | string; nanos?: number };
  const ms = Number(d.seconds ?? 0) * 1000 + Number(d.nanos ?? 0) / 1e6;
  return ms > 0 ? ms : undefined;
}

/** An `envoy.service.discovery.v3.Resource` of a SotW response: its name, TTL and body (absent for a heartbeat). */
function unwrapResource(expected: SubscribedTypeUrl, bytes: Uint8Array): { name: string; ttlMs: number | undefined; body: ProtoJson | undefined } {
  const t = messageType(DISCOVERY_RESOURCE_TYPE);
  const r = t.toObject(t.decode(bytes), { longs: Number, defaults: false }) as ProtoJson;
  const any = r['resource'] as { typeUrl?: string; type_url?: string; value?: Uint8Array } | undefined;
  return { name: String(r['name'] ?? ''), ttlMs: ttlOf(r['ttl']), body: any === undefined ? undefined : decodeResource(expected, any) };
}

function resourceName(typeUrl: SubscribedTypeUrl, body: ProtoJson): string {
  if (typeUrl === NAME_TABLE_TYPE) return ''; // one table per proxy, unnamed (as istiod sends it)
  const name = typeUrl === ENDPOINT_TYPE ? body['clusterName'] : body['name'];
  if (typeof name !== 'string' || name === '') throw new Error('resource without a name');
  return name;
}
