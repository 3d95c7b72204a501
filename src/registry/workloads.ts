// Every config resource by `Kind/namespace/name`, as the pilot keeps them from its store, plus
// the WorkloadEntries of each namespace by label. The endpoint fast path asks it which
// workloads a service's selector can match instead of scanning every resource of the mesh
// for each batch (60,000 of them for a pull-out that changes one).
//
// It is a Map, so it iterates in insertion order; the workloads it returns for a selector come
// in that same order (the order a full rebuild meets them in), because each keeps the
// sequence number of its insertion into the map: a new key gets the next one, an update keeps
// its own, and a key deleted and added again gets a new one, as its place in a Map does.
import type { Resource } from '../api/resource.ts';
import type { WorkloadEntrySpec } from './istio.ts';

interface Indexed {
  resource: Resource<WorkloadEntrySpec>;
  seq: number;
  /** Metadata labels overlaid by spec labels (what a selector matches). */
  labels: Readonly<Record<string, string>>;
}

interface NamespaceIndex {
  all: Map<string, Indexed>;
  /** `k=v` → keys of the workloads carrying that label. */
  byLabel: Map<string, Set<string>>;
}

/** A WorkloadEntry's labels as a selector matches them: metadata labels, overlaid by spec labels. */
export function workloadLabels(we: Resource<WorkloadEntrySpec>): Record<string, string> {
  return we.metadata.labels ? { ...we.metadata.labels, ...we.spec?.labels } : (we.spec?.labels ?? {});
}

export class ResourceMap extends Map<string, Resource> {
  private seq = 0;
  private namespaces: Map<string, NamespaceIndex> | undefined;

  // No initial entries: Map's constructor would index them before this class's fields exist.
  constructor() {
    super();
  }

  override set(key: string, value: Resource): this {
    const previous = super.get(key);
    super.set(key, value);
    if (previous !== undefined && previous.kind === 'WorkloadEntry') this.unindex(key, previous, true);
    if (value.kind === 'WorkloadEntry') this.index(key, value as Resource<WorkloadEntrySpec>);
    return this;
  }

  override delete(key: string): boolean {
    const previous = super.get(key);
    if (previous === undefined && !super.has(key)) return false;
    super.delete(key);
    if (previous !== undefined && previous.kind === 'WorkloadEntry') this.unindex(key, previous, false);
    return true;
  }

  override clear(): void {
    super.clear();
    this.namespaces = undefined;
  }

  /**
   * The WorkloadEntries of `namespace` whose labels include every label of `selector` (all of
   * the namespace's for an empty selector), in this map's order.
   */
  selectWorkloads(namespace: string, selector: Readonly<Record<string, string>>): Resource<WorkloadEntrySpec>[] {
    const ns = this.namespaces?.get(namespace);
    if (ns === undefined) return [];
    let smallest: Set<string> | undefined;
    for (const k in selector) {
      const keys = ns.byLabel.get(`${k}=${selector[k]}`);
      if (keys === undefined) return [];
      if (smallest === undefined || keys.size < smallest.size) smallest = keys;
    }
    if (smallest === undefined) return [...ns.all.values()].map((w) => w.resource);
    const found: Indexed[] = [];
    for (const key of smallest) {
      const w = ns.all.get(key)!;
      if (matches(selector, w.labels)) found.push(w);
    }
    return found.sort((a, b) => a.seq - b.seq).map((w) => w.resource);
  }

  private index(key: string, we: Resource<WorkloadEntrySpec>): void {
    this.namespaces ??= new Map();
    let ns = this.namespaces.get(we.metadata.namespace);
    if (ns === undefined) this.namespaces.set(we.metadata.namespace, (ns = { all: new Map(), byLabel: new Map() }));
    const kept = ns.all.get(key);
    const labels = workloadLabels(we);
    ns.all.set(key, { resource: we, seq: kept?.seq ?? ++this.seq, labels });
    for (const k in labels) {
      const lk = `${k}=${labels[k]}`;
      let keys = ns.byLabel.get(lk);
      if (keys === undefined) ns.byLabel.set(lk, (keys = new Set()));
      keys.add(key);
    }
  }

  /** Removes the workload's labels; `updating` keeps its place (sequence) for the new version. */
  private unindex(key: string, we: Resource, updating: boolean): void {
    const ns = this.namespaces?.get(we.metadata.namespace);
    const w = ns?.all.get(key);
    if (ns === undefined || w === undefined) return;
    for (const k in w.labels) {
      const lk = `${k}=${w.labels[k]}`;
      const keys = ns.byLabel.get(lk);
      if (keys === undefined) continue;
      keys.delete(key);
      if (keys.size === 0) ns.byLabel.delete(lk);
    }
    if (!updating) ns.all.delete(key);
  }
}

function matches(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}
