// Envoy's TLS transport sockets as this proxy honours them: Istio's mesh TLS, whose
// certificates come from the SDS secrets `default` (the workload's key and chain) and
// `ROOTCA` (the mesh roots), which this proxy serves in-process from its own CA client
// (docs/security.md says why); and, downstream, a gateway's TLS: certificates from SDS secrets
// fetched over ADS (`kubernetes://NAME`), from files, or inline (docs/gateways.md). Upstream,
// TLS other than the mesh's is not honoured yet: such a cluster stays plaintext.
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

/** Where a gateway's certificate or CA comes from: an SDS secret (over ADS), a file, or inline bytes. */
export type TlsSource = { sds: string } | { file: string } | { inline: Buffer };

/** A SAN matcher of a validation context (Envoy's matchTypedSubjectAltNames / matchSubjectAltNames). */
export interface SanMatcher {
  /** DNS, URI, EMAIL, IP_ADDRESS; undefined: any type. */
  type: string | undefined;
  match: (value: string) => boolean;
}

/** A gateway's (non-mesh) TLS: its certificates, its client validation, its protocol limits. */
export interface ServerTlsSpec {
  certificates: { chain: TlsSource; key: TlsSource | undefined }[];
  /** The CA client certificates must chain to; undefined: none asked for. */
  trustedCa: TlsSource | undefined;
  sanMatchers: readonly SanMatcher[];
  /** Base64 SHA-256 of the client certificate's SubjectPublicKeyInfo (any of them). */
  spki: readonly string[];
  /** Hex SHA-256 of the client certificate (any of them), lower-case, no colons. */
  certHashes: readonly string[];
  minVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  maxVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  ciphers: string | undefined;
  ecdhCurve: string | undefined;
}

export interface DownstreamTlsSpec {
  /** Istio's mesh TLS (SDS `default`/`ROOTCA`), served from the workload certificate; else `server` says what to serve. */
  mesh: boolean;
  /** The gateway TLS of a non-mesh context. */
  server?: ServerTlsSpec;
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
  if (sans !== undefined) return { requireClientCertificate: require, alpn: strings(common['alpnProtocols']), sans, mesh: true };
  return { requireClientCertificate: require, alpn: strings(common['alpnProtocols']), sans: [], mesh: false, server: compileServerTls(common, `${at}.typedConfig.commonTlsContext`) };
}

const TLS_VERSIONS: Readonly<Record<string, ServerTlsSpec['minVersion']>> = { TLSv1_0: 'TLSv1', TLSv1_1: 'TLSv1.1', TLSv1_2: 'TLSv1.2', TLSv1_3: 'TLSv1.3' };

function dataSource(v: unknown, at: string): TlsSource {
  const d = (v ?? {}) as ProtoJson;
  if (typeof d['filename'] === 'string' && d['filename'] !== '') return { file: d['filename'] };
  if (typeof d['inlineString'] === 'string') return { inline: Buffer.from(d['inlineString'], 'utf8') };
  if (d['inlineBytes'] !== undefined) return { inline: Buffer.isBuffer(d['inlineBytes']) || d['inlineBytes'] instanceof Uint8Array ? Buffer.from(d['inlineBytes'] as Uint8Array) : Buffer.from(String(d['inlineBytes']), 'base64') };
  throw new ConfigError(`${at}: a data source needs filename, inlineString or inlineBytes (environment variables are not supported)`);
}

function sdsName(v: unknown, at: string): string {
  const c = (v ?? {}) as ProtoJson;
  const name = c['name'];
  if (typeof name !== 'string' || name === '') throw new ConfigError(`${at}.name: required`);
  const cfg = (c['sdsConfig'] ?? {}) as ProtoJson;
  // This proxy fetches secrets over its ADS stream (the pilot's SDS), whatever the config source names.
  if (cfg['path'] !== undefined || cfg['pathConfigSource'] !== undefined) throw new ConfigError(`${at}.sdsConfig: secrets from a path are not supported (ADS only)`);
  return name;
}

function stringMatcher(m: ProtoJson, at: string): (s: string) => boolean {
  const ic = m['ignoreCase'] === true;
  const norm = (s: string): string => (ic ? s.toLowerCase() : s);
  if (typeof m['exact'] === 'string') { const v = norm(m['exact']); return (s) => norm(s) === v; }
  if (typeof m['prefix'] === 'string') { const v = norm(m['prefix']); return (s) => norm(s).startsWith(v); }
  if (typeof m['suffix'] === 'string') { const v = norm(m['suffix']); return (s) => norm(s).endsWith(v); }
  if (typeof m['contains'] === 'string') { const v = norm(m['contains']); return (s) => norm(s).includes(v); }
  const re = (m['safeRegex'] as ProtoJson | undefined)?.['regex'];
  if (typeof re === 'string') {
    let r: RegExp;
    try { r = new RegExp(`^(?:${re})$`); } catch { throw new ConfigError(`${at}.safeRegex.regex: invalid regular expression`); }
    return (s) => r.test(s);
  }
  throw new ConfigError(`${at}: expected one of exact, prefix, suffix, contains, safeRegex`);
}

