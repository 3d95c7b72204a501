// Istio's CreateCertificate on the pilot's gRPC server: who may ask for which identity
// (node metadata, plus a bootstrap token when a token file is configured), then a signed
// chain. The trust model and its limits are in docs/security.md.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { parseSpiffeUri, spiffeUri } from '../../api/spiffe.ts';
import type { SpiffeIdentity } from '../../api/spiffe.ts';
import { verifiedPeerIdentity } from './serving.ts';
import { certificateServiceDefinition, structString } from '../../envoy/istio-ca.ts';
import type { IstioCertificateRequest, IstioCertificateResponse } from '../../envoy/istio-ca.ts';
import { CertificateRequestError, parseCsr, signWorkloadCertificate } from './issue.ts';
import type { SigningRoot } from './root.ts';
import type { Authorization } from '../../registry/api/tokens.ts';

export interface CertificateServiceOptions {
  root: SigningRoot;
  trustDomain: string;
  /** Lifetime when the request asks for none (Istio's 24 h). */
  defaultTtlMs: number;
  /** The longest lifetime granted (Istio's max-workload-cert-ttl, 90 days). */
  maxTtlMs: number;
  /** Bootstrap tokens and the namespaces each may request identities in; undefined: no token needed. */
  tokens: TokenAuthorizer | undefined;
  logger: Logger;
  /** Counts requests and outcomes (Istio's citadel_server_* counters). */
  counters?: CaCounters;
}

/** What the CA counts, as istiod's citadel_server_* metrics do. */
export interface CaCounters {
  csr(): void;
  issued(): void;
  refused(code: CertificateRequestError['code'] | 'INTERNAL'): void;
}

/** Who may obtain identities in which namespace (the bootstrap token file, kept current). */
export interface TokenAuthorizer {
  authorize(token: string | undefined, namespace: string): Authorization;
}

/**
 * The identity a caller may have, or a CertificateRequestError saying why not. A caller that
 * presented a verified mesh certificate (`peer`) renews that identity and needs no token.
 */
export function authorizeIdentity(opts: Pick<CertificateServiceOptions, 'trustDomain' | 'tokens'>, uris: readonly string[], others: readonly string[], meta: IstioCertificateRequest['metadata'], authorization: string | undefined, peer?: SpiffeIdentity): string {
  if (peer !== undefined) {
    const held = spiffeUri(peer);
    if (uris.length !== 1 || uris[0] !== held) throw new CertificateRequestError('PERMISSION_DENIED', `a caller holding ${held} may renew only that identity, not ${uris.join(', ') || 'none'}`);
  } else if (opts.tokens !== undefined) {
    const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
    if (m === null) throw new CertificateRequestError('UNAUTHENTICATED', 'a bootstrap token is required (authorization: Bearer TOKEN)');
    const ns = structString(meta, 'NAMESPACE');
    const verdict = opts.tokens.authorize(m[1]!, ns ?? '');
    if (verdict === 'unauthenticated') throw new CertificateRequestError('UNAUTHENTICATED', 'the bootstrap token is not valid');
    // without a NAMESPACE the request is refused below, naming what it lacks
    if (verdict === 'forbidden' && ns !== undefined) throw new CertificateRequestError('PERMISSION_DENIED', `the token does not allow identities in namespace ${ns}`);
  }
  if (others.length > 0) throw new CertificateRequestError('INVALID_ARGUMENT', `the CSR may name only the workload's SPIFFE identity, not ${others.join(', ')}`);
  if (uris.length !== 1) throw new CertificateRequestError('INVALID_ARGUMENT', `the CSR must name exactly one URI SAN (spiffe://${opts.trustDomain}/ns/NS/sa/SA), it names ${uris.length}`);
  const uri = uris[0]!;
  const id = parseSpiffeUri(uri);
  if (id === undefined) throw new CertificateRequestError('INVALID_ARGUMENT', `${uri} is not a workload identity (spiffe://${opts.trustDomain}/ns/NS/sa/SA)`);
  if (id.trustDomain !== opts.trustDomain) throw new CertificateRequestError('PERMISSION_DENIED', `${uri} is outside the trust domain ${opts.trustDomain}`);
  const ns = structString(meta, 'NAMESPACE');
  const sa = structString(meta, 'SERVICE_ACCOUNT');
  if (ns === undefined || sa === undefined) throw new CertificateRequestError('INVALID_ARGUMENT', 'the request metadata must carry the caller\'s NAMESPACE and SERVICE_ACCOUNT');
  const expected = spiffeUri({ trustDomain: opts.trustDomain, namespace: ns, serviceAccount: sa });
  if (uri !== expected) throw new CertificateRequestError('PERMISSION_DENIED', `the CSR asks for ${uri} but the caller is ${expected}`);
  return uri;
}

/** The gRPC handlers of IstioCertificateService. */
export function certificateServiceHandlers(opts: CertificateServiceOptions): grpc.UntypedServiceImplementation {
  const createCertificate = (call: grpc.ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>, callback: grpc.sendUnaryData<IstioCertificateResponse>): void => {
    const req = call.request;
    const peer = call.getPeer();
    const auth = call.metadata.get('authorization')[0];
    opts.counters?.csr();
    void (async () => {
      const presented = call.getAuthContext().sslPeerCertificate;
      let peerId: SpiffeIdentity | undefined;
      try {
        peerId = verifiedPeerIdentity(presented, opts.root, opts.trustDomain);
      } catch (err) {
        throw new CertificateRequestError('UNAUTHENTICATED', (err as Error).message);
      }
      const { csr, uris, others } = await parseCsr(req.csr);
      const identity = authorizeIdentity(opts, uris, others, req.metadata, typeof auth === 'string' ? auth : undefined, peerId);
      const asked = Number(req.validityDuration ?? 0) * 1000;
      const ttl = Math.min(asked > 0 ? asked : opts.defaultTtlMs, opts.maxTtlMs);
      const chain = await signWorkloadCertificate(opts.root, csr, identity, ttl);
      opts.logger.info({ identity, peer, ttlSeconds: Math.round(ttl / 1000) }, 'certificate issued');
      return chain;
    })().then(
      (certChain) => {
        opts.counters?.issued();
        callback(null, { certChain });
      },
      (err: unknown) => {
        opts.counters?.refused(err instanceof CertificateRequestError ? err.code : 'INTERNAL');
        const code = err instanceof CertificateRequestError ? grpc.status[err.code] : grpc.status.INTERNAL;
        const message = err instanceof Error ? err.message : String(err);
        opts.logger.warn({ peer, code: grpc.status[code], err: message }, 'certificate refused');
        callback({ code, details: message });
      },
    );
  };
  return { CreateCertificate: createCertificate } as unknown as grpc.UntypedServiceImplementation;
}

export function certificateService(): grpc.ServiceDefinition {
  return certificateServiceDefinition();
}
