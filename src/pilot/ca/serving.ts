// The closed control plane: the pilot's own serving certificate for the xDS/CA port, issued by
// the mesh CA with the pilot's SPIFFE identity and the names proxies dial it by, rotated at half
// its life without restarting the port; and the caller's identity read from the client
// certificate it presented, verified against the mesh CA (grpc-js asks for a client certificate
// without requiring one, so a proxy with only a bootstrap token can obtain its first certificate).
import { X509Certificate, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { parseSpiffeUri, spiffeUri, uriSans } from '../../api/spiffe.ts';
import type { SpiffeIdentity } from '../../api/spiffe.ts';
import { toPem } from './root.ts';
import type { SigningRoot } from './root.ts';
import { x509, EC_P256 } from './x509.ts';
import { signLeaf } from './issue.ts';
import type { LeafName } from './issue.ts';

/** The pilot's identity, as istiod's (`spiffe://TD/ns/istio-system/sa/istiod`). */
export const PILOT_NAMESPACE = 'istio-system';
export const PILOT_SERVICE_ACCOUNT = 'istiod';

/** Names a proxy may dial the pilot by, always in the certificate (besides the listen host). */
export const DEFAULT_PILOT_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '::1', 'istiod.istio-system.svc', 'sextant-pilot'];

export interface ServingCertificateOptions {
  root: SigningRoot;
  trustDomain: string;
  /** DNS names and IPs the certificate names (besides DEFAULT_PILOT_HOSTS). */
  hosts: readonly string[];
  /** Lifetime of each certificate (default 24 h); a new one at half of it. */
  ttlMs?: number;
  logger: Logger;
}

export interface ServingCertificate {
  /** Server credentials that follow the rotation (requested, not required, client certificates). */
  credentials: grpc.ServerCredentials;
  /** The current leaf (PEM), for tests and /debug. */
  current(): { certPem: string; notAfter: number; serial: string };
  close(): void;
}

const DAY_MS = 24 * 3600 * 1000;

/** Issues the pilot's serving certificate now and keeps it rotated. */
export async function startServingCertificate(opts: ServingCertificateOptions): Promise<ServingCertificate> {
  const ttl = opts.ttlMs ?? DAY_MS;
  const identity = spiffeUri({ trustDomain: opts.trustDomain, namespace: PILOT_NAMESPACE, serviceAccount: PILOT_SERVICE_ACCOUNT });
  const hosts = [...new Set([...DEFAULT_PILOT_HOSTS, ...opts.hosts.filter((h) => h !== '' && h !== '0.0.0.0' && h !== '::')])];
  let leaf = await issueServingCertificate(opts.root, identity, hosts, ttl);
  const identityListeners = new Set<(u: { certificate: Buffer; privateKey: Buffer } | null) => void>();
  const caListeners = new Set<(u: { caCertificate: Buffer } | null) => void>();
  const caUpdate = { caCertificate: Buffer.from(opts.root.rootPem) };
  const identityUpdate = (): { certificate: Buffer; privateKey: Buffer } => ({ certificate: Buffer.from(leaf.chainPem), privateKey: Buffer.from(leaf.keyPem) });
  // grpc-js's certificate-provider credentials: listeners get the current value and each new one
  // later. The first comes on the next tick: grpc-js registers its watcher after adding the listener.
  const identityProvider: grpc.experimental.CertificateProvider = {
    addCaCertificateListener: () => {},
    removeCaCertificateListener: () => {},
    addIdentityCertificateListener(l) { identityListeners.add(l); queueMicrotask(() => { if (identityListeners.has(l)) l(identityUpdate()); }); },
    removeIdentityCertificateListener(l) { identityListeners.delete(l); },
  };
  const caProvider: grpc.experimental.CertificateProvider = {
    addCaCertificateListener(l) { caListeners.add(l); queueMicrotask(() => { if (caListeners.has(l)) l(caUpdate); }); },
    removeCaCertificateListener(l) { caListeners.delete(l); },
    addIdentityCertificateListener: () => {},
    removeIdentityCertificateListener: () => {},
  };
  // (identity provider, CA provider, require a client certificate): the bootstrap-token path has none yet.
  const credentials = grpc.experimental.createCertificateProviderServerCredentials(identityProvider, caProvider, false);
  opts.logger.info({ identity, hosts, notAfter: new Date(leaf.notAfter).toISOString() }, 'control plane serving certificate issued');

  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const schedule = (delay: number): void => {
    timer = setTimeout(() => {
      issueServingCertificate(opts.root, identity, hosts, ttl).then((next) => {
        if (closed) return;
        leaf = next;
        for (const l of identityListeners) l(identityUpdate());
        opts.logger.info({ identity, serial: next.serial, notAfter: new Date(next.notAfter).toISOString() }, 'control plane serving certificate rotated');
        schedule((next.notAfter - Date.now()) / 2);
      }, (err: unknown) => {
        opts.logger.error({ err: (err as Error).message }, 'control plane serving certificate rotation failed; retrying in 30 s');
        schedule(30_000);
      });
    }, Math.max(1000, delay));
    timer.unref();
  };
  schedule((leaf.notAfter - Date.now()) / 2);
  return {
    credentials,
    current: () => ({ certPem: leaf.chainPem, notAfter: leaf.notAfter, serial: leaf.serial }),
    close() { closed = true; clearTimeout(timer); },
  };
}

