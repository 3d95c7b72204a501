// Istio mutual TLS in the generated config: the client side (DestinationRule ISTIO_MUTUAL and
// auto mTLS by the endpoint's `tlsMode: istio` label) and the server side (inbound filter
// chains per PeerAuthentication: STRICT, PERMISSIVE, DISABLE, mesh-wide in the root namespace,
// per namespace, per workload and per port). Certificates are Istio's SDS secrets `default`
// and `ROOTCA`, which the sidecar serves itself.
import type { ProtoJson } from '../../envoy/index.ts';
import type { ClientTLSSettings, MutualTLSMode, PeerAuthenticationSpec } from '../../api/kinds.ts';
import type { Resource } from '../../api/resource.ts';
import type { Proxy } from '../model.ts';
import type { SextantPushContext } from '../push/context.ts';

export type PeerAuthenticationMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/** The label Istio's injector puts on workloads with a sidecar; EDS carries it for auto mTLS. */
export const TLS_MODE_LABEL = 'security.istio.io/tlsMode';

const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const RAW_BUFFER = 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';

/** Istio's SDS config: the agent's `sds-grpc` cluster (Sextant's proxy serves the secrets in-process). */
function sdsSecret(name: 'default' | 'ROOTCA'): ProtoJson {
  return {
    name,
    sdsConfig: {
      apiConfigSource: { apiType: 'GRPC', setNodeOnFirstMessageOnly: true, transportApiVersion: 'V3', grpcServices: [{ envoyGrpc: { clusterName: 'sds-grpc' } }] },
      initialFetchTimeout: '0s',
      resourceApiVersion: 'V3',
    },
  };
}

function commonTlsContext(alpn: readonly string[], sans: readonly string[]): ProtoJson {
  return {
    tlsParams: { tlsMinimumProtocolVersion: 'TLSv1_2', tlsMaximumProtocolVersion: 'TLSv1_3' },
    alpnProtocols: [...alpn],
    tlsCertificateSdsSecretConfigs: [sdsSecret('default')],
    combinedValidationContext: {
      defaultValidationContext: sans.length > 0 ? { matchTypedSubjectAltNames: sans.map((s) => ({ sanType: 'URI', matcher: { exact: s } })) } : {},
      validationContextSdsSecretConfig: sdsSecret('ROOTCA'),
    },
  };
}

/** Istio's client ALPN: the istio.alpn filter's values per upstream protocol, `istio-peer-exchange, istio` for TCP. */
export function clientAlpn(protocol: 'http1' | 'http2' | 'tcp'): string[] {
  if (protocol === 'http1') return ['istio-http/1.1', 'istio', 'http/1.1'];
  if (protocol === 'http2') return ['istio-h2', 'istio', 'h2'];
  return ['istio-peer-exchange', 'istio'];
}

/**
 * The ISTIO_MUTUAL transport socket of an outbound cluster: SNI `outbound_.PORT_.SUBSET_.HOST`
 * as Istio sets it, unless the DestinationRule names one (`tls.sni`, e.g. the host an egress
 * gateway's ISTIO_MUTUAL server is for).
 */
export function istioMutualTransportSocket(host: string, port: number, subset: string, protocol: 'http1' | 'http2' | 'tcp', sans: readonly string[], sni?: string): ProtoJson {
  return {
    name: 'envoy.transport_sockets.tls',
    typedConfig: { '@type': UPSTREAM_TLS, commonTlsContext: commonTlsContext(clientAlpn(protocol), sans), sni: sni !== undefined && sni !== '' ? sni : `outbound_.${port}_.${subset}_.${host}` },
  };
}

/**
 * The client side of a cluster: DestinationRule `ISTIO_MUTUAL` sets the transport socket;
 * without TLS settings, auto mTLS sends TLS to endpoints labelled `tlsMode: istio` (they have
 * a sidecar) and plaintext to the others, as Istio does with transportSocketMatches.
 */
