// Binds the listeners the control plane sends (only those: a port without a listener never
// accepts), picks a filter chain per connection (original-destination hand-off, port,
// address and protocol sniffing), and runs the chain: the HTTP connection manager over the
// HTTP/1 codec and the router, or tcp_proxy. Drains on shutdown.
import net from 'node:net';
import type pino from 'pino';
import { serveHttp1 } from '../http/index.ts';
import type { DownstreamRequest, Http1Limits } from '../http/index.ts';
import { grpcStatusOf, isGrpcRequest, serveHttp2 } from '../http2/index.ts';
import type { RuntimeConfig } from '../config/runtime.ts';
import type { Cluster } from '../cluster/cluster.ts';
import { routeRequest } from '../router/router.ts';
import type { RouteOutcome, RouterContext, UpstreamDispatch } from '../router/router.ts';
import { connectionSubject, evaluateRbac } from '../filters/rbac/index.ts';
import type { LocalRateLimits } from '../filters/local-ratelimit/index.ts';
import type { AdmissionGates } from '../filters/admission/index.ts';
import { LaneState, markMeshPeer } from '../filters/lanes/index.ts';
import { WasmHost } from '../filters/wasm/index.ts';
import type { AccessLogWriter } from '../telemetry/access-log.ts';
import type { IstioMetrics } from '../telemetry/metrics.ts';
import { defaultStatsConfig } from '../telemetry/stats-config.ts';
import { PeerCache, RequestLabelCache, requestLabels, stripPeerHeaders } from '../telemetry/peer.ts';
import { RequestOperations } from '../telemetry/request-operation.ts';
import type { WorkloadInfo } from '../telemetry/peer.ts';
import type { RawHeader } from '../http/index.ts';
import type { FilterChainSpec, HttpConnectionManagerSpec, ListenerSpec, PrefixRange, TcpProxySpec } from './listener-spec.ts';
import { scopeKeyOf } from './listener-spec.ts';
import { BLACKHOLE_CLUSTER } from '../../envoy/index.ts';
import { OriginalDstResolver, UNKNOWN_ADDRESS, reachesListener } from './original-dst.ts';
import type { LocalListeners } from './original-dst.ts';
import { TLSSocket } from 'node:tls';
import { acceptTls, looksLikeTls } from '../tls/downstream.ts';
import { acceptServerTls } from '../tls/server-accept.ts';
import type { ServerCredentials } from '../tls/server-credentials.ts';
import { needsClientHello, readClientHello, selectTlsChain } from './tls-chains.ts';
import type { DownstreamTlsOptions } from '../tls/downstream.ts';
import type { UpstreamTls } from '../tls/upstream.ts';
import { capturedDestination } from '../../inject/iptables/index.ts';

export interface ListenerManagerOptions {
  config: RuntimeConfig;
  upstream: UpstreamDispatch;
  logger: pino.Logger;
  metrics: IstioMetrics;
  accessLog: AccessLogWriter;
  self: WorkloadInfo;
  /** Peer metadata headers added to outbound mesh requests. */
  peerHeaders: readonly RawHeader[];
  limits: Http1Limits;
  retryBufferBytes: number;
  /** The workload certificate for mesh mTLS chains (src/proxy/tls); absent, such chains refuse connections. */
  tls?: DownstreamTlsOptions;
  /** mTLS for tcp_proxy to TLS clusters; absent, such connections fail ('UF'). */
  upstreamTls?: UpstreamTls;
  /** A gateway's certificates (SDS secrets, files) for its TLS chains; absent, such chains refuse connections. */
  credentials?: ServerCredentials;
  /**
   * Traffic is captured by `sextant iptables` (INTERCEPTION_MODE REDIRECT): a connection the
   * NAT rules sent to a capture port has its original destination restored from the address
   * it arrived at (see restoreOriginalDestination).
   */
  capture?: { workloadAddress: string };
  /** The proxy's local rate limit buckets and stats (src/proxy/filters/local-ratelimit); absent, such filters refuse nothing. */
  localRateLimits?: LocalRateLimits;
  /** The admission gates (src/proxy/filters/admission); absent, the admission filter admits everything. */
  admission?: AdmissionGates;
  /** The proxy's WASM host (src/proxy/filters/wasm); absent, the manager keeps one of its own. */
  wasm?: WasmHost;
}

interface BoundListener {
  name: string;
  address: string;
  port: number;
  server: net.Server;
  ready: Promise<void>;
}

const SNIFF_TIMEOUT_MS = 5000;
/** A listener that failed to bind (its port taken) is tried again after this, doubling up to the cap. */
const BIND_RETRY_FIRST_MS = 500;
const BIND_RETRY_MAX_MS = 30_000;
const HTTP_METHOD_RE = /^[A-Z]{3,10} \S+ HTTP\/1\.([01])\r?\n/;

