// The service registry: services and endpoints from ServiceEntry and WorkloadEntry.
export { buildRegistry, byAge, portProtocol, isHttpProtocol, isHttp2Protocol, parseLocality, labelsMatch } from './services.ts';
export type { Registry, Service, ServicePort, ServiceEndpoint, Locality, Protocol, Resolution } from './services.ts';
export type * from './istio.ts';
