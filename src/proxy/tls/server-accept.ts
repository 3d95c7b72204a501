// Terminating a gateway's TLS (SIMPLE, MUTUAL, OPTIONAL_MUTUAL, and ISTIO_MUTUAL chains chosen by
// SNI): the handshake with the chain's SecureContext, then, when a CA is configured, the client
// certificate: required or optional as the context says, chained to the CA, and checked against
// the SAN, SPKI and hash lists (ISTIO_MUTUAL: a SPIFFE identity of the trust domain). The
// certificate's URI SAN (or, lacking one, its subject) becomes the connection's peer principal.
// A client offering none of the server's ALPN values is served without ALPN, as Envoy does
// (Istio's sidecars offer `istio-peer-exchange, istio` to a port declared HTTPS): Node would
// refuse it with an alert, so the server's list is left out when the ClientHello shows no overlap.
import type { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import type net from 'node:net';
import { uriSans } from '../../api/spiffe.ts';
import { certificateHash, spkiHash } from './server-credentials.ts';
import { checkPeerCertificate } from './peer.ts';
import { openSslVerifyError, serverHandshake } from './downstream.ts';
import type { DownstreamTlsSpec, SanMatcher, ServerTlsSpec } from './transport-socket.ts';

export interface AcceptedServerTls {
  socket: tls.TLSSocket;
  /** The client certificate's URI SAN (else its subject); undefined without a client certificate. */
  principal: string | undefined;
}

/** The SANs of a certificate by type, as Envoy's matchers name them. */
function sansOf(cert: X509Certificate): { type: string; value: string }[] {
  const out: { type: string; value: string }[] = [];
  for (const part of (cert.subjectAltName ?? '').split(/,\s*/)) {
    const i = part.indexOf(':');
    if (i <= 0) continue;
    const kind = part.slice(0, i);
    const value = part.slice(i + 1).replace(/^"|"$/g, '');
    const type = kind === 'DNS' ? 'DNS' : kind === 'URI' ? 'URI' : kind === 'email' ? 'EMAIL' : kind === 'IP Address' ? 'IP_ADDRESS' : kind;
    out.push({ type, value });
  }
  return out;
}

/** Envoy's client certificate checks beyond the chain: SAN matchers, SPKI and hash pins (any of each list). */
export function checkClientCertificate(cert: X509Certificate, spec: ServerTlsSpec): string | undefined {
  if (spec.sanMatchers.length > 0) {
    const sans = sansOf(cert);
    const ok = spec.sanMatchers.some((m: SanMatcher) => sans.some((s) => (m.type === undefined || m.type === '' || m.type === s.type) && m.match(s.value)));
    if (!ok) return `client certificate SANs (${sans.map((s) => `${s.type}:${s.value}`).join(', ') || 'none'}) match none of the allowed subject alt names`;
  }
  const pinned = spec.spki.length > 0 || spec.certHashes.length > 0;
  if (pinned && !spec.spki.includes(spkiHash(cert)) && !spec.certHashes.includes(certificateHash(cert))) {
    return 'client certificate matches none of the pinned SPKI or certificate hashes';
  }
  return undefined;
}

/**
 * Runs the server side of the handshake on `socket` (bytes already read and unshifted are
 * replayed into TLS) with `context`. Resolves once the client is checked; rejects with the
 * reason otherwise, after destroying the socket.
 */
export function acceptServerTls(socket: net.Socket, spec: DownstreamTlsSpec, context: tls.SecureContext, offeredAlpn: readonly string[], mesh?: { trustDomain: string }, handshakeTimeoutMs = 10_000): Promise<AcceptedServerTls> {
  const server = spec.server;
  const verify = mesh !== undefined || server?.trustedCa !== undefined;
  const serverAlpn = spec.alpn.some((p) => offeredAlpn.includes(p)) ? spec.alpn : [];
  return serverHandshake(socket, {
    isServer: true,
    secureContext: context,
    requestCert: verify,
    // with a CA and MUTUAL, OpenSSL itself refuses a client without a certificate (an alert in the handshake)
    rejectUnauthorized: verify && spec.requireClientCertificate,
    ...(serverAlpn.length > 0 ? { ALPNProtocols: serverAlpn } : {}),
  } as tls.TLSSocketOptions, handshakeTimeoutMs, (t) => {
    const cert = verify ? t.getPeerX509Certificate() : undefined;
    if (cert === undefined) return verify && spec.requireClientCertificate ? { error: 'no client certificate' } : {};
    const untrusted = openSslVerifyError(t);
    if (untrusted !== undefined) return { error: untrusted };
    if (mesh !== undefined) {
      const peer = checkPeerCertificate(cert, { trustDomain: mesh.trustDomain, sans: spec.sans });
      return 'error' in peer ? peer : { principal: peer.principal };
    }
    const refused = server === undefined ? undefined : checkClientCertificate(cert, server);
    if (refused !== undefined) return { error: refused };
    return { principal: uriSans(cert.subjectAltName)[0] ?? cert.subject.replace(/\n/g, ',') };
  });
}