export class ListenerManager implements LocalListeners {
  private readonly opts: ListenerManagerOptions;
  private readonly bound = new Map<string, BoundListener>();
  /** Connections accepted per listener name (Envoy's downstream_cx_total). */
  private readonly accepted = new Map<string, number>();
  /** Passthrough destinations, never one of these listeners. */
  readonly originalDst: OriginalDstResolver = new OriginalDstResolver(this);
  private readonly connections = new Set<net.Socket>();
  /** HTTP connections being served (HTTP/1 codec or HTTP/2 session), drained on shutdown. */
  private readonly httpConnections = new Set<{ drain(): void }>();
  private readonly peers = new PeerCache();
  private readonly labels = new RequestLabelCache();
  /** `request_operation`, when a stats config asks for it (bounded per service). */
  readonly operations = new RequestOperations();
  private readonly routerContexts = new WeakMap<HttpConnectionManagerSpec, RouterContext>();
  /** Router contexts of scoped-route connection managers, by route configuration name. */
  private readonly scopedContexts = new WeakMap<HttpConnectionManagerSpec, Map<string, RouterContext>>();
  /** The connection manager whose limits a router context carries (its filters and gate are bound from it). */
  private readonly limitSpecs = new WeakMap<RouterContext, HttpConnectionManagerSpec>();
  private draining = false;
  /** Requests being handled now (for drain). */
  inFlight = 0;
  /** HTTP requests received so far. */
  served = 0;
  private idleWaiters: (() => void)[] = [];
  /** Connections refused by mesh mTLS: a failed handshake, an untrusted or unacceptable peer, no certificate yet. */
  tlsRefused = 0;
  /** Why the last mTLS connection was refused. */
  lastTlsRefusal: string | undefined;
  private readonly bindErrors = new Map<string, string>();
  /** Listeners that failed to bind: the address they wanted and the next wait before trying again. */
  private readonly bindRetries = new Map<string, { address: string; port: number; waitMs: number }>();
  private bindRetryTimer: NodeJS.Timeout | undefined;
  /** The lanes filters' trace table and lane counters, one per proxy (src/proxy/filters/lanes). */
  readonly lanes = new LaneState();
  /** Runs the connection managers' WASM filters (src/proxy/filters/wasm). */
  readonly wasm: WasmHost;

  constructor(opts: ListenerManagerOptions) {
    this.opts = opts;
    this.wasm = opts.wasm ?? new WasmHost({ logger: opts.logger });
  }

  /** Listener name → bound address:port (for /listeners and tests). */
  boundAddresses(): Map<string, string> {
    return new Map([...this.bound.values()].map((b) => {
      const a = b.server.address() as net.AddressInfo | null;
      return [b.name, a ? `${a.address}:${a.port}` : `${b.address}:${b.port}`];
    }));
  }

  get errors(): ReadonlyMap<string, string> {
    return this.bindErrors;
  }

  /** Listener name → connections accepted since the proxy started. */
  acceptedConnections(): ReadonlyMap<string, number> {
    return this.accepted;
  }

  /** The loop guard: true when a connection to `address:port` would reach one of these listeners. */
  listensOn(address: string, port: number): boolean {
    return reachesListener(this.bound.values(), address, port);
  }

  /** Brings the bound sockets in line with the config's listeners. Resolves once all are bound. */
  async reconcile(): Promise<void> {
    if (this.draining) return;
    const want = new Map<string, ListenerSpec>();
    for (const l of this.opts.config.listeners.values()) if (l.bindToPort) want.set(l.name, l);
    for (const name of this.bindErrors.keys()) {
      if (!want.has(name)) {
        this.bindErrors.delete(name);
        this.bindRetries.delete(name);
      }
    }
    for (const [name, b] of this.bound) {
      const spec = want.get(name);
      if (!spec || spec.address !== b.address || spec.port !== b.port) {
        b.server.close();
        this.bound.delete(name);
        if (!spec) this.accepted.delete(name); // a removed listener's stats go with it, as Envoy's do
      }
    }
    const pending: Promise<void>[] = [];
    for (const spec of want.values()) {
      if (this.bound.has(spec.name)) continue;
      const server = net.createServer({ noDelay: true, pauseOnConnect: false }, (socket) => this.onConnection(spec.name, socket));
      const ready = new Promise<void>((resolve) => {
        server.once('error', (err) => {
          this.bindErrors.set(spec.name, err.message);
          const retryInMs = this.scheduleBindRetry(spec);
          this.opts.logger.error({ listener: spec.name, address: `${spec.address}:${spec.port}`, err: err.message, retryInMs }, 'listener failed to bind; trying again');
          if (this.bound.get(spec.name)?.server === server) this.bound.delete(spec.name);
          resolve();
        });
        server.listen({ host: spec.address, port: spec.port, backlog: 1024 }, () => {
          this.bindErrors.delete(spec.name);
          this.bindRetries.delete(spec.name);
          this.opts.logger.info({ listener: spec.name, address: `${spec.address}:${spec.port}` }, 'listener bound');
          resolve();
        });
      });
      this.bound.set(spec.name, { name: spec.name, address: spec.address, port: spec.port, server, ready });
      pending.push(ready);
    }
    await Promise.all(pending);
  }

