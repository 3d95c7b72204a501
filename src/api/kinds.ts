// The Istio kinds Sextant serves: their API groups, versions and full spec types,
// field for field as users write them in YAML (camelCase, proto3 JSON mapping).
import type { AdaptiveLimitSpec } from './adaptive-limit.ts';
import type { LaneGroupSpec } from './lane-group.ts';
import type { RouteTemplatesSpec } from './route-templates.ts';
import type { RateLimitSpec } from './rate-limit.ts';
import type { LazyScopeSpec, WorkloadScopeSpec } from './lazy-scope.ts';

// ---------------------------------------------------------------- shared shapes

/** A proto Duration in its JSON form: "1s", "100ms", "1.5s", "1h" (Kubernetes-style units accepted). */
export type Duration = string;

/** A proto Struct / arbitrary JSON value (EnvoyFilter patch values, metadata). */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface StringMatch {
  exact?: string;
  prefix?: string;
  /** RE2 syntax. */
  regex?: string;
}

export interface PortSelector {
  number?: number;
}

export interface Destination {
  host: string;
  subset?: string;
  port?: PortSelector;
}

export interface Percent {
  value?: number;
}

export interface WorkloadSelector {
  labels?: Record<string, string>;
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
}

export interface PolicyTargetReference {
  group?: string;
  kind: string;
  name: string;
  namespace?: string;
}

/** A port as Gateway servers and Sidecar listeners declare it. */
export interface Port {
  number?: number;
  protocol?: string;
  name?: string;
  targetPort?: number;
}

// ---------------------------------------------------------------- VirtualService

export interface VirtualServiceSpec {
  hosts?: string[];
  gateways?: string[];
  http?: HTTPRoute[];
  tls?: TLSRoute[];
  tcp?: TCPRoute[];
  exportTo?: string[];
}

export interface HTTPRoute {
  name?: string;
  match?: HTTPMatchRequest[];
  route?: HTTPRouteDestination[];
  redirect?: HTTPRedirect;
  directResponse?: HTTPDirectResponse;
  delegate?: Delegate;
  rewrite?: HTTPRewrite;
  timeout?: Duration;
  retries?: HTTPRetry;
  fault?: HTTPFaultInjection;
  mirror?: Destination;
  mirrors?: HTTPMirrorPolicy[];
  /** Deprecated: use mirrorPercentage. */
  mirrorPercent?: number;
  /** Deprecated alias of mirrorPercent kept by Istio's schema. */
  mirror_percent?: number;
  mirrorPercentage?: Percent;
  corsPolicy?: CorsPolicy;
  headers?: Headers;
}

export interface HTTPMatchRequest {
  name?: string;
  uri?: StringMatch;
  scheme?: StringMatch;
  method?: StringMatch;
  authority?: StringMatch;
  headers?: Record<string, StringMatch>;
  port?: number;
  sourceLabels?: Record<string, string>;
  gateways?: string[];
  queryParams?: Record<string, StringMatch>;
  ignoreUriCase?: boolean;
  withoutHeaders?: Record<string, StringMatch>;
  sourceNamespace?: string;
  statPrefix?: string;
}

export interface HTTPRouteDestination {
  destination: Destination;
  weight?: number;
  headers?: Headers;
}

export interface RouteDestination {
  destination: Destination;
  weight?: number;
}

export interface HeaderOperations {
  set?: Record<string, string>;
  add?: Record<string, string>;
  remove?: string[];
}

export interface Headers {
  request?: HeaderOperations;
  response?: HeaderOperations;
}

export interface HTTPRedirect {
  uri?: string;
  authority?: string;
  port?: number;
  derivePort?: 'FROM_PROTOCOL_DEFAULT' | 'FROM_REQUEST_PORT';
  scheme?: string;
  redirectCode?: number;
  prefixRewrite?: string;
}

export interface HTTPDirectResponse {
  status: number;
  body?: { string?: string; bytes?: string };
}

export interface Delegate {
  name?: string;
  namespace?: string;
}

export interface RegexRewrite {
  match?: string;
  rewrite?: string;
}

export interface HTTPRewrite {
  uri?: string;
  authority?: string;
  uriRegexRewrite?: RegexRewrite;
}

