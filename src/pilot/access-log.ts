// What the pilot tells its access-log sink about the mesh: the workload at an IP (connected
// proxies first, as they name themselves, then WorkloadEntries), the service a workload serves
// on a port, and the RouteTemplates of the snapshot in force. Indexes are rebuilt when the
// snapshot changes and at most every few seconds for connections, never per entry.
import type { RouteTemplatesSpec } from '../api/index.ts';
import type { OperationTemplate } from '../telemetry/operations.ts';
import type { SinkDirectory } from '../telemetry/sink.ts';
import { SextantPushContext, resolveHost } from './push/context.ts';
import type { Proxy, PushContext } from './model.ts';

export interface DirectorySources {
  pushContext(): PushContext | undefined;
  proxies(): Iterable<Proxy>;
}

interface Index {
  version: string | undefined;
  builtAt: number;
  workloads: Map<string, { workload: string; namespace: string }>;
}

const templatesByPush = new WeakMap<PushContext, readonly OperationTemplate[]>();
const NONE: readonly OperationTemplate[] = Object.freeze([]);

/** The RouteTemplates of a snapshot as the OperationNamer takes them (host resolved in the resource's namespace). */
export function routeTemplatesOf(push: PushContext | undefined): readonly OperationTemplate[] {
  if (push === undefined) return NONE;
  let t = templatesByPush.get(push);
  if (t === undefined) {
    const out: OperationTemplate[] = [];
    for (const r of push.resources) {
      if (r.kind !== 'RouteTemplates') continue;
      const spec = r.spec as RouteTemplatesSpec;
      const service = resolveHost(spec.host, r.metadata.namespace);
      for (const x of spec.templates) out.push({ service, template: x.template, ...(x.name !== undefined ? { name: x.name } : {}), ...(x.methods !== undefined ? { methods: x.methods } : {}) });
    }
    t = out.length === 0 ? NONE : out;
    templatesByPush.set(push, t);
  }
  return t;
}

/** A proxy's workload as it names itself in its node metadata (istio-agent's WORKLOAD_NAME). */
function proxyWorkload(p: Proxy): string {
  const w = p.metadata['WORKLOAD_NAME'];
  if (typeof w === 'string' && w !== '') return w;
  const app = p.labels['app'];
  if (app !== undefined) return p.labels['version'] !== undefined ? `${app}-${p.labels['version']}` : app;
  return p.podName;
}

export function sinkDirectory(src: DirectorySources, refreshMs = 2000): SinkDirectory {
  let index: Index = { version: undefined, builtAt: 0, workloads: new Map() };
  const current = (): Index => {
    const push = src.pushContext();
    if (push?.version === index.version && Date.now() - index.builtAt < refreshMs) return index;
    const workloads = new Map<string, { workload: string; namespace: string }>();
    if (push instanceof SextantPushContext) {
      for (const [ip, list] of push.registry.byAddress) {
        const we = list.find((e) => e.endpoint.source.startsWith('WorkloadEntry/'));
        if (we === undefined) continue;
        const [, namespace = '', name = ''] = we.endpoint.source.split('/');
        workloads.set(ip, { workload: name, namespace });
      }
    }
    for (const p of src.proxies()) {
      for (const ip of p.ipAddresses) workloads.set(ip, { workload: proxyWorkload(p), namespace: p.namespace });
    }
    index = { version: push?.version, builtAt: Date.now(), workloads };
    return index;
  };
  return {
    workloadAt: (ip) => current().workloads.get(ip),
    servicesAt(ip, port) {
      const push = src.pushContext();
      if (!(push instanceof SextantPushContext)) return [];
      return (push.registry.byAddress.get(ip) ?? []).filter((e) => e.endpoint.port === port).map((e) => e.service.hostname);
    },
    templates: () => routeTemplatesOf(src.pushContext()),
  };
}
