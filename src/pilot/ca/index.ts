// The mesh CA (Istio's CreateCertificate): a signing root kept in a directory or plugged in
// from the platform, SPIFFE identities checked against the caller, short-lived leaves.
import type * as grpc from '@grpc/grpc-js';
import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import { CaConfigError, loadSigningRoot } from './root.ts';
import type { SigningRoot } from './root.ts';
import { certificateService, certificateServiceHandlers } from './service.ts';
import { TokenFile } from '../../registry/api/tokens.ts';
import type { CaCounters } from './service.ts';

export { CaConfigError, generateRoot, loadSigningRoot, ROOT_CERT_FILE, ROOT_KEY_FILE } from './root.ts';
export type { SigningRoot, SigningRootOptions } from './root.ts';
export { CertificateRequestError, parseCsr, signWorkloadCertificate } from './issue.ts';
export { authorizeIdentity } from './service.ts';
export { DEFAULT_PILOT_HOSTS, PeerIdentityError, PILOT_NAMESPACE, PILOT_SERVICE_ACCOUNT, startServingCertificate, verifiedPeerIdentity } from './serving.ts';
export type { ServingCertificate } from './serving.ts';
export type { TokenAuthorizer } from './service.ts';

export interface CertificateAuthorityOptions {
  /** Directory of the generated root (`--ca-dir`). */
  dir: string;
  /** `--trust-domain`, default cluster.local. */
  trustDomain?: string;
  /** A platform CA (`--ca-cert-file`, `--ca-key-file`, `--ca-root-file`). */
  certFile?: string;
  keyFile?: string;
  rootFile?: string;
  /** `--ca-tokens`: bootstrap tokens a caller must present; absent, any caller is believed. */
  tokensFile?: string;
  /** Default and longest workload certificate lifetimes (24 h, 90 days). */
  defaultTtlMs?: number;
  maxTtlMs?: number;
  /** Start without a CA (logging why) rather than fail when the root cannot be loaded or made: the CLI's default directory. */
  optional?: boolean;
}

export interface CertificateAuthority {
  trustDomain: string;
  root: SigningRoot;
  /** Whether callers must present a bootstrap token (or a mesh certificate) for a certificate. */
  tokensRequired: boolean;
  /** Adds IstioCertificateService to a gRPC server (the pilot's xDS server). */
  register(server: grpc.Server): void;
  /** Stops following the token file. */
  close(): void;
}

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const DEFAULT_WORKLOAD_TTL_MS = 24 * 3600 * 1000;

export async function startCertificateAuthority(opts: CertificateAuthorityOptions, logger: Logger, registry?: Registry): Promise<CertificateAuthority> {
  const trustDomain = opts.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  // re-read when it changes (a namespace added, a token revoked), as the registration tokens are
  const tokens = opts.tokensFile !== undefined ? new TokenFile(opts.tokensFile, logger, { what: 'CA bootstrap' }) : undefined;
  if (tokens !== undefined && tokens.size === 0) {
    tokens.close();
    throw new CaConfigError(`${opts.tokensFile}: no tokens`);
  }
  const root = await loadSigningRoot({
    dir: opts.dir,
    trustDomain,
    ...(opts.certFile !== undefined ? { certFile: opts.certFile } : {}),
    ...(opts.keyFile !== undefined ? { keyFile: opts.keyFile } : {}),
    ...(opts.rootFile !== undefined ? { rootFile: opts.rootFile } : {}),
  });
  logger.info({ source: root.source, dir: opts.dir, trustDomain, subject: root.cert.subject, notAfter: root.cert.notAfter.toISOString(), tokens: tokens !== undefined }, 'mesh CA ready');
  if (tokens === undefined) logger.warn('mesh CA without --ca-tokens: any caller that reaches the xDS port can obtain any identity it names in its metadata');
  const handlers = certificateServiceHandlers({
    root,
    trustDomain,
    defaultTtlMs: opts.defaultTtlMs ?? DEFAULT_WORKLOAD_TTL_MS,
    maxTtlMs: opts.maxTtlMs ?? 90 * 24 * 3600 * 1000,
    tokens,
    logger,
    ...(registry !== undefined ? { counters: caCounters(registry, root) } : {}),
  });
  return {
    trustDomain,
    root,
    tokensRequired: tokens !== undefined,
    register(server) {
      server.addService(certificateService(), handlers);
    },
    close() {
      tokens?.close();
    },
  };
}

// Istio's names (istiod's citadel_server_*), so existing dashboards read them.
function caCounters(registry: Registry, root: SigningRoot): CaCounters {
  const registers = [registry];
  const csr = new Counter({ name: 'citadel_server_csr_count', help: 'The number of CSRs received by the CA.', registers });
  const issued = new Counter({ name: 'citadel_server_success_cert_issuance_count', help: 'The number of certificates issued.', registers });
  const authn = new Counter({ name: 'citadel_server_authentication_failure_count', help: 'CSRs refused because the caller is not who it must be (token, identity).', registers });
  const parse = new Counter({ name: 'citadel_server_csr_parsing_err_count', help: 'CSRs that did not parse or verify.', registers });
  const sign = new Counter({ name: 'citadel_server_csr_sign_err_count', help: 'CSRs the CA failed to sign.', registers });
  new Gauge({ name: 'citadel_server_root_cert_expiry_timestamp', help: 'When the CA\'s root certificate expires (Unix seconds).', registers }).set(Math.floor(root.cert.notAfter.getTime() / 1000));
  return {
    csr: () => csr.inc(),
    issued: () => issued.inc(),
    refused: (code) => (code === 'INVALID_ARGUMENT' ? parse : code === 'INTERNAL' ? sign : authn).inc(),
  };
}
