// The ADS server: accepts state-of-the-world and delta streams, answers subscriptions from
// the current PushContext, and fans each debounced change out to the proxies it concerns.
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { abbreviateTo } from '../../api/index.ts';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, NAME_TABLE_TYPE, PUSH_ORDER, ROUTE_TYPE, RUNTIME_TYPE } from '../../envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../envoy/index.ts';
import type { ConfigChange, Generators, Proxy, PushContext, PushPlan } from '../model.ts';
import { PushQueue } from '../push/queue.ts';
import { typeLabel } from '../metrics.ts';
import type { PilotMetrics } from '../metrics.ts';
import { ResourceCache, ResponseBodyCache } from './cache.ts';
import type { EncodedResource } from './cache.ts';
import { Connection, nonceSeq } from './connection.ts';
import type { WatchedResource, XdsProtocol } from './connection.ts';
import { controlPlaneField, deltaResponse, nodeToJson, sotwResponse } from './wire.ts';
import type { DeltaRequest, SerializedResponse, SotwRequest } from './wire.ts';
import { handleSotwRequest } from './sotw.ts';
import { handleDeltaRequest } from './delta.ts';
import { RuntimeDiscovery } from './runtime.ts';

const KNOWN_TYPES: ReadonlySet<string> = new Set(PUSH_ORDER);
/** The longest the listeners and routes of a push wait for the endpoints of the new clusters they may use. */
export const WARM_WAIT_MS = 2000;
/**
 * Longest planning runs before yielding to the event loop (ms). A slice, not a count of
 * proxies: an endpoint-only plan costs a lookup per proxy (a thousand fit in one slice), a
 * config change's may cost a scope computation each.
 */
const PLAN_SLICE_MS = 4;
/**
 * The most characters of a NACK's error_detail kept (in status and CSDS) and logged: Envoy's
 * messages name every resource it refused and can run to megabytes, and a proxy may send anything.
 */
export const NACK_MESSAGE_MAX_CHARS = 4096;

/** LDS, CDS and NDS: the types whose empty first request means "everything" (legacy wildcard; NDS as istiod has it). */
export function isWildcardType(typeUrl: string): boolean {
  return typeUrl === LISTENER_TYPE || typeUrl === CLUSTER_TYPE || typeUrl === NAME_TABLE_TYPE;
}

export interface DiscoveryServerOptions {
  generators: Generators;
  logger: Logger;
  metrics: PilotMetrics;
  /** Proxies pushed at once (default 64). */
  pushConcurrency?: number;
  /**
   * Responses being generated and written at once, across all streams, requests and pushes
   * alike (default 32). Bounds the memory held by encoded responses waiting for slow readers:
   * a full-mesh CDS can be megabytes, and a thousand proxies connect at the same moment.
   */
  maxConcurrentResponses?: number;
  /** Streams accepted at once; more are refused with RESOURCE_EXHAUSTED (default 20,000). */
  maxConnections?: number;
  /** Sent as `control_plane.identifier` in every response. */
  controlPlaneId?: string;
  /**
   * Decides whether a stream may speak for its node (the closed control plane: the client
   * certificate's identity against the node's namespace); throws ConnectionRefusedError to refuse.
   */
  authorize?: (call: ServerDuplexStream<unknown, Buffer>, proxy: Proxy) => void;
}

/** Why a type is being answered: a request (subscription) or a push (config change). */
export interface RespondReason {
  kind: 'request' | 'push';
  /** Only these names need regenerating (partial push or newly subscribed names). */
  only?: ReadonlySet<string>;
  /** Send these even when their content did not change (EDS after its cluster). */
  force?: ReadonlySet<string>;
  /** Names the proxy subscribed to just now; delta reports the missing ones as removed. */
  newlySubscribed?: ReadonlySet<string>;
  /** Config event time behind a push, for convergence. */
  eventAt?: number;
}

/** What one response carried, for the caller's follow-ups (EDS after CDS). */
export interface RespondResult {
  sent: boolean;
  /** Names whose content was (re)sent. */
  changed: string[];
  /** EDS service names of the clusters (re)sent, when the type is CDS. */
  edsServiceNames: string[];
}

const NOTHING_SENT: RespondResult = { sent: false, changed: [], edsServiceNames: [] };