  /**
   * A port taken by another process now may be free in a moment (a client's ephemeral port, a
   * process on its way out): the listener is bound again after a backoff, with no config change
   * needed (Envoy leaves it unbound until the next LDS update). Returns the wait.
   */
  private scheduleBindRetry(spec: ListenerSpec): number {
    const prev = this.bindRetries.get(spec.name);
    const same = prev !== undefined && prev.address === spec.address && prev.port === spec.port;
    const waitMs = same ? Math.min(prev.waitMs * 2, BIND_RETRY_MAX_MS) : BIND_RETRY_FIRST_MS;
    this.bindRetries.set(spec.name, { address: spec.address, port: spec.port, waitMs });
    if (this.bindRetryTimer === undefined && !this.draining) {
      this.bindRetryTimer = setTimeout(() => {
        this.bindRetryTimer = undefined;
        // only listeners still wanted, at the address that failed (a changed one was bound by its update)
        for (const name of this.bindRetries.keys()) if (!this.opts.config.listeners.has(name)) this.bindRetries.delete(name);
        void this.reconcile();
      }, Math.min(...[...this.bindRetries.values()].map((r) => r.waitMs)));
      this.bindRetryTimer.unref();
    }
    return waitMs;
  }

  /** Stops accepting, lets in-flight requests finish within `drainMs`, then closes everything. */
  async drain(drainMs: number): Promise<void> {
    this.draining = true;
    clearTimeout(this.bindRetryTimer);
    this.bindRetryTimer = undefined;
    for (const b of this.bound.values()) b.server.close();
    this.bound.clear();
    for (const c of this.httpConnections) c.drain();
    if (this.inFlight > 0) {
      await Promise.race([
        new Promise<void>((r) => this.idleWaiters.push(r)),
        new Promise<void>((r) => setTimeout(r, drainMs).unref()),
      ]);
    }
    for (const s of this.connections) s.destroy();
  }

  private onConnection(listenerName: string, socket: net.Socket): void {
    this.accepted.set(listenerName, (this.accepted.get(listenerName) ?? 0) + 1);
    if (this.draining) {
      socket.destroy();
      return;
    }
    this.connections.add(socket);
    socket.once('close', () => this.connections.delete(socket));
    socket.on('error', () => { /* reported per request */ });
    let spec = this.opts.config.listeners.get(listenerName);
    if (!spec) {
      socket.destroy();
      return;
    }
    if (this.opts.capture !== undefined) restoreOriginalDestination(socket, this.opts.capture.workloadAddress);
    // Envoy's use_original_dst: hand the connection to the listener for its destination.
    if (spec.useOriginalDst) spec = this.originalDstListener(socket) ?? spec;
    const candidates = this.candidateChains(spec, socket);
    if (candidates.length === 0) {
      socket.destroy();
      return;
    }
    // Envoy's tls_inspector: TLS chains are told from plaintext ones by the first bytes.
    const anyTls = candidates.some(isTlsChain);
    const needsSniff = anyTls || candidates.some((c) => c.applicationProtocols.length > 0);
    if (!needsSniff) {
      this.runChain(spec, candidates[0]!, socket);
      return;
    }
    const s = spec;
    const timer = setTimeout(() => onData(Buffer.alloc(0)), SNIFF_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.pause();
      if (chunk.length > 0) socket.unshift(chunk);
      if (anyTls && looksLikeTls(chunk)) {
        const tlsChains = candidates.filter(isTlsChain);
        // SNI, gateway certificates, passthrough: chosen by the ClientHello (chains with no match criteria as fallback)
        if (needsClientHello(tlsChains)) this.acceptTlsBySni(s, [...tlsChains, ...candidates.filter(isAnyTransportChain)], socket);
        else this.acceptMeshTls(s, tlsChains, socket);
        return;
      }
      const plain = anyTls ? candidates.filter((c) => !isTlsChain(c)) : candidates;
      const proto = sniffProtocol(chunk);
      const chain = plain.find((c) => c.applicationProtocols.length === 0 || c.applicationProtocols.includes(proto))
        ?? plain.find((c) => c.applicationProtocols.length === 0);
      if (!chain) {
        socket.destroy();
        return;
      }
      this.runChain(s, chain, socket);
      // HTTP reads on; tcp_proxy resumes once its upstream is piped (resuming now would drop the
      // sniffed bytes, with no reader yet)
      if (chain.network.kind !== 'tcp') socket.resume();
    };
    socket.on('data', onData);
  }

  private originalDstListener(socket: net.Socket): ListenerSpec | undefined {
    const addr = socket.localAddress ?? '';
    const port = socket.localPort ?? 0;
    let wildcard: ListenerSpec | undefined;
    for (const l of this.opts.config.listeners.values()) {
      if (l.bindToPort || l.port !== port) continue;
      if (l.address === addr) return l;
      if (l.address === '0.0.0.0' || l.address === '::') wildcard = l;
    }
    return wildcard;
  }

  /** Matching filter chains, most specific first (Envoy's order of criteria). */
  private candidateChains(spec: ListenerSpec, socket: net.Socket): FilterChainSpec[] {
    const local = socket.localAddress ?? '';
    const localPort = socket.localPort ?? 0;
    const remote = socket.remoteAddress ?? '';
    const scored: { c: FilterChainSpec; score: number }[] = [];
    for (const c of spec.filterChains) {
      if (c.destinationPort !== undefined && c.destinationPort !== localPort) continue;
      const dst = bestPrefix(c.prefixRanges, local);
      if (dst < 0) continue;
      const src = bestPrefix(c.sourcePrefixRanges, remote);
      if (src < 0) continue;
      // TLS chains (mesh mTLS, gateway TLS, SNI, passthrough) are told apart from plaintext ones by the first bytes
      if (c.tls === undefined && c.transportProtocol !== undefined && c.transportProtocol !== 'raw_buffer' && c.transportProtocol !== 'tls') continue;
      const score = (c.destinationPort !== undefined ? 1 << 20 : 0) + (dst << 12) + (c.transportProtocol ? 1 << 11 : 0) + (c.applicationProtocols.length > 0 ? 1 << 10 : 0) + src;
      scored.push({ c, score });
    }
    scored.sort((a, b) => b.score - a.score);
    const out = scored.map((s) => s.c);
    if (spec.defaultChain) out.push(spec.defaultChain);
    return out;
  }