interface IssuedLeaf {
  keyPem: string;
  chainPem: string;
  notAfter: number;
  serial: string;
}

async function issueServingCertificate(root: SigningRoot, identity: string, hosts: readonly string[], ttlMs: number): Promise<IssuedLeaf> {
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair;
  const names: LeafName[] = [{ type: 'url', value: identity }];
  for (const h of hosts) names.push(isIP(h) !== 0 ? { type: 'ip', value: h } : { type: 'dns', value: h });
  const cert = await signLeaf(root, keys.publicKey, names, [x509.ExtendedKeyUsage.serverAuth], ttlMs);
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { keyPem: toPem(pkcs8, 'PRIVATE KEY'), chainPem: [cert.toString('pem') + '\n', ...root.chain.slice(0, -1)].join(''), notAfter: cert.notAfter.getTime(), serial: cert.serialNumber };
}

/**
 * The workload identity of a caller's client certificate, verified here (signature by the mesh
 * CA's signer, validity now, one SPIFFE URI in the trust domain); undefined when the caller
 * presented none. Throws with the reason when it presented one that does not hold.
 */
export function verifiedPeerIdentity(peer: PeerCertificate | undefined, root: SigningRoot, trustDomain: string, now = Date.now()): SpiffeIdentity | undefined {
  if (peer === undefined || peer.raw === undefined || peer.raw.length === 0) return undefined;
  const leaf = new X509Certificate(peer.raw);
  const signer = signerOf(root);
  if (!leaf.checkIssued(signer) || !leaf.verify(signer.publicKey)) throw new PeerIdentityError('the client certificate is not issued by the mesh CA');
  if (Date.parse(leaf.validFrom) > now || Date.parse(leaf.validTo) <= now) throw new PeerIdentityError(`the client certificate is not valid now (valid ${leaf.validFrom} to ${leaf.validTo})`);
  const uris = uriSans(leaf.subjectAltName);
  const id = uris.length === 1 ? parseSpiffeUri(uris[0]!) : undefined;
  if (id === undefined) throw new PeerIdentityError(`the client certificate names no workload identity (${leaf.subjectAltName ?? 'no SAN'})`);
  if (id.trustDomain !== trustDomain) throw new PeerIdentityError(`the client certificate's identity ${uris[0]!} is outside the trust domain ${trustDomain}`);
  return id;
}

export class PeerIdentityError extends Error {
  override name = 'PeerIdentityError';
}

const signers = new WeakMap<SigningRoot, X509Certificate>();
function signerOf(root: SigningRoot): X509Certificate {
  let s = signers.get(root);
  if (s === undefined) signers.set(root, (s = new X509Certificate(root.chain[0]!)));
  return s;
}
