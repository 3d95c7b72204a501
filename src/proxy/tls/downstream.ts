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
  if (opts.certs.current() === undefined) {
    socket.destroy();
    return Promise.reject(new Error('no workload certificate yet'));
  }
  let offered: readonly string[] = [];
  const serverAlpn = spec.alpn;
  return serverHandshake(socket, {
    isServer: true,
    secureContext: opts.certs.serverContext(),
    requestCert: true,
    rejectUnauthorized: spec.requireClientCertificate,
    ALPNCallback: ({ protocols }: { protocols: string[] }) => {
      offered = protocols;
      // server preference, as Envoy selects; no overlap: no ALPN (not a failure)
      return serverAlpn.find((p) => protocols.includes(p));
    },
  } as tls.TLSSocketOptions, opts.handshakeTimeoutMs ?? 10_000, (t) => {
    if (!spec.requireClientCertificate && t.getPeerX509Certificate() === undefined) return {};
    const untrusted = openSslVerifyError(t);
    if (untrusted !== undefined) return { error: untrusted };
    // every connection, resumed or not: the identity is read from the (session's) peer certificate
    const peer = checkPeer(t, { trustDomain: opts.trustDomain, sans: spec.sans });
    return 'error' in peer ? peer : { principal: peer.principal };
  }).then((r) => ({ ...r, offeredAlpn: offered }));
}

/**
 * A server TLSSocket outside a tls.Server is not told the verification result: OpenSSL's is
 * read (as tls.Server does), failing closed if Node ever moves it. Undefined when trusted.
 */
export function openSslVerifyError(t: tls.TLSSocket): string | undefined {
  const verifyError = (t as unknown as { _handle?: { verifyError?: () => Error | null } })._handle?.verifyError?.();
  if (verifyError === undefined) return 'cannot read the client certificate\'s verification result';
  if (verifyError !== null) return `client certificate not trusted: ${(verifyError as NodeJS.ErrnoException).code ?? verifyError.message}`;
  t.authorized = true;
  return undefined;
}

/**
 * The server side of a TLS handshake on an accepted socket, bounded by `timeoutMs`; `check`
 * looks at the finished handshake (the peer) and names the principal, or the reason to refuse.
 * On any failure both sockets are destroyed and the promise rejects with the reason.
 */
export function serverHandshake(socket: net.Socket, options: tls.TLSSocketOptions, timeoutMs: number, check: (t: tls.TLSSocket) => { principal?: string | undefined } | { error: string }): Promise<{ socket: tls.TLSSocket; principal: string | undefined }> {
  return new Promise((resolve, reject) => {
    const t = new tls.TLSSocket(socket, options);
    let done = false;
    const timer = setTimeout(() => fail('TLS handshake timed out'), timeoutMs);
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
      const checked = check(t);
      if ('error' in checked) {
        fail(checked.error);
        return;
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
      resolve({ socket: t, principal: checked.principal });
    });
  });
}