  // The handshake (client certificate required and checked as a SPIFFE identity), then the
  // chain the client's offered ALPN selects among the TLS ones (Istio's istio-http/1.1, istio-h2,
  // istio-peer-exchange …). The raw socket stays paused: TLS replays the bytes already read.
  private acceptMeshTls(spec: ListenerSpec, chains: FilterChainSpec[], socket: net.Socket): void {
    const first = chains[0];
    if (first?.tls === undefined || this.opts.tls === undefined) {
      this.tlsRefused++;
      socket.destroy();
      return;
    }
    acceptTls(socket, first.tls, this.opts.tls).then((a) => {
      const chain = chains.find((c) => c.applicationProtocols.length > 0 && c.applicationProtocols.some((p) => a.offeredAlpn.includes(p)))
        ?? chains.find((c) => c.applicationProtocols.length === 0);
      if (chain === undefined) {
        a.socket.destroy();
        return;
      }
      // the identity travels with the connection: network RBAC reads the socket's, HTTP the request's
      (a.socket as { peerPrincipal?: string | undefined }).peerPrincipal = a.principal;
      this.runChain(spec, chain, a.socket, a.principal);
    }, (err: unknown) => {
      this.tlsRefused++;
      this.lastTlsRefusal = (err as Error).message;
      this.opts.logger.debug({ listener: spec.name, remote: `${socket.remoteAddress}:${socket.remotePort}`, err: (err as Error).message }, 'mTLS connection refused');
    });
  }

  // Envoy's tls_inspector for SNI and gateway chains: the ClientHello picks the chain, which
  // terminates mesh mTLS, terminates the gateway's TLS with its certificates (SDS, files), or
  // passes the untouched bytes through (tcp_proxy).
  private acceptTlsBySni(spec: ListenerSpec, chains: FilterChainSpec[], socket: net.Socket): void {
    const refuse = (reason: string): void => {
      this.tlsRefused++;
      this.lastTlsRefusal = reason;
      socket.destroy();
      this.opts.logger.debug({ listener: spec.name, remote: `${socket.remoteAddress}:${socket.remotePort}`, err: reason }, 'TLS connection refused');
    };
    readClientHello(socket, SNIFF_TIMEOUT_MS).then((hello) => {
      if (socket.destroyed) return;
      if (hello === undefined) return refuse('no TLS ClientHello');
      const chain = selectTlsChain(chains, hello);
      if (chain === undefined) return refuse(`no filter chain for server name ${hello.sni ?? '(none)'}`);
      if (chain.tls === undefined) return this.runChain(spec, chain, socket); // passthrough: tcp_proxy replays the hello
      // ISTIO_MUTUAL (a gateway's mesh server): the workload certificate, a SPIFFE client required
      const mesh = chain.tls.mesh ? this.opts.tls : undefined;
      if (chain.tls.mesh && (mesh === undefined || mesh.certs.current() === undefined)) return refuse('no workload certificate for an ISTIO_MUTUAL chain');
      const ctx = mesh !== undefined ? { context: mesh.certs.serverContext() } : this.opts.credentials?.contextFor(chain.tls.server!) ?? { error: 'no gateway certificates in this proxy' };
      if ('error' in ctx) return refuse(ctx.error);
      acceptServerTls(socket, chain.tls, ctx.context, hello.alpn, mesh !== undefined ? { trustDomain: mesh.trustDomain } : undefined).then((a) => {
        (a.socket as { peerPrincipal?: string | undefined }).peerPrincipal = a.principal;
        this.runChain(spec, chain, a.socket, a.principal);
      }, (err: unknown) => {
        this.tlsRefused++;
        this.lastTlsRefusal = (err as Error).message;
        this.opts.logger.debug({ listener: spec.name, remote: `${socket.remoteAddress}:${socket.remotePort}`, err: (err as Error).message }, 'TLS connection refused');
      });
    }, (err: unknown) => refuse((err as Error).message));
  }