export interface HTTPRetry {
  attempts?: number;
  perTryTimeout?: Duration;
  retryOn?: string;
  retryRemoteLocalities?: boolean;
  retryIgnorePreviousHosts?: boolean;
  backoff?: Duration;
}

export interface HTTPFaultInjection {
  delay?: {
    fixedDelay?: Duration;
    exponentialDelay?: Duration;
    percentage?: Percent;
    /** Deprecated integer percentage. */
    percent?: number;
  };
  abort?: {
    httpStatus?: number;
    grpcStatus?: string;
    http2Error?: string;
    percentage?: Percent;
  };
}

export interface HTTPMirrorPolicy {
  destination: Destination;
  percentage?: Percent;
}

export interface CorsPolicy {
  allowOrigin?: string[];
  allowOrigins?: StringMatch[];
  allowMethods?: string[];
  allowHeaders?: string[];
  exposeHeaders?: string[];
  maxAge?: Duration;
  allowCredentials?: boolean;
  unmatchedPreflights?: 'UNSPECIFIED' | 'FORWARD' | 'IGNORE';
}

export interface TLSMatchAttributes {
  sniHosts: string[];
  destinationSubnets?: string[];
  port?: number;
  sourceLabels?: Record<string, string>;
  gateways?: string[];
  sourceNamespace?: string;
}

export interface TLSRoute {
  match: TLSMatchAttributes[];
  route?: RouteDestination[];
}

export interface L4MatchAttributes {
  destinationSubnets?: string[];
  port?: number;
  sourceSubnet?: string;
  sourceLabels?: Record<string, string>;
  gateways?: string[];
  sourceNamespace?: string;
}

export interface TCPRoute {
  match?: L4MatchAttributes[];
  route?: RouteDestination[];
}

// ---------------------------------------------------------------- DestinationRule

export interface DestinationRuleSpec {
  host: string;
  trafficPolicy?: TrafficPolicy;
  subsets?: Subset[];
  exportTo?: string[];
  workloadSelector?: LabelSelector;
}

export interface Subset {
  name: string;
  labels?: Record<string, string>;
  trafficPolicy?: TrafficPolicy;
}

export interface TrafficPolicy {
  loadBalancer?: LoadBalancerSettings;
  connectionPool?: ConnectionPoolSettings;
  outlierDetection?: OutlierDetection;
  tls?: ClientTLSSettings;
  portLevelSettings?: PortTrafficPolicy[];
  tunnel?: { protocol?: string; targetHost: string; targetPort: number };
  proxyProtocol?: { version?: 'V1' | 'V2' };
  retryBudget?: { percent?: number; minRetryConcurrency?: number; budgetInterval?: Duration };
}

export interface PortTrafficPolicy {
  port?: PortSelector;
  loadBalancer?: LoadBalancerSettings;
  connectionPool?: ConnectionPoolSettings;
  outlierDetection?: OutlierDetection;
  tls?: ClientTLSSettings;
}

export interface LocalityLoadBalancerSetting {
  distribute?: Array<{ from?: string; to?: Record<string, number> }>;
  failover?: Array<{ from?: string; to?: string }>;
  failoverPriority?: string[];
  enabled?: boolean;
}

export interface LoadBalancerSettings {
  simple?: 'UNSPECIFIED' | 'LEAST_CONN' | 'RANDOM' | 'PASSTHROUGH' | 'ROUND_ROBIN' | 'LEAST_REQUEST';
  consistentHash?: ConsistentHashLB;
  backendUtilization?: {
    weightExpirationPeriod?: Duration;
    weightUpdatePeriod?: Duration;
    weightStabilizationPeriod?: Duration;
    errorUtilizationPenaltyPercent?: number;
    metricNamesForComputingUtilization?: string[];
  };
  localityLbSetting?: LocalityLoadBalancerSetting;
  zoneAwareLbSetting?: {
    enabled?: boolean;
    minClusterSize?: number;
    failover?: Array<{ from?: string; to?: string }>;
    failoverPriority?: string[];
  };
  /** Deprecated: use warmup. */
  warmupDurationSecs?: Duration;
  warmup?: { duration: Duration; minimumPercent?: number; aggression?: number };
}