/** A gateway's DownstreamTlsContext (certificates from SDS, files or inline; client validation). */
function compileServerTls(common: ProtoJson, at: string): ServerTlsSpec {
  const certificates: ServerTlsSpec['certificates'] = [];
  ((common['tlsCertificates'] as ProtoJson[] | undefined) ?? []).forEach((c, i) => {
    if (c['privateKeyProvider'] !== undefined) throw new ConfigError(`${at}.tlsCertificates[${i}].privateKeyProvider: not supported by this proxy`);
    certificates.push({ chain: dataSource(c['certificateChain'], `${at}.tlsCertificates[${i}].certificateChain`), key: dataSource(c['privateKey'], `${at}.tlsCertificates[${i}].privateKey`) });
  });
  ((common['tlsCertificateSdsSecretConfigs'] as ProtoJson[] | undefined) ?? []).forEach((c, i) => {
    certificates.push({ chain: { sds: sdsName(c, `${at}.tlsCertificateSdsSecretConfigs[${i}]`) }, key: undefined });
  });
  if (certificates.length === 0) throw new ConfigError(`${at}: a server TLS context needs tlsCertificates or tlsCertificateSdsSecretConfigs`);
  const combined = common['combinedValidationContext'] as ProtoJson | undefined;
  const vc = (combined?.['defaultValidationContext'] ?? common['validationContext']) as ProtoJson | undefined;
  const sdsVc = (combined?.['validationContextSdsSecretConfig'] ?? common['validationContextSdsSecretConfig']) as ProtoJson | undefined;
  let trustedCa: TlsSource | undefined;
  if (sdsVc !== undefined) trustedCa = { sds: sdsName(sdsVc, `${at}.validationContextSdsSecretConfig`) };
  else if (vc?.['trustedCa'] !== undefined) trustedCa = dataSource(vc['trustedCa'], `${at}.validationContext.trustedCa`);
  if (vc?.['crl'] !== undefined) throw new ConfigError(`${at}.validationContext.crl: certificate revocation lists are not supported by this proxy`);
  const sanMatchers: SanMatcher[] = [];
  ((vc?.['matchTypedSubjectAltNames'] as ProtoJson[] | undefined) ?? []).forEach((m, i) => {
    sanMatchers.push({ type: String(m['sanType'] ?? ''), match: stringMatcher((m['matcher'] ?? {}) as ProtoJson, `${at}.validationContext.matchTypedSubjectAltNames[${i}].matcher`) });
  });
  ((vc?.['matchSubjectAltNames'] as ProtoJson[] | undefined) ?? []).forEach((m, i) => {
    sanMatchers.push({ type: undefined, match: stringMatcher(m, `${at}.validationContext.matchSubjectAltNames[${i}]`) });
  });
  const params = (common['tlsParams'] ?? {}) as ProtoJson;
  const version = (v: unknown, fallback: ServerTlsSpec['minVersion'], field: string): ServerTlsSpec['minVersion'] => {
    if (v === undefined || v === 'TLS_AUTO') return fallback;
    const out = TLS_VERSIONS[String(v)];
    if (out === undefined) throw new ConfigError(`${at}.tlsParams.${field}: unknown version ${JSON.stringify(v)}`);
    return out;
  };
  const ciphers = strings(params['cipherSuites']);
  const curves = strings(params['ecdhCurves']);
  return {
    certificates,
    trustedCa,
    sanMatchers,
    spki: strings(vc?.['verifyCertificateSpki']),
    certHashes: strings(vc?.['verifyCertificateHash']).map((h) => h.replace(/:/g, '').toLowerCase()),
    minVersion: version(params['tlsMinimumProtocolVersion'], 'TLSv1.2', 'tlsMinimumProtocolVersion'),
    maxVersion: version(params['tlsMaximumProtocolVersion'], 'TLSv1.3', 'tlsMaximumProtocolVersion'),
    ciphers: ciphers.length > 0 ? ciphers.join(':') : undefined,
    ecdhCurve: curves.length > 0 ? curves.join(':') : undefined,
  };
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
