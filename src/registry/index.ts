// The service registry: services and endpoints from ServiceEntry and WorkloadEntry.
export { TRAFFIC_ANNOTATION, buildRegistry, updateRegistryEndpoints, byAge, portProtocol, isHttpProtocol, isHttp2Protocol, parseLocality, labelsMatch, CLUSTER_LABEL, NETWORK_LABEL, DEFAULT_CLUSTER_ID } from './services.ts';
export { OverlayMap } from './overlay.ts';
export { ResourceMap, workloadLabels } from './workloads.ts';
export type { Registry, EndpointUpdate, Service, ServicePort, ServiceEndpoint, Locality, Protocol, Resolution } from './services.ts';
export type * from './istio.ts';