export interface ConsistentHashLB {
  httpHeaderName?: string;
  httpCookie?: { name: string; path?: string; ttl?: Duration; attributes?: Array<{ name: string; value?: string }> };
  useSourceIp?: boolean;
  httpQueryParameterName?: string;
  ringHash?: { minimumRingSize?: number };
  maglev?: { tableSize?: number };
  /** Deprecated: use ringHash. */
  minimumRingSize?: number;
}

export interface ConnectionPoolSettings {
  tcp?: {
    maxConnections?: number;
    connectTimeout?: Duration;
    tcpKeepalive?: { probes?: number; time?: Duration; interval?: Duration };
    maxConnectionDuration?: Duration;
    idleTimeout?: Duration;
  };
  http?: {
    http1MaxPendingRequests?: number;
    http2MaxRequests?: number;
    maxRequestsPerConnection?: number;
    maxRetries?: number;
    idleTimeout?: Duration;
    h2UpgradePolicy?: 'DEFAULT' | 'DO_NOT_UPGRADE' | 'UPGRADE';
    useClientProtocol?: boolean;
    maxConcurrentStreams?: number;
    http2KeepAlive?: { interval?: Duration; timeout?: Duration };
  };
}

export interface OutlierDetection {
  splitExternalLocalOriginErrors?: boolean;
  consecutiveLocalOriginFailures?: number;
  consecutiveGatewayErrors?: number;
  consecutive5xxErrors?: number;
  /** Deprecated: use consecutive5xxErrors. */
  consecutiveErrors?: number;
  interval?: Duration;
  baseEjectionTime?: Duration;
  maxEjectionPercent?: number;
  minHealthPercent?: number;
  outlierDetectionHttpErrorCodes?: number[];
}

export interface ClientTLSSettings {
  mode?: 'DISABLE' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL';
  clientCertificate?: string;
  privateKey?: string;
  caCertificates?: string;
  credentialName?: string;
  subjectAltNames?: string[];
  sni?: string;
  insecureSkipVerify?: boolean;
  caCrl?: string;
}

// ---------------------------------------------------------------- ServiceEntry / WorkloadEntry / WorkloadGroup

export interface ServicePort {
  number: number;
  protocol?: string;
  name: string;
  targetPort?: number;
}

export interface WorkloadEntrySpec {
  address?: string;
  ports?: Record<string, number>;
  labels?: Record<string, string>;
  network?: string;
  locality?: string;
  weight?: number;
  serviceAccount?: string;
}

export interface ServiceEntrySpec {
  hosts: string[];
  addresses?: string[];
  ports?: ServicePort[];
  location?: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  resolution?: 'NONE' | 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN' | 'DYNAMIC_DNS';
  endpoints?: WorkloadEntrySpec[];
  workloadSelector?: WorkloadSelector;
  exportTo?: string[];
  subjectAltNames?: string[];
}

export interface ReadinessProbe {
  initialDelaySeconds?: number;
  timeoutSeconds?: number;
  periodSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
  httpGet?: {
    path?: string;
    port: number;
    host?: string;
    scheme?: string;
    httpHeaders?: Array<{ name?: string; value?: string }>;
  };
  tcpSocket?: { host?: string; port: number };
  exec?: { command: string[] };
  grpc?: { port?: number; service?: string };
}

export interface WorkloadGroupSpec {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  template: WorkloadEntrySpec;
  probe?: ReadinessProbe;
}

// ---------------------------------------------------------------- Sidecar

export interface IstioIngressListener {
  port: Port;
  bind?: string;
  captureMode?: CaptureMode;
  defaultEndpoint?: string;
  tls?: ServerTLSSettings;
  connectionPool?: ConnectionPoolSettings;
}

export interface IstioEgressListener {
  port?: Port;
  bind?: string;
  captureMode?: CaptureMode;
  hosts: string[];
}

export type CaptureMode = 'DEFAULT' | 'IPTABLES' | 'NONE';

export interface SidecarSpec {
  workloadSelector?: WorkloadSelector;
  ingress?: IstioIngressListener[];
  egress?: IstioEgressListener[];
  inboundConnectionPool?: ConnectionPoolSettings;
  outboundTrafficPolicy?: { mode?: 'REGISTRY_ONLY' | 'ALLOW_ANY'; egressProxy?: Destination };
}

// ---------------------------------------------------------------- Gateway