  private runChain(spec: ListenerSpec, chain: FilterChainSpec, socket: net.Socket, principal?: string): void {
    const net_ = chain.network;
    if (net_.kind === 'tcp') {
      // Envoy's network RBAC: a refused connection is closed before tcp_proxy connects upstream.
      if (net_.rbac.length > 0 && !evaluateRbac(net_.rbac, connectionSubject({
        remoteAddress: socket.remoteAddress ?? '', localAddress: socket.localAddress ?? '', localPort: socket.localPort ?? 0,
        principal: (socket as { readonly peerPrincipal?: string | undefined }).peerPrincipal,
      })).allowed) {
        socket.destroy();
        return;
      }
      this.runTcpProxy(spec, net_, socket);
      return;
    }
    // Inside mesh TLS, the negotiated ALPN (Istio's istio-h2, or h2) says HTTP/2 up front;
    // otherwise codec AUTO still sniffs the preface on the decrypted stream below.
    if (socket instanceof TLSSocket && (socket.alpnProtocol === 'h2' || socket.alpnProtocol === 'istio-h2') && net_.codecType !== 'HTTP1') {
      this.runHttp2(spec, net_, socket, principal);
      return;
    }
    // codec_type AUTO: HTTP/1 unless the connection opens with the HTTP/2 preface
    if (net_.codecType === 'HTTP2') {
      this.runHttp2(spec, net_, socket, principal);
      return;
    }
    const toH2 = net_.codecType === 'AUTO' ? (s: net.Socket): void => this.runHttp2(spec, net_, s, principal) : undefined;
    const conn = serveHttp1(socket, this.opts.limits, (req) => this.onHttpRequest(spec, net_, req, principal), toH2);
    this.httpConnections.add(conn);
    socket.once('close', () => this.httpConnections.delete(conn));
  }

  private runHttp2(spec: ListenerSpec, hcm: HttpConnectionManagerSpec, socket: net.Socket, principal?: string): void {
    const conn = serveHttp2(socket, { idleTimeoutMs: this.opts.limits.idleTimeoutMs }, (req) => this.onHttpRequest(spec, hcm, req, principal));
    this.httpConnections.add(conn);
    socket.once('close', () => this.httpConnections.delete(conn));
    if (this.draining) conn.drain();
  }

  // Not an async function: while the upstream answers, a request holds two small closures
  // here rather than a suspended frame (fewer bytes to copy at each young-generation GC).
  private onHttpRequest(spec: ListenerSpec, hcm: HttpConnectionManagerSpec, req: DownstreamRequest, principal?: string): void {
    if (principal !== undefined) req.peerPrincipal = principal;
    this.inFlight++;
    this.served++;
    const start = Date.now();
    const inbound = spec.direction === 'INBOUND';
    let peer: WorkloadInfo | undefined;
    if (inbound) {
      peer = this.peers.fromHeaders(req.head.headers);
      if (peer) {
        req.head.headers = stripPeerHeaders(req.head.headers);
        markMeshPeer(req); // lanes: a mesh sidecar's lane headers are trusted
      }
    } else if (spec.originalSource === true) {
      // a hop standing in for its caller (the lazy-scope hub): the caller's identity passes through
      peer = this.peers.fromHeaders(req.head.headers);
    }
    let routed: Promise<RouteOutcome>;
    try {
      const authz = this.currentAuthn(spec, hcm);
      routed = routeRequest(req, hcm.scopedRoutes !== undefined ? this.scopedContext(hcm, spec, req, inbound, authz) : this.routerContext(hcm, inbound, authz));
    } catch (err) {
      routed = Promise.reject(err as Error);
    }
    routed.then(
      (out) => {
        this.requestEnded();
        this.report(spec, hcm, req, out, start, peer);
      },
      (err: unknown) => this.requestFailed(spec, req, err),
    );
  }