export function applyMeshTls(cluster: ProtoJson, tls: ClientTLSSettings | undefined, host: string, port: number, subset: string, protocol: 'http1' | 'http2' | 'tcp', auto: boolean): void {
  if (tls?.mode === 'ISTIO_MUTUAL') {
    cluster['transportSocket'] = istioMutualTransportSocket(host, port, subset, protocol, tls.subjectAltNames ?? [], tls.sni);
    return;
  }
  if (!auto || tls?.mode !== undefined || cluster['type'] !== 'EDS') return;
  cluster['transportSocketMatches'] = [
    { name: 'tlsMode-istio', match: { tlsMode: 'istio' }, transportSocket: istioMutualTransportSocket(host, port, subset, protocol, []) },
    { name: 'tlsMode-disabled', match: {}, transportSocket: { name: 'envoy.transport_sockets.raw_buffer', typedConfig: { '@type': RAW_BUFFER } } },
  ];
}

/**
 * Whether a proxy has a workload certificate to do mesh mTLS with: it announces its service
 * account (node metadata SERVICE_ACCOUNT, as istio-agent and `sextant proxy --service-account`
 * send). Proxies without one get neither auto mTLS nor TLS inbound chains.
 */
export function hasWorkloadCertificate(proxy: Proxy): boolean {
  const sa = proxy.metadata['SERVICE_ACCOUNT'];
  return typeof sa === 'string' && sa !== '';
}

/** The client ALPN family of a service port's protocol. */
export function meshProtocol(protocol: string): 'http1' | 'http2' | 'tcp' {
  if (protocol === 'HTTP2' || protocol === 'GRPC') return 'http2';
  if (protocol === 'HTTP' || protocol === 'GRPC-WEB') return 'http1';
  return 'tcp';
}

/** EDS metadata for auto mTLS: Istio's `envoy.transport_socket_match` from the workload's tlsMode label. */
export function transportSocketMatchMetadata(labels: Readonly<Record<string, string>>): ProtoJson | undefined {
  return labels[TLS_MODE_LABEL] === 'istio' ? { tlsMode: 'istio' } : undefined;
}

// ---------------------------------------------------------------- server side: PeerAuthentication

interface PeerAuthenticationIndex {
  /** Mesh-wide policies (root namespace, no selector), oldest first. */
  mesh: readonly Resource[];
  /** Per namespace: policies, oldest first. */
  byNamespace: ReadonlyMap<string, readonly Resource[]>;
}

function index(push: SextantPushContext): PeerAuthenticationIndex {
  return push.memoize('peerauth-index', () => {
    const byNamespace = new Map<string, Resource[]>();
    for (const r of push.resources) {
      if (r.kind !== 'PeerAuthentication') continue;
      const ns = r.metadata.namespace ?? 'default';
      let list = byNamespace.get(ns);
      if (list === undefined) byNamespace.set(ns, (list = []));
      list.push(r);
    }
    for (const list of byNamespace.values()) list.sort(oldestFirst);
    const root = byNamespace.get(push.mesh.rootNamespace) ?? [];
    return { mesh: root.filter((r) => !hasSelector(spec(r))), byNamespace };
  });
}