export type TLSProtocol = 'TLS_AUTO' | 'TLSV1_0' | 'TLSV1_1' | 'TLSV1_2' | 'TLSV1_3';

export interface ServerTLSSettings {
  httpsRedirect?: boolean;
  mode?: 'PASSTHROUGH' | 'SIMPLE' | 'MUTUAL' | 'AUTO_PASSTHROUGH' | 'ISTIO_MUTUAL' | 'OPTIONAL_MUTUAL';
  serverCertificate?: string;
  privateKey?: string;
  caCertificates?: string;
  caCrl?: string;
  credentialName?: string;
  credentialNames?: string[];
  caCertCredentialName?: string;
  tlsCertificates?: Array<{ serverCertificate?: string; privateKey?: string; caCertificates?: string }>;
  subjectAltNames?: string[];
  verifyCertificateSpki?: string[];
  verifyCertificateHash?: string[];
  minProtocolVersion?: TLSProtocol;
  maxProtocolVersion?: TLSProtocol;
  cipherSuites?: string[];
  ecdhCurves?: string[];
  insecureSkipVerify?: boolean;
}

export interface Server {
  port: Port;
  bind?: string;
  hosts: string[];
  tls?: ServerTLSSettings;
  defaultEndpoint?: string;
  name?: string;
}

export interface GatewaySpec {
  servers?: Server[];
  selector?: Record<string, string>;
}

// ---------------------------------------------------------------- EnvoyFilter

export type EnvoyFilterApplyTo =
  | 'INVALID' | 'LISTENER' | 'FILTER_CHAIN' | 'NETWORK_FILTER' | 'HTTP_FILTER' | 'ROUTE_CONFIGURATION'
  | 'VIRTUAL_HOST' | 'HTTP_ROUTE' | 'CLUSTER' | 'EXTENSION_CONFIG' | 'BOOTSTRAP' | 'LISTENER_FILTER';

export type EnvoyFilterPatchContext = 'ANY' | 'SIDECAR_INBOUND' | 'SIDECAR_OUTBOUND' | 'GATEWAY' | 'WAYPOINT';

export type EnvoyFilterOperation =
  | 'INVALID' | 'MERGE' | 'ADD' | 'REMOVE' | 'INSERT_BEFORE' | 'INSERT_AFTER' | 'INSERT_FIRST' | 'REPLACE'
  | 'MERGE_AND_REPLACE_LIST';

export interface EnvoyFilterFilterMatch {
  name?: string;
  subFilter?: { name?: string };
}

export interface EnvoyFilterListenerMatch {
  portNumber?: number;
  portName?: string;
  filterChain?: {
    name?: string;
    sni?: string;
    transportProtocol?: string;
    applicationProtocols?: string;
    filter?: EnvoyFilterFilterMatch;
    destinationPort?: number;
    transportSocket?: string;
  };
  listenerFilter?: string;
  name?: string;
}

export interface EnvoyFilterRouteConfigurationMatch {
  portNumber?: number;
  portName?: string;
  gateway?: string;
  vhost?: { name?: string; domainName?: string; route?: { name?: string; action?: 'ANY' | 'ROUTE' | 'REDIRECT' | 'DIRECT_RESPONSE' } };
  name?: string;
}

export interface EnvoyFilterClusterMatch {
  portNumber?: number;
  service?: string;
  subset?: string;
  name?: string;
}

export interface EnvoyFilterWaypointMatch {
  filter?: EnvoyFilterFilterMatch;
  route?: { name?: string };
  portNumber?: number;
}

export interface EnvoyConfigObjectMatch {
  context?: EnvoyFilterPatchContext;
  proxy?: { proxyVersion?: string; metadata?: Record<string, string> };
  listener?: EnvoyFilterListenerMatch;
  routeConfiguration?: EnvoyFilterRouteConfigurationMatch;
  cluster?: EnvoyFilterClusterMatch;
  waypoint?: EnvoyFilterWaypointMatch;
}

export interface EnvoyConfigObjectPatch {
  applyTo?: EnvoyFilterApplyTo;
  match?: EnvoyConfigObjectMatch;
  patch?: {
    operation?: EnvoyFilterOperation;
    value?: { [key: string]: JsonValue };
    filterClass?: 'UNSPECIFIED' | 'AUTHN' | 'AUTHZ' | 'STATS';
  };
}

