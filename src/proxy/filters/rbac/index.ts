// The RBAC room: Envoy's `envoy.filters.http.rbac` / `envoy.filters.network.rbac`, compiled
// from listener config (compileRbac) and evaluated per request (evaluateRbac) on a subject
// the connection manager builds (httpSubject), after path normalization and XFF handling.
import { isIP } from 'node:net';
import type { RawHeader } from '../../http/index.ts';
import type { RbacSubject } from './rbac.ts';

export { compileRbac, compileCidr, deniedDetails, evaluateRbac, HTTP_RBAC_TYPE, NETWORK_RBAC_TYPE } from './rbac.ts';
export type { RbacAction, RbacDecision, RbacFilter, RbacPolicy, RbacSubject } from './rbac.ts';

/** The body and flag of Envoy's RBAC denial. */
export const RBAC_DENIED_BODY = 'RBAC: access denied';
export const RBAC_FLAG = 'RBAC';

/** What the connection manager knows of a request when the RBAC filters run. */
export interface HttpRequestFacts {
  method: string;
  /** The normalized request target (path and query). */
  target: string;
  /** The normalized path, without query. */
  path: string;
  authority: string;
  scheme: string;
  headers: readonly RawHeader[];
  /** x-forwarded-for as the request arrived (before this proxy appended to it). */
  receivedXff: string | undefined;
  remoteAddress: string;
  localAddress: string;
  localPort: number;
  useRemoteAddress: boolean;
  xffNumTrustedHops: number;
  requestedServerName?: string | undefined;
  principal?: string | undefined;
  metadata?: RbacSubject['metadata'];
}

/**
 * The client address as Envoy's connection manager computes it: with use_remote_address the
 * peer, or with trusted hops the XFF entry before them; without it the last XFF entry after
 * the trusted hops, falling back to the peer when XFF has too few valid entries.
 */
export function remoteAddressOf(peer: string, xff: string | undefined, useRemoteAddress: boolean, trustedHops: number): string {
  if (useRemoteAddress && trustedHops === 0) return peer;
  if (xff === undefined || xff === '') return peer;
  const entries = xff.split(',').map((e) => e.trim());
  const skip = useRemoteAddress ? trustedHops - 1 : trustedHops;
  const i = entries.length - 1 - skip;
  if (i < 0) return peer;
  const candidate = entries[i]!;
  return isIP(candidate) !== 0 ? candidate : peer;
}

export function httpSubject(f: HttpRequestFacts): RbacSubject {
  const headers: RawHeader[] = [
    { name: ':method', value: f.method },
    { name: ':path', value: f.target },
    { name: ':authority', value: f.authority },
    { name: ':scheme', value: f.scheme },
  ];
  for (const h of f.headers) if (h.name.toLowerCase() !== 'host') headers.push(h);
  return {
    headers,
    urlPath: f.path,
    directRemoteIp: f.remoteAddress,
    remoteIp: remoteAddressOf(f.remoteAddress, f.receivedXff, f.useRemoteAddress, f.xffNumTrustedHops),
    destinationIp: f.localAddress,
    destinationPort: f.localPort,
    requestedServerName: f.requestedServerName ?? '',
    principal: f.principal,
    metadata: f.metadata,
  };
}

/** A TCP connection as the network RBAC filter sees it: addresses, port, SNI and peer identity only. */
export function connectionSubject(c: { remoteAddress: string; localAddress: string; localPort: number; requestedServerName?: string | undefined; principal?: string | undefined }): RbacSubject {
  return {
    headers: [],
    urlPath: undefined,
    directRemoteIp: c.remoteAddress,
    remoteIp: c.remoteAddress,
    destinationIp: c.localAddress,
    destinationPort: c.localPort,
    requestedServerName: c.requestedServerName ?? '',
    principal: c.principal,
    metadata: undefined,
  };
}