// Istio's conflict rule: the oldest policy wins, then the name.
function oldestFirst(a: Resource, b: Resource): number {
  const ta = String((a.metadata as { creationTimestamp?: string }).creationTimestamp ?? '');
  const tb = String((b.metadata as { creationTimestamp?: string }).creationTimestamp ?? '');
  return ta < tb ? -1 : ta > tb ? 1 : a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

function spec(r: Resource): PeerAuthenticationSpec {
  return (r.spec ?? {}) as PeerAuthenticationSpec;
}

function hasSelector(s: PeerAuthenticationSpec): boolean {
  return s.selector?.matchLabels !== undefined && Object.keys(s.selector.matchLabels).length > 0;
}

/** Whether a PeerAuthentication with a workload selector selects these labels (namespace-wide ones: false). */
export function peerAuthenticationSelects(r: Resource, labels: Readonly<Record<string, string>>): boolean {
  return hasSelector(spec(r)) && selects(spec(r), labels);
}

function selects(s: PeerAuthenticationSpec, labels: Readonly<Record<string, string>>): boolean {
  const m = s.selector?.matchLabels ?? {};
  for (const k in m) if (labels[k] !== m[k]) return false;
  return true;
}

function set(mode: MutualTLSMode | undefined): PeerAuthenticationMode | undefined {
  return mode === undefined || mode === 'UNSET' ? undefined : mode;
}

/**
 * The mTLS mode of a proxy's inbound `port` (the workload's target port): a workload policy
 * (selector) over the namespace's (no selector) over the mesh's (root namespace); a workload
 * policy's `portLevelMtls` over all of them for its port; UNSET inherits; PERMISSIVE by default.
 */
export function peerAuthenticationMode(push: SextantPushContext, proxy: Proxy, port: number): PeerAuthenticationMode {
  const idx = index(push);
  const local = idx.byNamespace.get(proxy.namespace) ?? [];
  const workload = local.find((r) => hasSelector(spec(r)) && selects(spec(r), proxy.labels));
  const namespace = local.find((r) => !hasSelector(spec(r)));
  const mesh = idx.mesh[0];
  const inherited = set(namespace !== undefined ? spec(namespace).mtls?.mode : undefined)
    ?? set(mesh !== undefined ? spec(mesh).mtls?.mode : undefined)
    ?? 'PERMISSIVE';
  if (workload === undefined) return inherited;
  const w = spec(workload);
  return set(w.portLevelMtls?.[String(port)]?.mode) ?? set(w.mtls?.mode) ?? inherited;
}

const HTTP_MTLS_ALPN = ['istio-http/1.0', 'istio-http/1.1', 'istio-h2'];
const TCP_MTLS_ALPN = ['istio-peer-exchange', 'istio'];

/** Istio's inbound DownstreamTlsContext: the client must present a mesh certificate. */
export function downstreamTransportSocket(http: boolean): ProtoJson {
  return {
    name: 'envoy.transport_sockets.tls',
    typedConfig: {
      '@type': DOWNSTREAM_TLS,
      commonTlsContext: commonTlsContext(http ? ['h2', 'http/1.1'] : ['istio-peer-exchange', 'h2', 'http/1.1'], []),
      requireClientCertificate: true,
    },
  };
}

/** Envoy's tls_inspector, which the TLS chains' `transportProtocol` match needs. */
export const TLS_INSPECTOR: ProtoJson = {
  name: 'envoy.filters.listener.tls_inspector',
  typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' },
};

/**
 * The inbound chains of one port under its PeerAuthentication mode, from its plaintext chain:
 * DISABLE keeps it alone; STRICT replaces it with the mTLS chain (plaintext finds no chain and
 * is closed); PERMISSIVE has both, told apart by the first bytes.
 */
export function inboundChainsFor(mode: PeerAuthenticationMode, plain: ProtoJson, http: boolean): ProtoJson[] {
  if (mode === 'DISABLE') return [plain];
  const match = (plain['filterChainMatch'] ?? {}) as ProtoJson;
  const tls: ProtoJson = {
    ...plain,
    filterChainMatch: { ...match, transportProtocol: 'tls', applicationProtocols: http ? HTTP_MTLS_ALPN : TCP_MTLS_ALPN },
    transportSocket: downstreamTransportSocket(http),
  };
  if (mode === 'STRICT') return [tls];
  return [tls, { ...plain, filterChainMatch: { ...match, transportProtocol: 'raw_buffer' } }];
}

/** True when a listener's chains need the tls_inspector. */
export function needsTlsInspector(chains: readonly ProtoJson[]): boolean {
  return chains.some((c) => ((c['filterChainMatch'] ?? {}) as ProtoJson)['transportProtocol'] === 'tls');
}