export interface EnvoyFilterSpec {
  workloadSelector?: WorkloadSelector;
  targetRefs?: PolicyTargetReference[];
  configPatches?: EnvoyConfigObjectPatch[];
  priority?: number;
}

// ---------------------------------------------------------------- Telemetry

export interface ProviderRef {
  name: string;
}

export type WorkloadMode = 'CLIENT_AND_SERVER' | 'CLIENT' | 'SERVER';

export type MetricSelectorMetric =
  | 'ALL_METRICS' | 'REQUEST_COUNT' | 'REQUEST_DURATION' | 'REQUEST_SIZE' | 'RESPONSE_SIZE'
  | 'TCP_OPENED_CONNECTIONS' | 'TCP_CLOSED_CONNECTIONS' | 'TCP_SENT_BYTES' | 'TCP_RECEIVED_BYTES'
  | 'GRPC_REQUEST_MESSAGES' | 'GRPC_RESPONSE_MESSAGES';

export interface MetricsOverrides {
  match?: { metric?: MetricSelectorMetric; customMetric?: string; mode?: WorkloadMode };
  disabled?: boolean;
  tagOverrides?: Record<string, { operation?: 'UPSERT' | 'REMOVE'; value?: string }>;
}

export interface Metrics {
  providers?: ProviderRef[];
  overrides?: MetricsOverrides[];
  reportingInterval?: Duration;
}

export interface Tracing {
  match?: { mode?: WorkloadMode };
  providers?: ProviderRef[];
  randomSamplingPercentage?: number;
  disableSpanReporting?: boolean;
  customTags?: Record<string, {
    literal?: { value: string };
    environment?: { name: string; defaultValue?: string };
    header?: { name: string; defaultValue?: string };
    formatter?: { value: string };
  }>;
  useRequestIdForTraceSampling?: boolean;
  enableIstioTags?: boolean;
  disableContextPropagation?: boolean;
}

export interface AccessLogging {
  match?: { mode?: WorkloadMode };
  providers?: ProviderRef[];
  disabled?: boolean;
  filter?: { expression?: string };
}

export interface TelemetrySpec {
  selector?: LabelSelector;
  targetRef?: PolicyTargetReference;
  targetRefs?: PolicyTargetReference[];
  tracing?: Tracing[];
  metrics?: Metrics[];
  accessLogging?: AccessLogging[];
}

// ---------------------------------------------------------------- Security: AuthorizationPolicy

export type AuthorizationAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

/** Who a rule is about; fields are ANDed, list items ORed. */
export interface AuthorizationSource {
  principals?: string[];
  notPrincipals?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  trustDomains?: string[];
  notTrustDomains?: string[];
}

