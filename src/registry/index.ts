// The service registry: services and endpoints from ServiceEntry and WorkloadEntry.
export { buildRegistry, updateRegistryEndpoints, byAge, portProtocol, isHttpProtocol, isHttp2Protocol, parseLocality, labelsMatch } from './services.ts';
export type { Registry, EndpointUpdate, Service, ServicePort, ServiceEndpoint, Locality, Protocol, Resolution } from './services.ts';
export type * from './istio.ts';
