// Envoy's TLS transport sockets as this proxy honours them: Istio's mesh TLS, whose
// certificates come from the SDS secrets `default` (the workload's key and chain) and
// `ROOTCA` (the mesh roots). This proxy serves both secrets in-process from its own CA
// client (docs/security.md says why). Other TLS is not honoured yet: upstream it stays
// plaintext and a listener's chain asking for it never matches, as before TLS existed here.
import type { ProtoJson } from '../../envoy/index.ts';
import { ConfigError } from '../config/fields.ts';

export const TLS_TRANSPORT_SOCKET = 'envoy.transport_sockets.tls';
const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const RAW_BUFFER = 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';

export interface UpstreamTlsSpec {
  sni: string;
  alpn: string[];
  /** Exact SPIFFE URIs the server may have; empty: any workload of the trust domain. */
  sans: string[];
}

export interface DownstreamTlsSpec {
  /** Istio's mesh TLS (SDS `default`/`ROOTCA`); other TLS (gateway certificates from files) is not served: such a chain never matches. */
  mesh: boolean;
  requireClientCertificate: boolean;
  alpn: string[];
  /** Exact SPIFFE URIs a client may have; empty: any workload of the trust domain. */
  sans: string[];
}

/** A cluster's `transportSocket`: undefined for none or raw_buffer, else its TLS spec. */
export function compileUpstreamTls(ts: ProtoJson | undefined, at: string): UpstreamTlsSpec | undefined {
  const typed = transportConfig(ts, at);
  if (typed === undefined) return undefined;
  if (typed['@type'] !== UPSTREAM_TLS) throw new ConfigError(`${at}.typedConfig: expected ${UPSTREAM_TLS}, got ${String(typed['@type'])}`);
  const common = (typed['commonTlsContext'] ?? {}) as ProtoJson;
  const sans = meshSans(common);
  if (sans === undefined) return undefined;
  return { sni: String(typed['sni'] ?? ''), alpn: strings(common['alpnProtocols']), sans };
}

/** A filter chain's `transportSocket`: undefined for none or raw_buffer, else its TLS spec. */
export function compileDownstreamTls(ts: ProtoJson | undefined, at: string): DownstreamTlsSpec | undefined {
  const typed = transportConfig(ts, at);
  if (typed === undefined) return undefined;
  if (typed['@type'] !== DOWNSTREAM_TLS) throw new ConfigError(`${at}.typedConfig: expected ${DOWNSTREAM_TLS}, got ${String(typed['@type'])}`);
  const common = (typed['commonTlsContext'] ?? {}) as ProtoJson;
  const rcc = typed['requireClientCertificate'];
  const require = typeof rcc === 'object' && rcc !== null ? (rcc as ProtoJson)['value'] === true : rcc === true;
  const sans = meshSans(common);
  return { requireClientCertificate: require, alpn: strings(common['alpnProtocols']), sans: sans ?? [], mesh: sans !== undefined };
}

/**
 * `transportSocketMatches` (auto mTLS): each entry's `match` against an endpoint's
 * `envoy.transport_socket_match` metadata, first match wins.
 */
export function compileTransportSocketMatches(list: unknown, at: string): { match: Record<string, unknown>; tls: UpstreamTlsSpec | undefined }[] {
  return ((list as ProtoJson[] | undefined) ?? []).map((m, i) => ({
    match: ((m['match'] ?? {}) as Record<string, unknown>),
    tls: compileUpstreamTls(m['transportSocket'] as ProtoJson | undefined, `${at}[${i}].transportSocket`),
  }));
}

function transportConfig(ts: ProtoJson | undefined, at: string): ProtoJson | undefined {
  if (ts === undefined) return undefined;
  const typed = ts['typedConfig'] as ProtoJson | undefined;
  if (typed?.['@type'] === RAW_BUFFER || (typed === undefined && ts['name'] === 'envoy.transport_sockets.raw_buffer')) return undefined;
  if (ts['name'] !== TLS_TRANSPORT_SOCKET && typed?.['@type'] !== UPSTREAM_TLS && typed?.['@type'] !== DOWNSTREAM_TLS) {
    throw new ConfigError(`${at}: transport socket ${String(ts['name'] ?? typed?.['@type'])} is not supported (raw_buffer or ${TLS_TRANSPORT_SOCKET})`);
  }
  if (typed === undefined) throw new ConfigError(`${at}.typedConfig: a TLS transport socket needs its context`);
  return typed;
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.map(String) : [];
}

// Istio's mesh TLS names the SDS secrets "default" and "ROOTCA", which this proxy serves
// itself; returns the exact SANs of the validation context (matchSubjectAltNames /
// matchTypedSubjectAltNames), or undefined for any other TLS (certificate files, other
// secrets): not honoured yet, so such a socket stays plaintext, as before TLS existed here.
function meshSans(common: ProtoJson): string[] | undefined {
  if (common['tlsCertificates'] !== undefined && (common['tlsCertificates'] as unknown[]).length > 0) return undefined;
  const certs = (common['tlsCertificateSdsSecretConfigs'] as ProtoJson[] | undefined) ?? [];
  if (certs.length !== 1 || certs[0]!['name'] !== 'default') return undefined;
  const combined = common['combinedValidationContext'] as ProtoJson | undefined;
  const rootName = (combined?.['validationContextSdsSecretConfig'] as ProtoJson | undefined)?.['name'] ?? (common['validationContextSdsSecretConfig'] as ProtoJson | undefined)?.['name'];
  if (rootName !== 'ROOTCA') return undefined;
  const dvc = (combined?.['defaultValidationContext'] ?? {}) as ProtoJson;
  const sans: string[] = [];
  for (const m of (dvc['matchSubjectAltNames'] as ProtoJson[] | undefined) ?? []) if (typeof m['exact'] === 'string') sans.push(m['exact']);
  for (const m of (dvc['matchTypedSubjectAltNames'] as ProtoJson[] | undefined) ?? []) {
    const exact = (m['matcher'] as ProtoJson | undefined)?.['exact'];
    if (typeof exact === 'string') sans.push(exact);
  }
  return sans;
}