/** What a rule is about; fields are ANDed, list items ORed. */
export interface AuthorizationOperation {
  hosts?: string[];
  notHosts?: string[];
  ports?: string[];
  notPorts?: string[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

export interface AuthorizationCondition {
  key: string;
  values?: string[];
  notValues?: string[];
}

export interface AuthorizationRule {
  from?: Array<{ source?: AuthorizationSource }>;
  to?: Array<{ operation?: AuthorizationOperation }>;
  when?: AuthorizationCondition[];
}

export interface AuthorizationPolicySpec {
  selector?: LabelSelector;
  targetRef?: PolicyTargetReference;
  targetRefs?: PolicyTargetReference[];
  rules?: AuthorizationRule[];
  action?: AuthorizationAction;
  provider?: { name?: string };
}

// ---------------------------------------------------------------- Security: PeerAuthentication

export type MutualTLSMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

export interface PeerAuthenticationSpec {
  selector?: LabelSelector;
  mtls?: { mode?: MutualTLSMode };
  /** Keyed by the workload's (target) port number, as a string. */
  portLevelMtls?: Record<string, { mode?: MutualTLSMode }>;
}

// ---------------------------------------------------------------- Security: RequestAuthentication

export interface JWTRule {
  issuer?: string;
  audiences?: string[];
  jwksUri?: string;
  /** Deprecated spelling of jwksUri kept by Istio's schema. */
  jwks_uri?: string;
  jwks?: string;
  fromHeaders?: Array<{ name: string; prefix?: string }>;
  fromParams?: string[];
  fromCookies?: string[];
  outputPayloadToHeader?: string;
  forwardOriginalToken?: boolean;
  outputClaimToHeaders?: Array<{ header: string; claim: string }>;
  spaceDelimitedClaims?: string[];
  timeout?: Duration;
  presence?: 'OPTIONAL' | 'REQUIRED';
}

export interface RequestAuthenticationSpec {
  selector?: LabelSelector;
  targetRef?: PolicyTargetReference;
  targetRefs?: PolicyTargetReference[];
  jwtRules?: JWTRule[];
}

// ---------------------------------------------------------------- WasmPlugin

/** extensions.istio.io/v1alpha1 WasmPlugin: a Proxy-Wasm module in the sidecars' (and gateways') HTTP filter chain. */
export interface WasmPluginSpec {
  selector?: LabelSelector;
  targetRef?: PolicyTargetReference;
  targetRefs?: PolicyTargetReference[];
  /** `oci://`, `http(s)://` or `file://` (no scheme: OCI). */
  url: string;
  sha256?: string;
  imagePullPolicy?: 'UNSPECIFIED_POLICY' | 'IfNotPresent' | 'Always';
  imagePullSecret?: string;
  verificationKey?: string;
  /** A Struct: handed to the plugin as JSON text (its plugin configuration). */
  pluginConfig?: Record<string, JsonValue>;
  /** The plugin's root id in Envoy's config (`root_id`). */
  pluginName?: string;
  phase?: 'UNSPECIFIED_PHASE' | 'AUTHN' | 'AUTHZ' | 'STATS';
  priority?: number | null;
  failStrategy?: 'FAIL_CLOSE' | 'FAIL_OPEN' | 'FAIL_RELOAD';
  vmConfig?: { env?: { name: string; value?: string; valueFrom?: 'INLINE' | 'HOST' }[] };
  match?: { mode?: 'UNDEFINED' | 'CLIENT' | 'SERVER' | 'CLIENT_AND_SERVER'; ports?: PortSelector[] }[];
  type?: 'UNSPECIFIED_PLUGIN_TYPE' | 'HTTP' | 'NETWORK';
}

// ---------------------------------------------------------------- kinds registry

export interface KindInfo {
  group: string;
  kind: string;
  /** Every version Istio serves for this kind; the canonical one first. */
  versions: string[];
  canonicalVersion: string;
  plural: string;
}

/** Maps each supported kind name to its spec type, for typed access after lookupKind. */
export interface SpecByKind {
  VirtualService: VirtualServiceSpec;
  DestinationRule: DestinationRuleSpec;
  ServiceEntry: ServiceEntrySpec;
  WorkloadEntry: WorkloadEntrySpec;
  WorkloadGroup: WorkloadGroupSpec;
  Sidecar: SidecarSpec;
  Gateway: GatewaySpec;
  EnvoyFilter: EnvoyFilterSpec;
  Telemetry: TelemetrySpec;
  AuthorizationPolicy: AuthorizationPolicySpec;
  PeerAuthentication: PeerAuthenticationSpec;
  RequestAuthentication: RequestAuthenticationSpec;
  AdaptiveLimit: AdaptiveLimitSpec;
  LaneGroup: LaneGroupSpec;
  WasmPlugin: WasmPluginSpec;
  RouteTemplates: RouteTemplatesSpec;
  RateLimit: RateLimitSpec;
  LazyScope: LazyScopeSpec;
  WorkloadScope: WorkloadScopeSpec;
}

export type SupportedKind = keyof SpecByKind;

const NETWORKING = 'networking.istio.io';
const NETWORKING_VERSIONS = ['v1', 'v1beta1', 'v1alpha3'];
const SECURITY = 'security.istio.io';
const SECURITY_VERSIONS = ['v1', 'v1beta1'];

export const KINDS: readonly KindInfo[] = Object.freeze([
  { group: NETWORKING, kind: 'VirtualService', versions: NETWORKING_VERSIONS, canonicalVersion: 'v1', plural: 'virtualservices' },
  { group: NETWORKING, kind: 'DestinationRule', versions: NETWORKING_VERSIONS, canonicalVersion: 'v1', plural: 'destinationrules' },
  { group: NETWORKING, kind: 'ServiceEntry', versions: NETWORKING_VERSIONS, canonicalVersion: 'v1', plural: 'serviceentries' },
  { group: NETWORKING, kind: 'WorkloadEntry', versions: NETWORKING_VERSIONS, canonicalVersion: 'v1', plural: 'workloadentries' },
  { group: NETWORKING, kind: 'WorkloadGroup', versions: NETWORKING_VERSIONS, canonicalVersion: 'v1', plural: 'workloadgroups' },
  { group: NETWORKING, kind: 'Sidecar', versions: NETWORKING_VERSIONS, canonicalVersion: 'v1', plural: 'sidecars' },
  { group: NETWORKING, kind: 'Gateway', versions: NETWORKING_VERSIONS, canonicalVersion: 'v1', plural: 'gateways' },
  { group: NETWORKING, kind: 'EnvoyFilter', versions: ['v1alpha3'], canonicalVersion: 'v1alpha3', plural: 'envoyfilters' },
  { group: 'telemetry.istio.io', kind: 'Telemetry', versions: ['v1', 'v1alpha1'], canonicalVersion: 'v1', plural: 'telemetries' },
  { group: SECURITY, kind: 'AuthorizationPolicy', versions: SECURITY_VERSIONS, canonicalVersion: 'v1', plural: 'authorizationpolicies' },
  { group: SECURITY, kind: 'PeerAuthentication', versions: SECURITY_VERSIONS, canonicalVersion: 'v1', plural: 'peerauthentications' },
  { group: SECURITY, kind: 'RequestAuthentication', versions: SECURITY_VERSIONS, canonicalVersion: 'v1', plural: 'requestauthentications' },
  // Kubernetes' core Secret (apiVersion `v1`): gateway credentials (`credentialName`), see secret.ts.
  { group: '', kind: 'Secret', versions: ['v1'], canonicalVersion: 'v1', plural: 'secrets' },
  { group: 'sextant.io', kind: 'AdaptiveLimit', versions: ['v1alpha1'], canonicalVersion: 'v1alpha1', plural: 'adaptivelimits' },
  { group: 'sextant.io', kind: 'LaneGroup', versions: ['v1alpha1'], canonicalVersion: 'v1alpha1', plural: 'lanegroups' },
  { group: 'extensions.istio.io', kind: 'WasmPlugin', versions: ['v1alpha1'], canonicalVersion: 'v1alpha1', plural: 'wasmplugins' },
  { group: 'sextant.io', kind: 'RouteTemplates', versions: ['v1alpha1'], canonicalVersion: 'v1alpha1', plural: 'routetemplates' },
  { group: 'sextant.io', kind: 'RateLimit', versions: ['v1alpha1'], canonicalVersion: 'v1alpha1', plural: 'ratelimits' },
  { group: 'sextant.io', kind: 'LazyScope', versions: ['v1alpha1'], canonicalVersion: 'v1alpha1', plural: 'lazyscopes' },
  { group: 'sextant.io', kind: 'WorkloadScope', versions: ['v1alpha1'], canonicalVersion: 'v1alpha1', plural: 'workloadscopes' },
].map((k) => Object.freeze(k)));

// apiVersion → kind → info: two lookups and no string building on the hot path.
const byApiVersion = new Map<string, Map<string, KindInfo>>();
for (const k of KINDS) {
  for (const v of k.versions) {
    const av = k.group === '' ? v : `${k.group}/${v}`; // the core group's apiVersion is the version alone
    let m = byApiVersion.get(av);
    if (m === undefined) byApiVersion.set(av, (m = new Map()));
    m.set(k.kind, k);
  }
}

/** The supported kind for an apiVersion ("group/version") and kind, or undefined. */
export function lookupKind(apiVersion: string, kind: string): KindInfo | undefined {
  return byApiVersion.get(apiVersion)?.get(kind);
}

/**
 * Istio kinds Sextant knows of but does not serve: reported as "unsupported kind"
 * rather than "unknown kind", so users can tell a typo from a missing feature.
 */
export const UNSUPPORTED_ISTIO_KINDS: ReadonlySet<string> = new Set([
  'networking.istio.io/ProxyConfig',
  'extensions.istio.io/TrafficExtension',
  'gateway.networking.k8s.io/Gateway',
  'gateway.networking.k8s.io/HTTPRoute',
]);
