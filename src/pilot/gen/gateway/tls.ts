// A gateway server's DownstreamTlsContext, as istiod builds it: `credentialName` as the SDS
// secrets `kubernetes://NAME` (and `kubernetes://NAME-cacert` for MUTUAL), served by the pilot
// over ADS; certificate files as Envoy's file DataSources; ISTIO_MUTUAL as the workload's own
// SDS `default`/`ROOTCA`. Protocol versions, ciphers, curves and client SAN checks carried over.
import type { ProtoJson } from '../../../envoy/index.ts';
import type { ServerTLSSettings, TLSProtocol } from '../../../api/index.ts';

export const DOWNSTREAM_TLS_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
/** Istio's SDS name prefix for Kubernetes secrets, and the suffix of a credential's CA. */
export const KUBERNETES_SECRET_PREFIX = 'kubernetes://';
export const CA_SUFFIX = '-cacert';

/** SDS over the ADS stream: where a gateway fetches `kubernetes://` secrets from the pilot. */
export const ADS_SDS_CONFIG: ProtoJson = { ads: {}, initialFetchTimeout: '0s', resourceApiVersion: 'V3' };

/** istio-agent's SDS socket, where the workload's own `default` and `ROOTCA` come from. */
const AGENT_SDS_CONFIG: ProtoJson = {
  apiConfigSource: { apiType: 'GRPC', setNodeOnFirstMessageOnly: true, transportApiVersion: 'V3', grpcServices: [{ envoyGrpc: { clusterName: 'sds-grpc' } }] },
  initialFetchTimeout: '0s',
  resourceApiVersion: 'V3',
};

/** Istio's ALPN for HTTPS servers. */
const ALPN_H2_H1 = ['h2', 'http/1.1'];

function tlsVersion(v: TLSProtocol | undefined): string | undefined {
  switch (v) {
    case 'TLSV1_0': return 'TLSv1_0';
    case 'TLSV1_1': return 'TLSv1_1';
    case 'TLSV1_2': return 'TLSv1_2';
    case 'TLSV1_3': return 'TLSv1_3';
    default: return undefined;
  }
}

function fileSource(path: string): ProtoJson {
  return { filename: path };
}

/** SAN matchers for a client certificate (Istio's subjectAltNames, exact). */
function sanMatchers(sans: readonly string[]): ProtoJson[] {
  return sans.map((s) => ({ sanType: s.includes('://') ? 'URI' : 'DNS', matcher: { exact: s } }));
}

/**
 * The DownstreamTlsContext of a terminating server (SIMPLE, MUTUAL, OPTIONAL_MUTUAL,
 * ISTIO_MUTUAL). `http` chooses Istio's ALPN for HTTPS servers (none for TLS servers).
 */
export function serverTlsContext(tls: ServerTLSSettings, http: boolean): ProtoJson {
  const mode = tls.mode ?? 'SIMPLE';
  const common: ProtoJson = {};
  const params: ProtoJson = { tlsMinimumProtocolVersion: tlsVersion(tls.minProtocolVersion) ?? 'TLSv1_2' };
  const max = tlsVersion(tls.maxProtocolVersion);
  if (max !== undefined) params['tlsMaximumProtocolVersion'] = max;
  if (tls.cipherSuites?.length) params['cipherSuites'] = [...tls.cipherSuites];
  if (tls.ecdhCurves?.length) params['ecdhCurves'] = [...tls.ecdhCurves];
  common['tlsParams'] = params;
  if (http) common['alpnProtocols'] = [...ALPN_H2_H1];
  const validation: ProtoJson = {};
  if (tls.subjectAltNames?.length) validation['matchTypedSubjectAltNames'] = sanMatchers(tls.subjectAltNames);
  if (tls.verifyCertificateSpki?.length) validation['verifyCertificateSpki'] = [...tls.verifyCertificateSpki];
  if (tls.verifyCertificateHash?.length) validation['verifyCertificateHash'] = [...tls.verifyCertificateHash];
  const ctx: ProtoJson = { '@type': DOWNSTREAM_TLS_TYPE, commonTlsContext: common };

  if (mode === 'ISTIO_MUTUAL') {
    common['tlsCertificateSdsSecretConfigs'] = [{ name: 'default', sdsConfig: AGENT_SDS_CONFIG }];
    common['combinedValidationContext'] = { defaultValidationContext: validation, validationContextSdsSecretConfig: { name: 'ROOTCA', sdsConfig: AGENT_SDS_CONFIG } };
    ctx['requireClientCertificate'] = true;
    return ctx;
  }
  const mutual = mode === 'MUTUAL' || mode === 'OPTIONAL_MUTUAL';
  const names = [tls.credentialName, ...(tls.credentialNames ?? [])].filter((n): n is string => n !== undefined && n !== '');
  if (names.length > 0) {
    common['tlsCertificateSdsSecretConfigs'] = names.map((n) => ({ name: `${KUBERNETES_SECRET_PREFIX}${n}`, sdsConfig: ADS_SDS_CONFIG }));
    if (mutual) {
      const ca = tls.caCertCredentialName ? tls.caCertCredentialName : `${names[0]}${CA_SUFFIX}`;
      common['combinedValidationContext'] = { defaultValidationContext: validation, validationContextSdsSecretConfig: { name: `${KUBERNETES_SECRET_PREFIX}${ca}`, sdsConfig: ADS_SDS_CONFIG } };
    }
  } else {
    const pairs = tls.tlsCertificates?.length ? tls.tlsCertificates : [{ serverCertificate: tls.serverCertificate, privateKey: tls.privateKey }];
    common['tlsCertificates'] = pairs
      .filter((p) => p.serverCertificate && p.privateKey)
      .map((p) => ({ certificateChain: fileSource(p.serverCertificate!), privateKey: fileSource(p.privateKey!) }));
    if (mutual && tls.caCertificates) {
      common['validationContext'] = { ...validation, trustedCa: fileSource(tls.caCertificates) };
    }
  }
  if (mutual) ctx['requireClientCertificate'] = mode === 'MUTUAL';
  return ctx;
}

/** The SDS secret name a credential resource name refers to (`kubernetes://[NS/]NAME` → NS, NAME). */
export function parseCredentialResource(resourceName: string, proxyNamespace: string): { namespace: string; name: string } | undefined {
  if (!resourceName.startsWith(KUBERNETES_SECRET_PREFIX)) return undefined;
  const rest = resourceName.slice(KUBERNETES_SECRET_PREFIX.length);
  if (rest === '') return undefined;
  const slash = rest.indexOf('/');
  if (slash < 0) return { namespace: proxyNamespace, name: rest };
  const namespace = rest.slice(0, slash);
  const name = rest.slice(slash + 1);
  if (namespace === '' || name === '' || name.includes('/')) return undefined;
  return { namespace, name };
}
