// The shape every Istio config object shares, exactly as users write it for kubectl:
// apiVersion, kind, metadata, spec. Kinds and their specs live in kinds.ts.

/** Identifies the kind of a resource independent of the version it was written in. */
export type GroupKind = `${string}/${string}`; // e.g. "networking.istio.io/VirtualService"

export interface ObjectMeta {
  name: string;
  namespace: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Set by the store: the version the object was last written at (etcd revision, file generation). */
  resourceVersion?: string;
  /** Set by the store on create. */
  creationTimestamp?: string;
  generation?: number;
}

/** A config object as stored and served: spec is the kind's spec type (see kinds.ts). */
export interface Resource<S = unknown> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: S;
  /** What a controller observed and did (Sextant's own kinds, e.g. AdaptiveLimit); written by controllers, never validated as spec. */
  status?: unknown;
}

/** Where a document came from, so every error can name it. */
export interface Origin {
  file: string;
  /** Zero-based index of the document in the file (YAML multi-doc or List item). */
  index: number;
}

/** Kind/namespace/name, the way errors and logs name a resource. */
export function resourceKey(r: { kind: string; metadata: { namespace?: string; name?: string } }): string {
  return `${r.kind}/${r.metadata.namespace ?? ''}/${r.metadata.name ?? ''}`;
}