  private requestEnded(): void {
    this.inFlight--;
    if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  // A bug, not a peer's fault: logged, answered 500 if nothing was sent yet, not reported.
  private async requestFailed(spec: ListenerSpec, req: DownstreamRequest, err: unknown): Promise<void> {
    this.opts.logger.error({ listener: spec.name, err: (err as Error).message }, 'request handling failed');
    if (!req.responded) {
      try {
        await req.respond({ status: 500, reason: 'Internal Server Error', version: '1.1', headers: [] }, null);
      } catch { /* downstream gone */ }
    }
    this.requestEnded();
  }

  // The router's view of a connection manager under the config in force: one object for
  // every request until the routes or clusters change (they are replaced, never edited).
  // Authorization follows the config in force, not the one a kept-alive connection was
  // accepted under: a policy change applies to the next request on every connection.
  // The JWT and RBAC filters of the same filter chain (by name) in the listener now in force.
  private currentAuthn(spec: ListenerSpec, hcm: HttpConnectionManagerSpec): HttpConnectionManagerSpec {
    const now = this.opts.config.listeners.get(spec.name);
    if (now === undefined || now === spec) return hcm;
    const name = [...spec.filterChains, ...(spec.defaultChain ? [spec.defaultChain] : [])].find((c) => c.network === hcm)?.name;
    const chain = [...now.filterChains, ...(now.defaultChain ? [now.defaultChain] : [])].find((c) => c.name === name && c.network.kind === 'http');
    return chain !== undefined && chain.network.kind === 'http' ? chain.network : hcm;
  }

  /**
   * Scoped routes (Envoy's scoped_routes): the route configuration of the scope the request's
   * key header names; no such scope leaves the request without routes (404 NR). A listener
   * with original_src keeps the caller's address upstream and adds no identity of its own.
   */
  private scopedContext(hcm: HttpConnectionManagerSpec, spec: ListenerSpec, req: DownstreamRequest, inbound: boolean, authz: HttpConnectionManagerSpec): RouterContext {
    const scoped = hcm.scopedRoutes!;
    const key = scopeKeyOf(scoped, findHeader(req.head.headers, scoped.header));
    const name = key === undefined ? '' : (scoped.byKey.get(key) ?? '');
    let byName = this.scopedContexts.get(hcm);
    if (byName === undefined) this.scopedContexts.set(hcm, (byName = new Map()));
    const cached = byName.get(name);
    const fresh = this.routerContext(hcm, inbound, authz, name, cached, spec.originalSource === true);
    if (fresh !== cached) {
      if (byName.size >= MAX_SCOPED_CONTEXTS && !byName.has(name)) byName.clear();
      byName.set(name, fresh);
    }
    return fresh;
  }

  private routerContext(hcm: HttpConnectionManagerSpec, inbound: boolean, authz: HttpConnectionManagerSpec = hcm, scopeRoute?: string, scopeCached?: RouterContext, originalSource = false): RouterContext {
    const cfg = this.opts.config;
    const routes = scopeRoute !== undefined ? (scopeRoute === '' ? undefined : cfg.routes.get(scopeRoute)) : hcm.inlineRoutes ?? (hcm.rdsName ? cfg.routes.get(hcm.rdsName) : undefined);
    const cached = scopeRoute !== undefined ? scopeCached : this.routerContexts.get(hcm);
    if (cached !== undefined && cached.routes === routes && cached.clusters === cfg.clusters && cached.inbound === inbound && cached.rbac === authz.rbac && cached.jwt === authz.jwt
      && this.limitSpecs.get(cached) === authz) return cached;
    const ctx: RouterContext = {
      routes,
      clusters: cfg.clusters,
      upstream: this.opts.upstream,
      originalDst: this.originalDst,
      inbound,
      useRemoteAddress: hcm.useRemoteAddress,
      skipXffAppend: hcm.skipXffAppend,
      pathNormalization: hcm.pathNormalization,
      generateRequestId: hcm.generateRequestId,
      faultFilter: hcm.faultFilter,
      peerHeaders: inbound || originalSource ? [] : this.opts.peerHeaders,
      ...(originalSource ? { originalSource: true } : {}),
      retryBufferBytes: this.opts.retryBufferBytes,
      upgradeTypes: hcm.upgradeTypes,
      rbac: authz.rbac,
      xffNumTrustedHops: hcm.xffNumTrustedHops,
      jwt: authz.jwt,
      // local rate limits and the admission gate follow the config in force, as authorization does
      localRateLimit: authz.localRateLimits !== undefined && this.opts.localRateLimits !== undefined ? { filters: authz.localRateLimits, limits: this.opts.localRateLimits } : undefined,
      admission: authz.admission !== undefined ? this.opts.admission?.gate(authz.admission) : undefined,
      lanes: hcm.lanes !== undefined ? { filter: hcm.lanes, state: this.lanes } : undefined,
      wasm: hcm.wasm !== undefined ? this.wasm.chains(hcm.wasm) : undefined, // wasm
    };
    // lanes: the table takes the filter's bounds; the counters are exposed once a filter is in use
    if (hcm.lanes !== undefined && this.lanes.configure(hcm.lanes)) this.opts.metrics.addExposition(() => this.lanes.expose());
    this.limitSpecs.set(ctx, authz);
    if (scopeRoute === undefined) this.routerContexts.set(hcm, ctx);
    return ctx;
  }

  private report(spec: ListenerSpec, hcm: HttpConnectionManagerSpec, req: DownstreamRequest, out: RouteOutcome, start: number, peer: WorkloadInfo | undefined): void {
    const duration = Date.now() - start;
    const flags = out.flags.length > 0 ? [...new Set(out.flags)].join(',') : '-';
    const stats = hcm.stats ?? DEFAULT_STATS;
    const reporter = spec.direction === 'INBOUND' ? 'destination' : 'source';
    // gRPC (Istio's request_protocol "grpc" and grpc_response_status) is told apart only on HTTP/2
    let grpc = -1;
    if (req.protocol === 'HTTP/2' && isGrpcRequest(req.head.headers)) {
      grpc = out.grpcStatus ?? grpcStatusOf(req.responseTrailers ?? null);
      if (grpc < 0) grpc = out.status === 0 ? 1 /* CANCELLED: the caller went away */ : 2 /* UNKNOWN */;
    }
    // a hop standing in for its caller (original_src, the lazy-scope hub) reports the caller's request as the caller would
    let labels = spec.originalSource === true && peer !== undefined
      ? requestLabels('source', peer, undefined, out.cluster, out.cluster?.name, out.host, out.status, flags, grpc)
      : this.labels.get(reporter, this.opts.self, peer, this.peers.idOf(peer), out.cluster, out.cluster?.name, out.host, out.status, flags, grpc);
    if (stats.usesOperation === true) labels = this.operations.label(labels, stats.operationTemplates, req.head.method, out.path, out.routeName);
    this.opts.metrics.recordRequest(stats, labels, duration, req.bytesReceived(), req.bytesSent());
    // access logs follow the config in force (as authorization does): a Telemetry change reaches kept-alive connections
    const accessLogs = this.currentAuthn(spec, hcm).accessLogs;
    if (accessLogs.length === 0) return;
    const reqHeaders = out.requestHeaders;
    this.opts.accessLog.write(accessLogs, {
      startTime: start,
      method: req.head.method,
      path: out.path,
      originalPath: out.originalPath,
      protocol: req.protocol ?? `HTTP/${req.head.version}`,
      responseCode: out.status,
      responseFlags: flags,
      responseCodeDetails: out.details,
      bytesReceived: req.bytesReceived(),
      bytesSent: req.bytesSent(),
      durationMs: duration,
      upstreamServiceTimeMs: out.upstreamServiceTimeMs,
      xForwardedFor: out.xForwardedFor,
      userAgent: findHeader(reqHeaders, 'user-agent'),
      requestId: out.requestId,
      authority: out.authority || undefined,
      upstreamHost: out.host?.key,
      upstreamCluster: out.cluster?.name ?? out.clusterName,
      upstreamLocalAddress: undefined,
      upstreamTransportFailureReason: undefined,
      downstreamLocalAddress: `${req.localAddress}:${req.localPort}`,
      downstreamRemoteAddress: `${req.remoteAddress}:${req.remotePort}`,
      downstreamPeerUriSan: req.peerPrincipal,
      routeName: out.routeName,
      requestHeader: (n) => findHeader(reqHeaders, n),
      downstreamPeer: peer,
      upstreamPeer: out.host?.workload,
    });
  }

  private runTcpProxy(spec: ListenerSpec, tcp: TcpProxySpec, socket: net.Socket): void {
    const start = Date.now();
    let clusterName = tcp.cluster;
    if (tcp.weighted && tcp.weighted.length > 0) {
      const total = tcp.weighted.reduce((a, c) => a + c.weight, 0);
      let r = Math.random() * total;
      for (const c of tcp.weighted) { if (r < c.weight) { clusterName = c.name; break; } r -= c.weight; }
    }
    const cluster: Cluster | undefined = clusterName ? this.opts.config.clusters.get(clusterName) : undefined;
    const downstreamRemote = `${socket.remoteAddress}:${socket.remotePort}`;
    const downstreamLocal = `${socket.localAddress}:${socket.localPort}`;
    const stats = tcp.stats ?? DEFAULT_STATS;
    const finish = (flags: string, host: string | undefined, received: number, sent: number): void => {
      const labels = { ...requestLabels(spec.direction === 'INBOUND' ? 'destination' : 'source', this.opts.self, undefined, cluster, cluster?.name, undefined, 0, flags), request_protocol: 'tcp', response_code: '0' };
      this.opts.metrics.observe(stats, 'tcp_connections_closed_total', labels, 1);
      this.opts.metrics.observe(stats, 'tcp_received_bytes_total', labels, received);
      this.opts.metrics.observe(stats, 'tcp_sent_bytes_total', labels, sent);
      if (tcp.accessLogs.length > 0) {
        this.opts.accessLog.write(tcp.accessLogs, {
          startTime: start, method: '', path: '', originalPath: undefined, protocol: '', responseCode: 0,
          responseFlags: flags, responseCodeDetails: '', bytesReceived: received, bytesSent: sent,
          durationMs: Date.now() - start, upstreamServiceTimeMs: undefined, xForwardedFor: undefined,
          userAgent: undefined, requestId: undefined, authority: undefined, upstreamHost: host,
          upstreamCluster: clusterName, upstreamLocalAddress: undefined, upstreamTransportFailureReason: undefined,
          downstreamLocalAddress: downstreamLocal, downstreamRemoteAddress: downstreamRemote, routeName: undefined,
          downstreamPeerUriSan: (socket as { readonly peerPrincipal?: string | undefined }).peerPrincipal,
          requestHeader: () => undefined,
        });
      }
    };
    if (!cluster || clusterName === BLACKHOLE_CLUSTER) {
      socket.destroy();
      finish(cluster ? 'NR' : 'NC', undefined, 0, 0);
      return;
    }
    // A connection made to this proxy's own listener (captureMode NONE) names no destination:
    // its local address is the proxy itself, and connecting there would loop. A captured
    // outbound connection names only its port: TCP passthrough has nowhere to go.
    if (cluster.type === 'ORIGINAL_DST' && (socket.localAddress === UNKNOWN_ADDRESS || this.listensOn(socket.localAddress ?? '', socket.localPort ?? 0))) {
      socket.destroy();
      finish('NR', undefined, 0, 0);
      return;
    }
    const host = cluster.type === 'ORIGINAL_DST'
      ? cluster.originalDstHost(socket.localAddress ?? '', socket.localPort ?? 0)
      : cluster.pick({ hash: undefined });
    if (!host) {
      socket.destroy();
      finish('UH', undefined, 0, 0);
      return;
    }
    const openLabels = { ...requestLabels(spec.direction === 'INBOUND' ? 'destination' : 'source', this.opts.self, undefined, cluster, cluster.name, host, 0, '-'), request_protocol: 'tcp', response_code: '0' };
    this.opts.metrics.observe(stats, 'tcp_connections_opened_total', openLabels, 1);
    socket.pause();
    host.active++;
    // bind like the HTTP pools do: the caller's address inbound, the workload's outbound (M17)
    const source = this.opts.upstream.sourceFor?.(cluster, spec.direction === 'INBOUND' ? socket.remoteAddress : undefined, host.address);
    const bind = source !== undefined && net.isIP(source) === net.isIP(host.address) ? { localAddress: source } : {};
    const upstream = net.connect({ host: host.address, port: host.port, noDelay: true, ...bind });
    let connected = false;
    let done = false;
    const timer = setTimeout(() => { if (!connected) upstream.destroy(new Error('connect timeout')); }, cluster.pool.connectTimeoutMs);
    const idle = tcp.idleTimeoutMs > 0 ? tcp.idleTimeoutMs : 0;
    const close = (flags: string): void => {
      if (done) return;
      done = true;
      host.active--;
      clearTimeout(timer);
      socket.destroy();
      upstream.destroy();
      finish(flags, host.key, socket.bytesRead, socket.bytesWritten);
    };
    const splice = (up: net.Socket): void => {
      socket.pipe(up);
      up.pipe(socket);
      socket.resume();
      if (idle > 0) {
        socket.setTimeout(idle, () => close('-'));
      }
    };
    upstream.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      // mesh mTLS to the upstream sidecar (ISTIO_MUTUAL, auto mTLS), as the HTTP pools do
      const tls = cluster.tlsFor(host);
      if (tls === undefined) {
        splice(upstream);
        return;
      }
      if (this.opts.upstreamTls === undefined) {
        close('UF');
        return;
      }
      this.opts.upstreamTls.connector(tls).secure({ socket: upstream, sink: { target: null, early: false } }, { host: host.address, port: host.port }, cluster.pool.connectTimeoutMs).then((opened) => {
        if (done) {
          opened.socket.destroy();
          return;
        }
        opened.socket.on('error', () => close('UR'));
        splice(opened.socket);
      }, () => close('UF'));
    });
    upstream.on('error', () => close(connected ? 'UR' : 'UF'));
    upstream.on('close', () => close('-'));
    socket.on('close', () => close('-'));
  }
}

