// Istio mutual TLS to an upstream sidecar: the workload certificate of the current generation,
// Istio's SNI and ALPN, the peer's SPIFFE identity checked after every handshake (resumed ones
// included), and TLS sessions reused only under the identity they were checked for.
import net from 'node:net';
import tls from 'node:tls';
import { UpstreamError } from '../upstream/errors.ts';
import type { OpenedSocket, ReadSink, SecureUpstream, UpstreamEndpoint } from '../upstream/connection.ts';
import { authorityOf } from '../upstream/connection.ts';
import { checkPeer, checkPeerCertificate } from './peer.ts';
import type { UpstreamTlsSpec } from './transport-socket.ts';
import type { WorkloadCertificates } from './workload-certificates.ts';

/** TLS sessions kept for resumption, across every upstream. */
const SESSION_CACHE_MAX = 256;

export interface MeshTlsOptions {
  certs: WorkloadCertificates;
  /** Peers must be of this trust domain (the workload's own). */
  trustDomain: string;
}

/** Makes the SecureUpstream of each cluster transport socket, sharing one session cache. */
export class UpstreamTls {
  private readonly opts: MeshTlsOptions;
  private readonly sessions = new Map<string, { session: Buffer; principal: string }>();
  private readonly connectors = new WeakMap<UpstreamTlsSpec, SecureUpstream>();
  /** Handshakes done and resumed (for tests and stats). */
  handshakes = 0;
  resumed = 0;
  /** Peers refused after the handshake (wrong or missing identity). */
  peerRefused = 0;
  /** Reuse sessions (on by default; off to measure full handshakes). */
  resumption = true;

  constructor(opts: MeshTlsOptions) {
    this.opts = opts;
  }

  get certs(): WorkloadCertificates {
    return this.opts.certs;
  }

  connector(spec: UpstreamTlsSpec): SecureUpstream {
    let c = this.connectors.get(spec);
    if (c === undefined) {
      const key = `tls:${spec.sni}|${spec.alpn.join(',')}|${spec.sans.join(',')}`;
      c = {
        key,
        secure: (opened, ep, timeoutMs) => this.secure(spec, opened, ep, timeoutMs),
        connectH2: (ep, localAddress) => this.connectH2(spec, ep, localAddress),
      };
      this.connectors.set(spec, c);
    }
    return c;
  }

