// Accepting Istio mutual TLS on an inbound listener: the first bytes tell TLS from plaintext
// (Envoy's tls_inspector), the handshake uses the workload certificate of the current
// generation, the client must present a certificate of the mesh, and its SPIFFE identity
// becomes the connection's peer principal. The client's offered ALPN picks the filter chain.
import tls from 'node:tls';
import type net from 'node:net';
import { checkPeer } from './peer.ts';
import type { DownstreamTlsSpec } from './transport-socket.ts';
import type { WorkloadCertificates } from './workload-certificates.ts';

/** A TLS record starts with content type 22 (handshake). */
export function looksLikeTls(firstBytes: Buffer): boolean {
  return firstBytes.length > 0 && firstBytes[0] === 0x16;
}

export interface AcceptedTls {
  socket: tls.TLSSocket;
  /** The client's SPIFFE URI (`spiffe://td/ns/x/sa/y`), undefined when no certificate was required. */
  principal: string | undefined;
  /** The ALPN values the client offered (Istio's `istio-http/1.1`, `istio`, …). */
  offeredAlpn: readonly string[];
}

export interface DownstreamTlsOptions {
  certs: WorkloadCertificates;
  trustDomain: string;
  handshakeTimeoutMs?: number;
}

/**
 * Runs the server side of the handshake on `socket` (bytes already read and unshifted are
 * replayed into TLS). Resolves once the peer is checked; rejects with the reason otherwise,
 * after destroying the socket.
 */
export function acceptTls(socket: net.Socket, spec: DownstreamTlsSpec, opts: DownstreamTlsOptions): Promise<AcceptedTls> {
  return new Promise((resolve, reject) => {
    let offered: readonly string[] = [];
    const secret = opts.certs.current();
    if (secret === undefined) {
      socket.destroy();
      reject(new Error('no workload certificate yet'));
      return;
    }
    const serverAlpn = spec.alpn;
    const t = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext: opts.certs.serverContext(),
      requestCert: true,
      rejectUnauthorized: spec.requireClientCertificate,
      ALPNCallback: ({ protocols }: { protocols: string[] }) => {
        offered = protocols;
        // server preference, as Envoy selects; no overlap: no ALPN (not a failure)
        return serverAlpn.find((p) => protocols.includes(p));
      },
    } as tls.TLSSocketOptions);
    let done = false;
    const timer = setTimeout(() => fail('TLS handshake timed out'), opts.handshakeTimeoutMs ?? 10_000);
    const fail = (reason: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      t.destroy();
      socket.destroy();
      reject(new Error(reason));
    };
    const onError = (err: NodeJS.ErrnoException): void => fail(`TLS handshake failed: ${err.code ?? err.message}`);
    const onClose = (): void => fail('connection closed during the TLS handshake');
    t.once('error', onError);
    t.once('close', onClose);
    t.once('secure', () => {
      if (done) return;
      let principal: string | undefined;
      if (spec.requireClientCertificate || t.getPeerX509Certificate() !== undefined) {
        // A server TLSSocket outside a tls.Server is not told the verification result:
        // read OpenSSL's (as tls.Server does), failing closed if Node ever moves it.
        const verifyError = (t as unknown as { _handle?: { verifyError?: () => Error | null } })._handle?.verifyError?.();
        if (verifyError === undefined) {
          fail('cannot read the client certificate\'s verification result');
          return;
        }
        if (verifyError !== null) {
          fail(`client certificate not trusted: ${(verifyError as NodeJS.ErrnoException).code ?? verifyError.message}`);
          return;
        }
        t.authorized = true;
        // every connection, resumed or not: the identity is read from the (session's) peer certificate
        const peer = checkPeer(t, { trustDomain: opts.trustDomain, sans: spec.sans });
        if ('error' in peer) {
          fail(peer.error);
          return;
        }
        principal = peer.principal;
      }
      done = true;
      clearTimeout(timer);
      // A server TLSSocket outside a tls.Server is never told its handshake is over: it stays
      // `secureConnecting`, and node:http2 given it waits for a 'secureConnect' that never
      // comes (then reads bytes put back onto the socket into a session not set up yet: a
      // TypeError). Done, as tls.Server would mark it.
      (t as { secureConnecting?: boolean }).secureConnecting = false;
      // only ours: Node's own 'close' listener frees the TLS state
      t.removeListener('error', onError);
      t.removeListener('close', onClose);
      t.on('error', () => { /* reported by whoever reads the connection */ });
      resolve({ socket: t, principal, offeredAlpn: offered });
    });
  });
}