const DEFAULT_STATS = defaultStatsConfig();

/**
 * Under REDIRECT capture, makes the socket report the connection's original destination as
 * its local address and port, as Envoy's original_dst listener filter restores it from
 * SO_ORIGINAL_DST, which Node cannot read: the capture rules DNAT each port to an address of
 * its own (`src/inject/iptables/capture-addresses.ts`). Inbound the address is the workload's;
 * outbound only the port is known, and the address is UNKNOWN_ADDRESS (HTTP routes by Host,
 * as Envoy's per-port route tables do, and passthrough resolves the Host). Everything after
 * (listener hand-off, filter chain match, routing, access log) then sees the original.
 */
export function restoreOriginalDestination(socket: net.Socket, workloadAddress: string): void {
  const original = capturedDestination(socket.localAddress ?? '');
  if (original === undefined) return;
  const address = original.direction === 'inbound' ? workloadAddress : UNKNOWN_ADDRESS;
  Object.defineProperties(socket, {
    localAddress: { value: address, enumerable: true },
    localPort: { value: original.port, enumerable: true },
  });
}

/** Router contexts kept per scoped-route connection manager (one per scope in use) at most. */
const MAX_SCOPED_CONTEXTS = 4096;

function findHeader(h: readonly RawHeader[], lowerName: string): string | undefined {
  for (const e of h) if (e.name.length === lowerName.length && e.name.toLowerCase() === lowerName) return e.value;
  return undefined;
}

