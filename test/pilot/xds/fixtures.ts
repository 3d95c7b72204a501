// Test fixtures for the xDS server: a small deterministic Generators (one cluster, assignment,
// listener and route per ServiceEntry port) and helpers to run a pilot on a temp directory.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { Resource } from '../../../src/api/resource.ts';
import { openDirectoryStore } from '../../../src/config/file/store.ts';
import { CLUSTER_TYPE, ENDPOINT_TYPE, HCM_TYPE, LISTENER_TYPE, ROUTE_TYPE, ROUTER_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../../src/envoy/index.ts';
import type { ConfigChange, Generators, Proxy, PushContext, PushPlan } from '../../../src/pilot/model.ts';
import { startPilot } from '../../../src/pilot/index.ts';
import type { Pilot } from '../../../src/pilot/index.ts';

interface SeSpec {
  hosts: string[];
  ports: { number: number; name: string; protocol?: string }[];
  endpoints?: { address: string; ports?: Record<string, number> }[];
}

interface TestPush extends PushContext {
  byType: Map<XdsTypeUrl, Map<string, ProtoJson>>;
}

function outbound(port: number, host: string): string {
  return `outbound|${port}||${host}`;
}

/** Deterministic generators: every proxy sees every ServiceEntry; objects shared per snapshot. */
export const testGenerators: Generators = {
  proxyFromNode(node: ProtoJson): Proxy {
    const id = String(node['id'] ?? '');
    const parts = id.split('~');
    if (parts.length !== 4) throw new Error(`node id "${id}" is not TYPE~IP~POD.NAMESPACE~DOMAIN`);
    const [type, ip, podNs, domain] = parts as [string, string, string, string];
    const metadata = (node['metadata'] ?? {}) as Record<string, unknown>;
    const dot = podNs.lastIndexOf('.');
    return {
      id, type: type === 'router' ? 'router' : 'sidecar', ipAddresses: [ip], podName: podNs.slice(0, dot), namespace: podNs.slice(dot + 1),
      dnsDomain: domain, labels: (metadata['LABELS'] ?? {}) as Record<string, string>, metadata, clusterId: 'Kubernetes',
      interceptionMode: 'NONE', generator: metadata['GENERATOR'] === 'grpc' ? 'grpc' : 'envoy',
    };
  },

  buildPushContext(resources: readonly Resource[]): PushContext {
    const byType = new Map<XdsTypeUrl, Map<string, ProtoJson>>([[CLUSTER_TYPE, new Map()], [ENDPOINT_TYPE, new Map()], [LISTENER_TYPE, new Map()], [ROUTE_TYPE, new Map()]]);
    const routes = new Map<number, ProtoJson[]>();
    const ses = resources.filter((r) => r.kind === 'ServiceEntry').sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    for (const r of ses) {
      const spec = r.spec as SeSpec;
      const host = spec.hosts[0]!;
      for (const port of spec.ports) {
        const name = outbound(port.number, host);
        byType.get(CLUSTER_TYPE)!.set(name, { name, type: 'EDS', connectTimeout: r.metadata.annotations?.['test.sextant.io/connect-timeout'] ?? '1s', edsClusterConfig: { edsConfig: { ads: {}, resourceApiVersion: 'V3' }, serviceName: name } });
        byType.get(ENDPOINT_TYPE)!.set(name, {
          clusterName: name,
          endpoints: [{ lbEndpoints: (spec.endpoints ?? []).map((e) => ({ endpoint: { address: { socketAddress: { address: e.address, portValue: e.ports?.[port.name] ?? port.number } } } })) }],
        });
        const list = routes.get(port.number) ?? [];
        list.push({ name: `${host}:${port.number}`, domains: [host, `${host}:${port.number}`], routes: [{ match: { prefix: '/' }, route: { cluster: name } }] });
        routes.set(port.number, list);
      }
    }
    for (const [port, virtualHosts] of routes) {
      byType.get(ROUTE_TYPE)!.set(String(port), { name: String(port), virtualHosts });
      const listener = `0.0.0.0_${port}`;
      byType.get(LISTENER_TYPE)!.set(listener, {
        name: listener,
        address: { socketAddress: { address: '0.0.0.0', portValue: port } },
        filterChains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typedConfig: {
          '@type': HCM_TYPE, statPrefix: listener, rds: { configSource: { ads: {}, resourceApiVersion: 'V3' }, routeConfigName: String(port) },
          httpFilters: [{ name: 'envoy.filters.http.router', typedConfig: { '@type': ROUTER_TYPE } }],
        } }] }],
      });
    }
    const version = createHash('sha256').update(JSON.stringify(ses.map((r) => [r.metadata.name, r.metadata.annotations, r.spec]))).digest('hex').slice(0, 12);
    const push: TestPush = {
      version, builtAt: Date.now(), resources, byType,
      stats: { services: ses.length, virtualServices: resources.filter((r) => r.kind === 'VirtualService').length, destinationRules: 0, endpoints: 0 },
    };
    return push;
  },

  planPush(before: PushContext, after: PushContext, change: ConfigChange): PushPlan | null {
    if (change.endpointsOnly) {
      const clusters = new Set<string>();
      for (const r of [...before.resources, ...after.resources]) {
        if (r.kind !== 'ServiceEntry' || !change.keys.has(`ServiceEntry/${r.metadata.namespace}/${r.metadata.name}`)) continue;
        const spec = r.spec as SeSpec;
        for (const p of spec.ports) clusters.add(outbound(p.number, spec.hosts[0]!));
      }
      return { types: new Set([ENDPOINT_TYPE]), edsClusters: clusters };
    }
    // Config this generator does not read concerns nobody.
    if ([...change.keys].every((k) => !k.startsWith('ServiceEntry/'))) return null;
    return { types: new Set([CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE]) };
  },

  generate(push: PushContext, _proxy: Proxy, typeUrl: XdsTypeUrl, names?: ReadonlySet<string>): Map<string, ProtoJson> {
    const all = (push as TestPush).byType.get(typeUrl) ?? new Map<string, ProtoJson>();
    if (names === undefined) return new Map(all);
    const out = new Map<string, ProtoJson>();
    for (const n of names) {
      const r = all.get(n);
      if (r !== undefined) out.set(n, r);
    }
    return out;
  },
};

export function serviceEntry(name: string, host: string, port: number, addresses: string[], namespace = 'default'): Resource {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name, namespace },
    spec: {
      hosts: [host], location: 'MESH_INTERNAL', resolution: 'STATIC',
      ports: [{ number: port, name: 'http', protocol: 'HTTP' }],
      endpoints: addresses.map((address) => ({ address })),
    },
  };
}

export const quietLogger = pino({ level: process.env['PILOT_TEST_LOG'] ?? 'silent' });

export interface TestPilot {
  pilot: Pilot;
  store: Awaited<ReturnType<typeof openDirectoryStore>>;
  dir: string;
}

/** A pilot on a fresh temp directory holding `initial`, on free loopback ports. */
export async function startTestPilot(initial: Resource[], generators: Generators = testGenerators, debounceAfterMs = 20): Promise<TestPilot> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-pilot-'));
  const store = await openDirectoryStore({ dir, watchFiles: false, logger: quietLogger });
  for (const r of initial) await store.create(r);
  const pilot = await startPilot({
    store, generators, xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', debounceAfterMs, debounceMaxMs: 2000, logger: quietLogger,
  });
  await pilot.ready;
  return { pilot, store, dir };
}

export async function stopTestPilot(t: TestPilot): Promise<void> {
  await t.pilot.close();
  rmSync(t.dir, { recursive: true, force: true });
}
