// Signing a workload's CSR: the CSR's own signature checked, its identity read from its URI
// SAN, and a short-lived leaf issued for exactly that identity (no subject, the SPIFFE URI
// as a critical SAN, server and client auth), as Istio's CA issues them.
import { randomBytes } from 'node:crypto';
import type { webcrypto } from 'node:crypto';
import { x509 } from './x509.ts';
import type { SigningRoot } from './root.ts';

/** A request the CA refuses; `code` is the gRPC status it answers with. */
export class CertificateRequestError extends Error {
  override name = 'CertificateRequestError';
  readonly code: 'INVALID_ARGUMENT' | 'PERMISSION_DENIED' | 'UNAUTHENTICATED';
  constructor(code: CertificateRequestError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

export interface ParsedCsr {
  csr: x509.Pkcs10CertificateRequest;
  /** URI SANs the CSR asks for. */
  uris: string[];
  /** DNS and IP SANs it asks for (refused: a workload certificate names only its identity). */
  others: string[];
}

/** Parses a PEM CSR and checks its self-signature. */
export async function parseCsr(pem: string): Promise<ParsedCsr> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (err) {
    throw new CertificateRequestError('INVALID_ARGUMENT', `the CSR does not parse: ${(err as Error).message}`);
  }
  let valid = false;
  try {
    valid = await csr.verify();
  } catch { /* unsupported algorithm: invalid */ }
  if (!valid) throw new CertificateRequestError('INVALID_ARGUMENT', 'the CSR\'s signature does not verify');
  const uris: string[] = [];
  const others: string[] = [];
  for (const n of csr.extensions.find((e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension)?.names.items ?? []) {
    if (n.type === 'url') uris.push(n.value);
    else others.push(`${n.type}:${n.value}`);
  }
  return { csr, uris, others };
}

/**
 * A leaf for `identity` (already authorized) over the CSR's public key, valid `ttlMs` from a
 * minute ago (clock skew between hosts). Returns the chain: leaf first, root last.
 */
export async function signWorkloadCertificate(root: SigningRoot, csr: x509.Pkcs10CertificateRequest, identity: string, ttlMs: number, now = Date.now()): Promise<string[]> {
  const cert = await signLeaf(root, csr.publicKey, [{ type: 'url', value: identity }], [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], ttlMs, now);
  return [cert.toString('pem') + '\n', ...root.chain];
}

/** A SAN of a leaf: the SPIFFE URI, or the DNS names and IPs a server is dialled by. */
export interface LeafName {
  type: 'url' | 'dns' | 'ip';
  value: string;
}

/**
 * A leaf signed by the mesh CA's signer: no subject, the names as a critical SAN, the given
 * extended key usages, a random 128-bit serial, valid from a minute ago (clock skew) for `ttlMs`,
 * never past the signer's own expiry.
 */
export async function signLeaf(root: SigningRoot, publicKey: x509.PublicKey | webcrypto.CryptoKey, names: readonly LeafName[], usages: readonly string[], ttlMs: number, now = Date.now()): Promise<x509.X509Certificate> {
  const notAfter = Math.min(now + ttlMs, root.cert.notAfter.getTime());
  return x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(16).toString('hex').replace(/^[89a-f]/, '1'),
    subject: '',
    issuer: root.cert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(notAfter),
    publicKey,
    signingKey: root.key,
    signingAlgorithm: root.key.algorithm.name === 'ECDSA' ? { name: 'ECDSA', hash: (root.key.algorithm as webcrypto.EcKeyAlgorithm).namedCurve === 'P-384' ? 'SHA-384' : 'SHA-256' } : root.key.algorithm,
    extensions: [
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([...usages]),
      new x509.BasicConstraintsExtension(false, undefined, true),
      await x509.AuthorityKeyIdentifierExtension.create(root.cert, false),
      // no subject: the SAN is the identity and must be critical (RFC 5280 4.2.1.6)
      new x509.SubjectAlternativeNameExtension(names.map((n) => ({ ...n })), true),
    ],
  });
}
