// Who is on the other end of an mTLS connection: the URI SAN of the peer's certificate read
// as a SPIFFE identity. Checked after every handshake, resumed ones included, since Node runs
// checkServerIdentity only on full handshakes and ignores URI SANs anyway.
import type { X509Certificate } from 'node:crypto';
import type tls from 'node:tls';
import { parseSpiffeUri, uriSans } from '../../api/spiffe.ts';

/** What an mTLS peer must be: any workload of the trust domain, or one of `sans` exactly. */
export interface PeerRequirement {
  trustDomain: string | undefined;
  /** Exact SPIFFE URIs accepted (Istio's matchSubjectAltNames); empty: any workload identity. */
  sans: readonly string[];
}

/** The peer's SPIFFE URI when the chain verified and the identity is acceptable, else an error message. */
export function checkPeer(socket: tls.TLSSocket, req: PeerRequirement): { principal: string } | { error: string } {
  if (!socket.authorized) return { error: `peer certificate not trusted: ${String(socket.authorizationError ?? 'no certificate')}` };
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) return { error: 'no peer certificate' };
  return checkPeerCertificate(cert, req);
}

/** The identity check of checkPeer on a certificate whose chain already verified. */
export function checkPeerCertificate(cert: X509Certificate, req: PeerRequirement): { principal: string } | { error: string } {
  const uris = uriSans(cert.subjectAltName);
  const spiffe = uris.filter((u) => {
    const id = parseSpiffeUri(u);
    return id !== undefined && (req.trustDomain === undefined || id.trustDomain === req.trustDomain);
  });
  if (spiffe.length === 0) return { error: `peer certificate names no workload identity${req.trustDomain ? ` of ${req.trustDomain}` : ''} (${uris.join(', ') || 'no URI SAN'})` };
  if (req.sans.length === 0) return { principal: spiffe[0]! };
  const match = spiffe.find((u) => req.sans.includes(u));
  if (match === undefined) return { error: `peer identity ${spiffe.join(', ')} is not one of ${req.sans.join(', ')}` };
  return { principal: match };
}