function isTlsChain(c: FilterChainSpec): boolean {
  return c.tls !== undefined || c.transportProtocol === 'tls' || c.serverNames.length > 0;
}

/** A chain with no transport criterion at all: it takes TLS connections no TLS chain wants. */
function isAnyTransportChain(c: FilterChainSpec): boolean {
  return c.tls === undefined && c.transportProtocol === undefined && c.serverNames.length === 0 && c.applicationProtocols.length === 0;
}

function sniffProtocol(chunk: Buffer): string {
  const s = chunk.subarray(0, 64).toString('latin1');
  if (s.startsWith('PRI * HTTP/2.0')) return 'h2c';
  const m = HTTP_METHOD_RE.exec(s);
  if (m) return m[1] === '0' ? 'http/1.0' : 'http/1.1';
  // A partial request line still looks like HTTP when it starts with a method and a target.
  if (/^[A-Z]{3,10} \//.test(s)) return 'http/1.1';
  return '';
}

/** Longest matching prefix length + 1, 0 when the list is empty, -1 when nothing matches. */
function bestPrefix(ranges: readonly PrefixRange[], ip: string): number {
  if (ranges.length === 0) return 0;
  let best = -1;
  for (const r of ranges) if (r.prefixLen + 1 > best && inPrefix(ip, r)) best = r.prefixLen + 1;
  return best;
}

function inPrefix(ip: string, r: PrefixRange): boolean {
  const a = ipBytes(ip);
  const b = ipBytes(r.address);
  if (!a || !b || a.length !== b.length) return false;
  let bits = r.prefixLen;
  for (let i = 0; i < a.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((a[i]! & mask) !== (b[i]! & mask)) return false;
  }
  return true;
}

function ipBytes(ip: string): number[] | undefined {
  const v4 = ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
  if (net.isIPv4(v4)) return v4.split('.').map(Number);
  if (!net.isIPv6(ip)) return undefined;
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return groups.flatMap((g) => { const n = parseInt(g, 16); return [n >> 8, n & 0xff]; });
}
