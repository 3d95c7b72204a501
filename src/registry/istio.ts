// The Istio spec types the registry and the generators read, from the config API (src/api),
// plus the names the generators use for nested shapes.
import type { Port } from '../api/index.ts';

export type {
  VirtualServiceSpec, DestinationRuleSpec, ServiceEntrySpec, WorkloadEntrySpec, SidecarSpec, EnvoyFilterSpec,
  StringMatch, HTTPMatchRequest, HTTPRoute, HTTPRouteDestination, HeaderOperations, Headers, Percent, Destination,
  TCPRoute, TrafficPolicy, Subset, LoadBalancerSettings, ConnectionPoolSettings, OutlierDetection,
  IstioEgressListener, IstioIngressListener, EnvoyConfigObjectPatch,
} from '../api/index.ts';

/** A ServiceEntry or Sidecar listener port. */
export type PortSpec = Port;