  private secure(spec: UpstreamTlsSpec, opened: OpenedSocket, ep: UpstreamEndpoint, timeoutMs: number): Promise<OpenedSocket> {
    const secret = this.opts.certs.current();
    if (secret === undefined) {
      opened.socket.destroy();
      return Promise.reject(new UpstreamError('UF', `no workload certificate yet for TLS to ${authorityOf(ep)}`, { retriable: false }));
    }
    // a session is reused only for the same endpoint, expected identities and certificate generation
    const sessionKey = `${authorityOf(ep)}|${spec.sni}|${spec.sans.join(',')}|${secret.generation}`;
    const cached = this.resumption ? this.sessions.get(sessionKey) : undefined;
    const session = cached?.session;
    return new Promise((resolve, reject) => {
      const socket = tls.connect({
        socket: opened.socket,
        secureContext: this.opts.certs.clientContext(),
        ...(spec.sni !== '' ? { servername: spec.sni } : {}),
        ALPNProtocols: spec.alpn,
        rejectUnauthorized: true,
        // the identity is a URI SAN, which Node's hostname check ignores: checked below instead
        checkServerIdentity: () => undefined,
        ...(session !== undefined ? { session } : {}),
      });
      let done = false;
      const timer = timeoutMs > 0 ? setTimeout(() => fail(`TLS handshake with ${authorityOf(ep)} timed out after ${timeoutMs} ms`), timeoutMs) : undefined;
      const fail = (message: string): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        reject(new UpstreamError('UF', message, { retriable: true, code: 'TLS_ERROR' }));
      };
      const onError = (err: NodeJS.ErrnoException): void => fail(`TLS to ${authorityOf(ep)} failed: ${err.code ?? err.message}`);
      const onClose = (): void => fail(`TLS to ${authorityOf(ep)}: connection closed during the handshake`);
      socket.once('error', onError);
      socket.once('close', onClose);
      socket.once('secureConnect', () => {
        if (done) return;
        // A resumed session carries no peer certificate on the client side: its identity is
        // the one checked when the session was cached, under this very key (expected SANs and
        // certificate generation included). A full handshake is checked now.
        const reused = socket.isSessionReused() && cached !== undefined && socket.authorized && socket.getPeerX509Certificate() === undefined;
        const peer = reused ? { principal: cached.principal } : checkPeer(socket, { trustDomain: this.opts.trustDomain, sans: spec.sans });
        if ('error' in peer) {
          this.peerRefused++;
          if (session !== undefined) this.sessions.delete(sessionKey);
          fail(`TLS to ${authorityOf(ep)}: ${peer.error}`);
          return;
        }
        done = true;
        clearTimeout(timer);
        this.handshakes++;
        if (socket.isSessionReused()) this.resumed++;
        // only ours: Node's own 'close' listener frees the TLS state
        socket.removeListener('close', onClose);
        socket.removeListener('error', onError);
        // TLS 1.3 tickets come after the handshake: kept only for a peer that passed the check
        const principal = peer.principal;
        socket.on('session', (s: Buffer) => this.remember(sessionKey, s, principal));
        const sink: ReadSink = { target: null, early: false };
        socket.on('data', (chunk: Buffer) => {
          const t = sink.target;
          if (t === null) sink.early = true;
          else t(chunk);
        });
        resolve({ socket, sink });
      });
    });
  }

  // HTTP/2 over mesh mTLS: node:http2 takes the TLS socket at once and starts its session on
  // 'secureConnect', on a socket that must still be alive then (a native assertion otherwise).
  // So the peer is checked before that event, in checkServerIdentity, which Node calls once
  // the chain verified and destroys the socket with what it returns: the peer's SPIFFE
  // identity (as on the HTTP/1 path) and ALPN h2. Sessions are not resumed on this path, so
  // every handshake is a full one and the callback always runs.
  private connectH2(spec: UpstreamTlsSpec, ep: UpstreamEndpoint, localAddress: string | undefined): tls.TLSSocket {
    const alpn = spec.alpn.includes('h2') ? spec.alpn : [...spec.alpn, 'h2'];
    const secret = this.opts.certs.current();
    const refuse = (message: string): UpstreamError => {
      this.peerRefused++;
      return new UpstreamError('UF', `TLS to ${authorityOf(ep)}: ${message}`, { retriable: true, code: 'TLS_ERROR' });
    };
    const socket: tls.TLSSocket = tls.connect({
      socket: net.connect({ host: ep.host, port: ep.port, noDelay: true, ...(localAddress !== undefined ? { localAddress } : {}) }),
      ...(secret !== undefined ? { secureContext: this.opts.certs.clientContext() } : {}),
      ...(spec.sni !== '' ? { servername: spec.sni } : {}),
      ALPNProtocols: alpn,
      rejectUnauthorized: true,
      checkServerIdentity: () => {
        const cert = socket.getPeerX509Certificate();
        if (cert === undefined) return refuse('no peer certificate');
        const peer = checkPeerCertificate(cert, { trustDomain: this.opts.trustDomain, sans: spec.sans });
        if ('error' in peer) return refuse(peer.error);
        if (socket.alpnProtocol !== 'h2' && socket.alpnProtocol !== 'istio-h2') return refuse(`the peer did not select HTTP/2 (ALPN ${String(socket.alpnProtocol)})`);
        this.handshakes++;
        return undefined;
      },
    });
    if (secret === undefined) {
      process.nextTick(() => socket.destroy(new UpstreamError('UF', `no workload certificate yet for TLS to ${authorityOf(ep)}`, { retriable: false })));
    }
    return socket;
  }

  private remember(key: string, session: Buffer, principal: string): void {
    if (!this.resumption) return;
    this.sessions.delete(key);
    this.sessions.set(key, { session, principal });
    if (this.sessions.size > SESSION_CACHE_MAX) this.sessions.delete(this.sessions.keys().next().value!);
  }
}
