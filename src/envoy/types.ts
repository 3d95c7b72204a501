// Type URLs of the xDS resources and the names Envoy and Istio give to well-known things.

export const TYPE_PREFIX = 'type.googleapis.com/';

export const LISTENER_TYPE = 'type.googleapis.com/envoy.config.listener.v3.Listener';
export const ROUTE_TYPE = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';
export const CLUSTER_TYPE = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
export const ENDPOINT_TYPE = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';

/** Istio's NDS: the name table a sidecar's DNS proxy answers mesh hosts from (one resource, no name). */
export const NAME_TABLE_TYPE = 'type.googleapis.com/istio.networking.nds.v1.NameTable';

/**
 * RTDS: Envoy's runtime layer resource. Not a PushContext type: the pilot serves it from the
 * adaptive-limits controller (leased with `Resource.ttl`), so it is not in PUSH_ORDER.
 */
export const RUNTIME_TYPE = 'type.googleapis.com/envoy.service.runtime.v3.Runtime';
/** The wrapper a SotW response uses to carry a resource with a TTL (and heartbeats without one). */
export const DISCOVERY_RESOURCE_TYPE = 'type.googleapis.com/envoy.service.discovery.v3.Resource';

/**
 * SDS: a TLS certificate or validation context by name. Gateways fetch the secrets their
 * listeners name (`kubernetes://NAME` for a Gateway's `credentialName`) over ADS.
 */
export const SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

/**
 * ECDS: an HTTP filter's config by name (a connection manager's `config_discovery`); the pilot
 * serves WasmPlugins as Wasm filter configs this way, as istiod does. After LDS, as RDS is: a
 * filter a listener starts naming waits for its config, one it stops naming is gone first.
 */
export const EXTENSION_CONFIG_TYPE = 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig';

/**
 * The resource types, in the order a push must deliver them (CDS, EDS, LDS, RDS, ECDS), then
 * NDS, which only proxies capturing DNS subscribe to, and SDS, which only gateways subscribe to.
 */
export const PUSH_ORDER = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, EXTENSION_CONFIG_TYPE, NAME_TABLE_TYPE, SECRET_TYPE] as const;
export type XdsTypeUrl = (typeof PUSH_ORDER)[number];

export const SHORT_TYPE_NAMES: Readonly<Record<XdsTypeUrl, string>> = {
  [CLUSTER_TYPE]: 'CDS',
  [ENDPOINT_TYPE]: 'EDS',
  [LISTENER_TYPE]: 'LDS',
  [ROUTE_TYPE]: 'RDS',
  [NAME_TABLE_TYPE]: 'NDS',
  [SECRET_TYPE]: 'SDS',
  [EXTENSION_CONFIG_TYPE]: 'ECDS',
};

export const HCM_TYPE =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const TCP_PROXY_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';
export const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
export const FAULT_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';
export const CORS_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors';
export const TYPED_STRUCT_TYPE = 'type.googleapis.com/udpa.type.v1.TypedStruct';
export const XDS_TYPED_STRUCT_TYPE = 'type.googleapis.com/xds.type.v3.TypedStruct';

export const PASSTHROUGH_CLUSTER = 'PassthroughCluster';
export const BLACKHOLE_CLUSTER = 'BlackHoleCluster';
export const VIRTUAL_OUTBOUND_LISTENER = 'virtualOutbound';
export const VIRTUAL_INBOUND_LISTENER = 'virtualInbound';

/** The Envoy message an EnvoyFilter patch value is written in, by the patch's `applyTo`. */
export const ENVOY_FILTER_VALUE_TYPES: Readonly<Record<string, string>> = {
  LISTENER: 'envoy.config.listener.v3.Listener',
  FILTER_CHAIN: 'envoy.config.listener.v3.FilterChain',
  NETWORK_FILTER: 'envoy.config.listener.v3.Filter',
  HTTP_FILTER: 'envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter',
  ROUTE_CONFIGURATION: 'envoy.config.route.v3.RouteConfiguration',
  VIRTUAL_HOST: 'envoy.config.route.v3.VirtualHost',
  HTTP_ROUTE: 'envoy.config.route.v3.Route',
  CLUSTER: 'envoy.config.cluster.v3.Cluster',
  EXTENSION_CONFIG: 'envoy.config.core.v3.TypedExtensionConfig',
  BOOTSTRAP: 'envoy.config.bootstrap.v3.Bootstrap',
  LISTENER_FILTER: 'envoy.config.listener.v3.ListenerFilter',
};