export class DiscoveryServer {
  readonly connections = new Map<string, Connection>();
  readonly cache = new ResourceCache();
  readonly bodies = new ResponseBodyCache();
  /** RTDS: Runtime resources from the controllers' source, leased and heartbeated (runtime.ts). */
  readonly runtime: RuntimeDiscovery;
  readonly generators: Generators;
  readonly logger: Logger;
  readonly metrics: PilotMetrics;
  private current: PushContext | undefined;
  private readonly readyPromise: Promise<PushContext>;
  private resolveReady!: (push: PushContext) => void;
  private readonly queue: PushQueue<Connection>;
  private readonly maxConnections: number;
  private readonly controlPlaneSotw: Buffer;
  private readonly controlPlaneDelta: Buffer;
  private connectionSeq = 0;
  private readonly responseSlots: Semaphore;
  private readonly authorize: DiscoveryServerOptions['authorize'];
  /** Per-proxy convergence of the last pushes, bounded to the connected proxies. */
  lastPush: { version: string; at: number; keys: string[]; endpointsOnly: boolean; proxies: number } | undefined;

  constructor(options: DiscoveryServerOptions) {
    this.generators = options.generators;
    this.logger = options.logger;
    this.metrics = options.metrics;
    this.maxConnections = options.maxConnections ?? 20_000;
    this.authorize = options.authorize;
    this.responseSlots = new Semaphore(options.maxConcurrentResponses ?? 32);
    const id = options.controlPlaneId ?? 'sextant-pilot';
    this.controlPlaneSotw = controlPlaneField(6, id);
    this.controlPlaneDelta = controlPlaneField(7, id);
    this.runtime = new RuntimeDiscovery({
      connections: this.connections,
      controlPlaneSotw: this.controlPlaneSotw,
      controlPlaneDelta: this.controlPlaneDelta,
      send: (con, w, body, version, nonce, reason, started) => this.send(con, w, body, version, nonce, reason, started),
      logger: this.logger,
    });
    this.readyPromise = new Promise((resolve) => (this.resolveReady = resolve));
    this.queue = new PushQueue<Connection>({
      concurrency: options.pushConcurrency ?? 64,
      push: (con, plan, eventAt) => this.pushWarm(con, plan, eventAt),
      onError: (con, err) => this.logger.error({ proxy: con.proxy.id, connection: con.id, err: errorMessage(err) }, 'push failed'),
    });
  }

  /** The snapshot being served; undefined before the first. */
  get pushContext(): PushContext | undefined {
    return this.current;
  }

  get ready(): boolean {
    return this.current !== undefined;
  }

  /** Installs the first snapshot; streams that connected earlier are answered now. */
  start(push: PushContext): void {
    if (this.current !== undefined) throw new Error('DiscoveryServer.start called twice');
    this.current = push;
    this.updateGauges(push);
    this.resolveReady(push);
  }

