// The Istio config model: kinds and spec types, loading from YAML/JSON, and Istio-grade validation.
export type { Resource, ObjectMeta, Origin, GroupKind } from './resource.ts';
export { resourceKey } from './resource.ts';
export type {
  KindInfo, SupportedKind, SpecByKind, JsonValue, Duration,
  VirtualServiceSpec, DestinationRuleSpec, ServiceEntrySpec, WorkloadEntrySpec, WorkloadGroupSpec, SidecarSpec,
  GatewaySpec, EnvoyFilterSpec, TelemetrySpec,
  StringMatch, PortSelector, Destination, Percent, WorkloadSelector, LabelSelector, PolicyTargetReference, Port,
  HTTPRoute, HTTPMatchRequest, HTTPRouteDestination, RouteDestination, HeaderOperations, Headers, HTTPRedirect,
  HTTPDirectResponse, Delegate, RegexRewrite, HTTPRewrite, HTTPRetry, HTTPFaultInjection, HTTPMirrorPolicy, CorsPolicy,
  TLSMatchAttributes, TLSRoute, L4MatchAttributes, TCPRoute,
  Subset, TrafficPolicy, PortTrafficPolicy, LocalityLoadBalancerSetting, LoadBalancerSettings, ConsistentHashLB,
  ConnectionPoolSettings, OutlierDetection, ClientTLSSettings,
  ServicePort, ReadinessProbe,
  IstioIngressListener, IstioEgressListener, CaptureMode,
  TLSProtocol, ServerTLSSettings, Server,
  EnvoyFilterApplyTo, EnvoyFilterPatchContext, EnvoyFilterOperation, EnvoyFilterFilterMatch, EnvoyFilterListenerMatch,
  EnvoyFilterRouteConfigurationMatch, EnvoyFilterClusterMatch, EnvoyFilterWaypointMatch, EnvoyConfigObjectMatch,
  EnvoyConfigObjectPatch,
  AuthorizationAction, AuthorizationSource, AuthorizationOperation, AuthorizationCondition, AuthorizationRule,
  AuthorizationPolicySpec, MutualTLSMode, PeerAuthenticationSpec, JWTRule, RequestAuthenticationSpec,
  ProviderRef, WorkloadMode, MetricSelectorMetric, MetricsOverrides, Metrics, Tracing, AccessLogging,
} from './kinds.ts';
export { KINDS, lookupKind } from './kinds.ts';
export type { LoadResult, LoadedDocument } from './codec.ts';
export { parseDocuments, loadPaths, toYaml } from './codec.ts';
export { validateResource, ConfigError } from './validate.ts';
export type { ConfigErrorInit } from './errors.ts';
export { abbreviate, abbreviateTo, quote, MAX_QUOTED_CHARS } from './errors.ts';
export { parseDurationMs } from './checks.ts';
export type { AdaptiveLimitSpec, AdaptiveLimitSettings, LatencyPercentile } from './adaptive-limit.ts';
export { ADAPTIVE_LIMIT_API_VERSION, ADAPTIVE_LIMIT_DEFAULTS, adaptiveLimitSettings } from './adaptive-limit.ts';
export type { SecretSpec, SecretMaterial } from './secret.ts';
export type { LaneGroupSpec, LaneSpec, LaneMock } from './lane-group.ts';
export {
  LANE_GROUP_API_VERSION, LANE_LABEL, LANE_HEADER, LANE_CARRIER_KEY, DEFAULT_BASELINE, LANE_TRACE_TABLE_DEFAULTS, LANE_TRACE_TABLE_LIMITS,
  FAILOVER_THRESHOLD_ANNOTATION, parseFailoverThreshold, parentLane, resolveLaneHost,
} from './lane-group.ts';
export { REDACTED, TLS_SECRET_TYPE, redactSecret, redactSecrets, secretMaterial, checkMaterial, parseCertificates, parsePrivateKey } from './secret.ts';
export type { RouteTemplatesSpec, RouteTemplate } from './route-templates.ts';
export { ROUTE_TEMPLATES_API_VERSION, MAX_ROUTE_TEMPLATES } from './route-templates.ts';
export type { RateLimitSpec, RateLimitBucket } from './rate-limit.ts';
export { RATE_LIMIT_API_VERSION, MAX_RATE_LIMIT_ENTRIES } from './rate-limit.ts';
export type { LazyScopeSpec, LazyScopeFallback, LazyScopeSettings, WorkloadScopeSpec, WorkloadScopeEgress, ScopeEdge, EdgeSource } from './lazy-scope.ts';
export { LAZY_SCOPE_API_VERSION, LAZY_SCOPE_DEFAULTS, MANAGED_BY_LABEL, MANAGED_BY_LAZY_SCOPE, LAZY_SCOPE_ANNOTATION, lazyScopeSettings } from './lazy-scope.ts';
