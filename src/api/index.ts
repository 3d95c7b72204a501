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