  /**
   * Installs a new snapshot after `change` and queues a push to every proxy it concerns (as
   * decided by Generators.planPush). Planning yields to the event loop every few
   * milliseconds, so the first concerned proxies are pushed, and ACKs are read, while the rest
   * are planned. Resolves with the number of proxies queued.
   */
  async applyChange(after: PushContext, change: ConfigChange, eventAt: number): Promise<number> {
    const before = this.current;
    if (before === undefined) {
      this.start(after);
      return 0;
    }
    this.current = after;
    this.updateGauges(after);
    let queued = 0;
    let sliceStart = performance.now();
    for (const con of [...this.connections.values()]) {
      if (performance.now() - sliceStart > PLAN_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
      if (con.closed) continue;
      let plan: PushPlan | null;
      try {
        plan = this.generators.planPush(before, after, change, con.proxy);
      } catch (err) {
        this.logger.error({ proxy: con.proxy.id, err: errorMessage(err) }, 'planning push failed; pushing everything');
        plan = { types: new Set(PUSH_ORDER) };
      }
      if (plan === null || plan.types.size === 0) continue;
      this.queue.enqueue(con, plan, eventAt);
      queued++;
    }
    this.metrics.pushTriggers.inc({ type: change.endpointsOnly ? 'endpoint' : 'config' });
    this.lastPush = { version: after.version, at: Date.now(), keys: [...change.keys].slice(0, 100), endpointsOnly: change.endpointsOnly, proxies: queued };
    this.logger.info({ version: after.version, keys: change.keys.size, endpointsOnly: change.endpointsOnly, proxies: queued }, 'push queued');
    return queued;
  }

  queueStats(): { queued: number; running: number } {
    return { queued: this.queue.size, running: this.queue.running };
  }

  /** Resolves when every queued push has been written. */
  pushesIdle(): Promise<void> {
    return this.queue.idle();
  }

  private updateGauges(push: PushContext): void {
    this.metrics.services.set(push.stats.services);
    this.metrics.virtualServices.set(push.stats.virtualServices);
  }

  // --- streams ---

  handleSotwStream(call: ServerDuplexStream<SotwRequest, Buffer>): void {
    this.handleStream(call, 'sotw', (con, req) => handleSotwRequest(this, con, req));
  }

  handleDeltaStream(call: ServerDuplexStream<DeltaRequest, Buffer>): void {
    this.handleStream(call, 'delta', (con, req) => handleDeltaRequest(this, con, req));
  }

  private handleStream<R extends { node?: unknown; typeUrl: string }>(
    call: ServerDuplexStream<R, Buffer>,
    protocol: XdsProtocol,
    handle: (con: Connection, req: R) => Promise<void>,
  ): void {
    let con: Connection | undefined;
    let failed = false;
    const fail = (code: GrpcStatus, details: string): void => {
      if (failed) return;
      failed = true;
      call.emit('error', { code, details });
    };
    call.on('data', (req: R) => {
      if (failed) return;
      if (con === undefined) {
        try {
          con = this.connect(call, protocol, req.node);
        } catch (err) {
          this.logger.warn({ peer: call.getPeer(), err: errorMessage(err) }, 'xDS stream refused');
          fail(err instanceof ConnectionRefusedError ? err.code : GrpcStatus.INVALID_ARGUMENT, errorMessage(err));
          return;
        }
      }
      const c = con;
      c.run(async () => {
        await this.readyPromise;
        await handle(c, req);
      }).catch((err: unknown) => {
        this.logger.error({ proxy: c.proxy.id, connection: c.id, typeUrl: req.typeUrl, err: errorMessage(err) }, 'xDS request failed');
        fail(GrpcStatus.INTERNAL, errorMessage(err));
      });
    });
    const close = (): void => {
      if (con !== undefined) this.disconnect(con);
      con = undefined;
    };
    call.on('end', () => {
      close();
      if (!failed) call.end();
    });
    call.on('cancelled', close);
    call.on('close', close);
    call.on('error', close);
  }

  private connect(call: ServerDuplexStream<unknown, Buffer>, protocol: XdsProtocol, node: unknown): Connection {
    if (node === undefined || node === null) throw new Error('the first request on an xDS stream must carry the node');
    if (this.connections.size >= this.maxConnections) {
      throw new ConnectionRefusedError(GrpcStatus.RESOURCE_EXHAUSTED, `connection limit ${this.maxConnections} reached`);
    }
    const nodeJson = nodeToJson(node);
    let proxy: Proxy;
    try {
      proxy = this.generators.proxyFromNode(nodeJson);
    } catch (err) {
      throw new Error(`invalid node ${JSON.stringify(nodeJson['id'] ?? '')}: ${errorMessage(err)}`, { cause: err });
    }
    this.authorize?.(call, proxy);
    this.connectionSeq++;
    const con = new Connection(`${proxy.id}-${this.connectionSeq}`, proxy, protocol, nodeJson, call.getPeer(), call);
    this.connections.set(con.id, con);
    this.metrics.xdsConnections.inc({ version: 'sextant' });
    this.logger.info({ proxy: proxy.id, connection: con.id, protocol, peer: con.peer }, 'proxy connected');
    return con;
  }

  private disconnect(con: Connection): void {
    if (con.closed) return;
    con.closed = true;
    this.connections.delete(con.id);
    this.queue.remove(con);
    this.metrics.xdsConnections.dec({ version: 'sextant' });
    this.logger.info({ proxy: con.proxy.id, connection: con.id }, 'proxy disconnected');
  }

  // --- responses ---

  /**
   * Make before break: when the clusters pushed include ones whose endpoints the proxy has not
   * asked for yet (new EDS clusters), the listeners and routes that may use them wait until the
   * proxy has subscribed to their endpoints and acknowledged them (at most WARM_WAIT_MS), so no
   * request meets a cluster without endpoints. The stream serves requests meanwhile.
   */
  private async pushWarm(con: Connection, plan: PushPlan, eventAt: number): Promise<void> {
    let cold: string[] = [];
    await con.run(async () => { cold = await this.pushPlan(con, plan, eventAt, 'clusters'); });
    if (cold.length > 0 && (plan.types.has(LISTENER_TYPE) || plan.types.has(ROUTE_TYPE))) await this.edsWarm(con, cold);
    await con.run(async () => { await this.pushPlan(con, plan, eventAt, 'rest'); });
  }

  /** Resolves once the proxy subscribed to every EDS name in `names` and acknowledged what it was sent, or after WARM_WAIT_MS. */
  private async edsWarm(con: Connection, names: readonly string[]): Promise<void> {
    const deadline = Date.now() + WARM_WAIT_MS;
    while (!con.closed && Date.now() < deadline) {
      const e = con.watched.get(ENDPOINT_TYPE);
      if (e === undefined) return;
      const subscribed = e.wildcard || names.every((n) => e.names.has(n));
      if (subscribed && e.nonceSent !== undefined && e.nonceAcked === e.nonceSent) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * Pushes a planned change to one proxy, types in CDS, EDS, LDS, RDS order (`phase`: only CDS
   * and EDS, or only the rest). Returns the EDS names of pushed clusters the proxy has not
   * subscribed to yet (it will ask for them).
   */
  async pushPlan(con: Connection, plan: PushPlan, eventAt: number, phase: 'all' | 'clusters' | 'rest' = 'all'): Promise<string[]> {
    let forcedEds: Set<string> | undefined;
    const cold: string[] = [];
    for (const typeUrl of PUSH_ORDER) {
      const early = typeUrl === CLUSTER_TYPE || typeUrl === ENDPOINT_TYPE;
      if ((phase === 'clusters' && !early) || (phase === 'rest' && early)) continue;
      const w = con.watched.get(typeUrl);
      // Not subscribed, or not answered yet (the pending request will be answered in full).
      if (w === undefined || w.nonceSent === undefined) continue;
      if (typeUrl === ENDPOINT_TYPE) {
        if (!plan.types.has(ENDPOINT_TYPE) && forcedEds === undefined) continue;
        let only: Set<string> | undefined;
        if (plan.types.has(ENDPOINT_TYPE)) only = plan.edsClusters === undefined ? undefined : new Set(plan.edsClusters);
        else only = new Set();
        if (only !== undefined && forcedEds !== undefined) for (const n of forcedEds) only.add(n);
        const reason: RespondReason = { kind: 'push', eventAt };
        if (only !== undefined) reason.only = only;
        if (forcedEds !== undefined) reason.force = forcedEds;
        await this.respond(con, w, reason);
        continue;
      }
      if (!plan.types.has(typeUrl)) continue;
      const result = await this.respond(con, w, { kind: 'push', eventAt });
      if (typeUrl === CLUSTER_TYPE && result.edsServiceNames.length > 0) {
        forcedEds = new Set(result.edsServiceNames);
        const e = con.watched.get(ENDPOINT_TYPE);
        if (e !== undefined && e.nonceSent !== undefined && !e.wildcard) for (const n of result.edsServiceNames) if (!e.names.has(n)) cold.push(n);
      }
    }
    return cold;
  }

  /**
   * Generates `w.typeUrl` for the proxy and sends what the protocol requires: for SotW LDS/CDS
   * the whole set when its version changed; otherwise only resources whose version differs
   * from what the proxy holds (and, for delta, the names that disappeared).
   */
  async respond(con: Connection, w: WatchedResource, reason: RespondReason): Promise<RespondResult> {
    // A slot bounds responses being generated and encoded, not those waiting for a slow
    // proxy to take its bytes: a full-mesh response drains through HTTP/2 flow control for
    // seconds, and holding the slot meanwhile would stall every other proxy. The stream's
    // own back-pressure still holds this connection's next response until the write drains.
    await this.responseSlots.acquire();
    let drained: Promise<void> | undefined;
    let result: RespondResult;
    try {
      result = await this.respondNow(con, w, reason, (d) => (drained = d));
    } finally {
      this.responseSlots.release();
    }
    if (drained !== undefined) await drained;
    return result;
  }

  private async respondNow(con: Connection, w: WatchedResource, reason: RespondReason, onWrite: (drained: Promise<void>) => void): Promise<RespondResult> {
    const push = this.current;
    if (w.typeUrl === RUNTIME_TYPE) return await this.runtime.respond(con, w, reason);
    if (push === undefined || !KNOWN_TYPES.has(w.typeUrl)) return NOTHING_SENT;
    const typeUrl = w.typeUrl as XdsTypeUrl;
    const started = performance.now();
    const first = w.nonceSent === undefined;
    const fullState = con.protocol === 'sotw' && isWildcardType(typeUrl);

    let names: ReadonlySet<string> | undefined;
    if (fullState) names = w.wildcard ? undefined : w.names;
    else if (w.wildcard) names = reason.only;
    else names = reason.only === undefined ? w.names : intersect(reason.only, w.names);
    if (names !== undefined && names.size === 0 && !first && reason.newlySubscribed === undefined) return NOTHING_SENT;

    const generated = names !== undefined && names.size === 0 ? new Map<string, ProtoJson>() : this.generators.generate(push, con.proxy, typeUrl, names);
    const edsServiceNames: string[] = [];
    const changed: EncodedResource[] = [];
    const removed: string[] = [];

    if (fullState) {
      const entries: EncodedResource[] = [];
      // Versions, not identities: generators may rebuild an unchanged resource as a new object.
      const previous = new Set(w.lastFull.map((e) => e.version));
      w.acc.reset();
      for (const [name, resource] of generated) {
        if (!w.wildcard && !w.names.has(name)) continue;
        const e = this.cache.encode(typeUrl, name, resource);
        entries.push(e);
        w.acc.add(e.digest);
        if (!previous.has(e.version)) {
          changed.push(e);
          if (typeUrl === CLUSTER_TYPE) edsServiceNames.push(edsServiceName(name, resource));
        }
      }
      const version = w.acc.version;
      if (!first && reason.kind === 'push' && version === w.versionSent) return NOTHING_SENT;
      w.lastFull = entries;
      const nonce = con.nextNonce();
      const body = this.bodies.get(`${typeUrl}|sotw|${version}`, () => Buffer.concat(entries.map((e) => e.sotwField)));
      onWrite(this.send(con, w, sotwResponse(version, body, typeUrl, nonce, this.controlPlaneSotw), version, nonce, reason, started));
      return { sent: true, changed: changed.map((e) => e.name), edsServiceNames };
    }

    for (const [name, resource] of generated) {
      if (!w.wildcard && !w.names.has(name)) continue;
      const e = this.cache.encode(typeUrl, name, resource);
      const previous = w.sent.get(name);
      if (previous !== undefined && previous.stub === true && previous.version === e.version && reason.force?.has(name) !== true) {
        // The proxy announced this version when it (re)connected: adopt it without resending.
        w.sent.set(name, e);
        w.acc.add(e.digest);
        continue;
      }
      if (previous === undefined || previous.version !== e.version || reason.force?.has(name) === true) {
        changed.push(e);
        if (previous !== undefined) w.acc.remove(previous.digest);
        w.acc.add(e.digest);
        w.sent.set(name, e);
        if (typeUrl === CLUSTER_TYPE) edsServiceNames.push(edsServiceName(name, resource));
      }
    }
    // What the proxy holds that the scope no longer has.
    const scope: Iterable<string> = names ?? w.sent.keys();
    for (const name of scope) {
      const previous = w.sent.get(name);
      if (previous !== undefined && !generated.has(name)) {
        removed.push(name);
        w.acc.remove(previous.digest);
        w.sent.delete(name);
      }
    }
    if (con.protocol === 'delta' && reason.newlySubscribed !== undefined) {
      // Tell the proxy at once that a name it asked for does not exist.
      for (const name of reason.newlySubscribed) if (!generated.has(name) && !removed.includes(name) && name !== '*') removed.push(name);
    }
    if (!first && changed.length === 0 && removed.length === 0) return NOTHING_SENT;
    const version = w.acc.version;
    const nonce = con.nextNonce();
    if (typeUrl === ENDPOINT_TYPE) {
      const seq = nonceSeq(nonce);
      w.sentSeq ??= new Map();
      for (const e of changed) w.sentSeq.set(e.name, seq);
      for (const n of removed) w.sentSeq.delete(n);
    }
    const delta = con.protocol === 'delta';
    const assemble = (): Buffer => Buffer.concat(changed.map((e) => (delta ? this.cache.deltaField(e) : e.sotwField)));
    // A response carrying the proxy's whole set is shared by every proxy holding the same set.
    const complete = removed.length === 0 && changed.length === w.sent.size;
    const resources = complete ? this.bodies.get(`${typeUrl}|${con.protocol}|${version}`, assemble) : assemble();
    const body = delta
      ? deltaResponse(version, resources, typeUrl, nonce, removed, this.controlPlaneDelta)
      : sotwResponse(version, resources, typeUrl, nonce, this.controlPlaneSotw);
    onWrite(this.send(con, w, body, version, nonce, reason, started));
    return { sent: true, changed: changed.map((e) => e.name), edsServiceNames };
  }

  private async send(con: Connection, w: WatchedResource, body: SerializedResponse, version: string, nonce: string, reason: RespondReason, started: number): Promise<void> {
    w.nonceSent = nonce;
    w.versionSent = version;
    w.sentAt = Date.now();
    w.responses++;
    w.bytesSent += body.length;
    if (reason.eventAt !== undefined) w.pendingEventTime = Math.min(w.pendingEventTime ?? reason.eventAt, reason.eventAt);
    await con.write(body);
    const type = typeLabel(w.typeUrl);
    this.metrics.xdsPushes.inc({ type });
    this.metrics.pushTime.observe({ type }, (performance.now() - started) / 1000);
    this.logger.debug({ proxy: con.proxy.id, type, version, nonce, bytes: body.length, reason: reason.kind }, 'xDS response sent');
  }

  /** Records an ACK or NACK of `nonce` (the caller checked it is the latest nonce sent). */
  recordAck(con: Connection, w: WatchedResource, nonce: string, versionInfo: string, error: { code?: number; message?: string } | null | undefined): void {
    const now = Date.now();
    // proto3 decodes an absent message as '': a NACK has a message or a non-zero code.
    const text = error?.message ?? '';
    if (text !== '' || (error?.code ?? 0) !== 0) {
      const message = abbreviateTo(text !== '' ? text : `code ${error?.code ?? 0}`, NACK_MESSAGE_MAX_CHARS);
      w.nack = { message, nonce, version: w.versionSent ?? versionInfo, at: now };
      this.metrics.xdsRejects.inc({ type: typeLabel(w.typeUrl) });
      this.logger.warn({ proxy: con.proxy.id, connection: con.id, type: typeLabel(w.typeUrl), nonce, version: w.versionSent, error: message }, 'xDS response rejected (NACK)');
      w.pendingEventTime = undefined;
      return;
    }
    w.nonceAcked = nonce;
    w.versionAcked = versionInfo === '' ? w.versionSent : versionInfo;
    w.ackedAt = now;
    if (w.pendingEventTime !== undefined) {
      const ms = now - w.pendingEventTime;
      w.pendingEventTime = undefined;
      con.lastConvergenceMs = ms;
      this.metrics.convergenceTime.observe(ms / 1000);
    }
  }

  close(): void {
    this.runtime.close();
    for (const con of this.connections.values()) this.disconnect(con);
  }
}

/** A counting semaphore: at most `limit` holders, the rest wait in arrival order. */
class Semaphore {
  private available: number;
  private readonly waiting: (() => void)[] = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`invalid concurrency ${limit}: must be an integer >= 1`);
    this.available = limit;
  }

  acquire(): Promise<void> {
    if (this.available > 0) {
      this.available--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next !== undefined) next();
    else this.available++;
  }
}

export class ConnectionRefusedError extends Error {
  readonly code: GrpcStatus;
  constructor(code: GrpcStatus, message: string) {
    super(message);
    this.name = 'ConnectionRefusedError';
    this.code = code;
  }
}

function intersect(a: ReadonlySet<string>, b: ReadonlySet<string>): Set<string> {
  const out = new Set<string>();
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  for (const x of small) if (large.has(x)) out.add(x);
  return out;
}

/** The name EDS knows a cluster by: `eds_cluster_config.service_name`, else the cluster name. */
function edsServiceName(clusterName: string, cluster: ProtoJson): string {
  const eds = cluster['edsClusterConfig'] as { serviceName?: string } | undefined;
  return eds?.serviceName !== undefined && eds.serviceName !== '' ? eds.serviceName : clusterName;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

