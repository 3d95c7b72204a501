// Proxyless gRPC (node metadata GENERATOR: grpc): what @grpc/grpc-js-xds expects. API
// listeners named `host:port` whose connection manager points at an RDS config of the
// same name (router filter last), EDS clusters with ROUND_ROBIN or RING_HASH, and EDS.
import { FAULT_TYPE, HCM_TYPE, ROUTER_TYPE } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import type { Service } from '../../registry/index.ts';
import type { SextantPushContext } from '../push/context.ts';
import { sidecarScope } from '../push/scope.ts';
import { serviceClusters } from './clusters.ts';
import { serviceRoutes } from './routes.ts';

const GRPC_ADS: ProtoJson = { ads: {}, resourceApiVersion: 'V3' };

/** Services a gRPC client can reach: endpoints it is given or a DNS name it resolves (not original-destination). */
function grpcReachable(s: Service): boolean {
  return s.resolution !== 'NONE' || s.selector !== undefined;
}

/** `greeter.default.svc.cluster.local:50051` → the visible service and port, if any. */
function resolveTarget(push: SextantPushContext, proxy: Proxy, name: string): { service: Service; port: number } | undefined {
  const i = name.lastIndexOf(':');
  if (i <= 0) return undefined;
  const port = Number(name.slice(i + 1));
  if (!Number.isInteger(port)) return undefined;
  const scope = sidecarScope(push, proxy);
  const service = push.serviceFor(name.slice(0, i), proxy.namespace);
  if (!service || !grpcReachable(service) || !scope.serviceKeys.has(service.key) || !service.ports.some((p) => p.port === port)) return undefined;
  return { service, port };
}

function targets(push: SextantPushContext, proxy: Proxy, names: ReadonlySet<string> | undefined): { name: string; service: Service; port: number }[] {
  if (names) {
    const out: { name: string; service: Service; port: number }[] = [];
    for (const n of names) {
      const t = resolveTarget(push, proxy, n);
      if (t) out.push({ name: n, ...t });
    }
    return out;
  }
  const out: { name: string; service: Service; port: number }[] = [];
  for (const service of sidecarScope(push, proxy).services) {
    if (!grpcReachable(service)) continue;
    for (const p of service.ports) out.push({ name: `${service.hostname}:${p.port}`, service, port: p.port });
  }
  return out;
}

/** LDS for gRPC: one API listener per `host:port`. */
export function grpcListeners(push: SextantPushContext, proxy: Proxy, names?: ReadonlySet<string>): ProtoJson[] {
  return targets(push, proxy, names).map(({ name }) => push.memoize(`grpc-lds|${name}`, () => ({
    name,
    apiListener: {
      apiListener: {
        '@type': HCM_TYPE,
        statPrefix: name,
        rds: { configSource: GRPC_ADS, routeConfigName: name },
        httpFilters: [
          { name: 'envoy.filters.http.fault', typedConfig: { '@type': FAULT_TYPE } },
          { name: 'envoy.filters.http.router', typedConfig: { '@type': ROUTER_TYPE } },
        ],
      },
    },
  })));
}

/** RDS for gRPC: one virtual host for the `host:port` authority, VirtualService routes applied. */
export function grpcRoutes(push: SextantPushContext, proxy: Proxy, names?: ReadonlySet<string>): ProtoJson[] {
  const scope = sidecarScope(push, proxy);
  return targets(push, proxy, names).map(({ name, service, port }) => {
    const compute = (): ProtoJson => ({
      name,
      virtualHosts: [{
        name,
        domains: [name, service.hostname],
        routes: serviceRoutes(push, proxy, scope.virtualServices, service, port, true),
      }],
    });
    if (scope.sourceLabelDependent) return compute();
    return push.memoize(`grpc-rds|${scope.namespace}|${scope.sidecar?.key ?? ''}|${name}`, compute);
  });
}

/** CDS for gRPC: EDS clusters of the visible services. */
export function grpcClusters(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  const out: ProtoJson[] = [];
  for (const svc of sidecarScope(push, proxy).services) if (grpcReachable(svc)) out.push(...serviceClusters(push, svc, proxy.namespace, true, proxy.clusterId));
  return out;
}
