// Telemetry (telemetry.istio.io) → what a proxy's connection managers log and count, as istiod
// generates it: `accessLogging` with MeshConfig `extensionProviders` (`envoyHttpAls`, and the
// built-in `sextant` provider: ALS to the pilot itself, over the `xds-grpc` cluster) becomes
// `envoy.access_loggers.http_grpc` access logs, with the CEL filter of `filter.expression`;
// `metrics.overrides` becomes Istio's `istio.stats` filter config, and when `request_operation`
// is added, the RouteTemplates of the services the connection manager serves go with it.
// Inbound connection managers get the SERVER mode, outbound ones and gateways the CLIENT mode.
import {
  CEL_ACCESS_LOG_FILTER_NAME, CEL_ACCESS_LOG_FILTER_TYPE, HTTP_GRPC_ACCESS_LOG_NAME, HTTP_GRPC_ACCESS_LOG_TYPE, XDS_GRPC_CLUSTER,
} from '../../envoy/access-log.ts';
import { HCM_TYPE, TYPED_STRUCT_TYPE } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import type { AccessLogging, MetricsOverrides, TelemetrySpec, RouteTemplatesSpec } from '../../api/index.ts';
import type { Resource } from '../../api/resource.ts';
import { byAge, labelsMatch } from '../../registry/index.ts';
import type { Proxy } from '../model.ts';
import type { SextantPushContext } from '../push/context.ts';
import { resolveHost } from '../push/context.ts';
import { proxyServiceTargets, sidecarScope } from '../push/scope.ts';
import type { ExtensionProvider } from '../mesh-config/index.ts';
import type { OperationTemplate } from '../../telemetry/operations.ts';

/** The built-in access-log provider: ALS to the pilot that serves the proxy (Istio's `xds-grpc` cluster). */
export const SEXTANT_PROVIDER = 'sextant';
/** The ALS log name of the built-in provider. */
export const SEXTANT_LOG_NAME = 'sextant';
/** The peer objects an ALS entry carries, as Istio's `envoyHttpAls` provider asks for them. */
export const PEER_STATE_OBJECTS = ['upstream_peer', 'downstream_peer'];

const STATS_FILTER = 'istio.stats';
const STATS_TYPE_URL = 'type.googleapis.com/stats.PluginConfig';
const ROUTER_FILTER = 'envoy.filters.http.router';

type Mode = 'CLIENT' | 'SERVER';
type Reporter = 'source' | 'destination' | 'gateway';

interface TelemetryIndex {
  /** The oldest Telemetry without selector in the root namespace. */
  root: Resource<TelemetrySpec> | undefined;
  /** The oldest Telemetry without selector per namespace. */
  byNamespace: ReadonlyMap<string, Resource<TelemetrySpec>>;
  /** Telemetries with a selector per namespace, oldest first. */
  selecting: ReadonlyMap<string, readonly Resource<TelemetrySpec>[]>;
  /** Declared operations by service host. */
  templates: ReadonlyMap<string, readonly OperationTemplate[]>;
}

const key = (r: Resource): string => `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;

/** Problems met while generating from Telemetry (unknown providers, unsupported metrics), by resource or provider. */
export function telemetryProblems(push: SextantPushContext): ReadonlyMap<string, string> {
  return push.memoize('telemetry|problems', () => new Map<string, string>());
}

function problem(push: SextantPushContext, where: string, what: string): void {
  (telemetryProblems(push) as Map<string, string>).set(where, what);
}

function telemetryIndex(push: SextantPushContext): TelemetryIndex {
  return push.memoize('telemetry|index', () => {
    const all: Resource<TelemetrySpec>[] = [];
    const templates = new Map<string, OperationTemplate[]>();
    for (const r of push.resources) {
      if (r.kind === 'Telemetry') all.push(r as Resource<TelemetrySpec>);
      else if (r.kind === 'RouteTemplates') {
        const spec = r.spec as RouteTemplatesSpec;
        const host = resolveHost(spec.host, r.metadata.namespace);
        const list = templates.get(host) ?? [];
        for (const t of spec.templates) {
          list.push({ service: host, template: t.template, ...(t.name !== undefined ? { name: t.name } : {}), ...(t.methods !== undefined ? { methods: t.methods } : {}) });
        }
        templates.set(host, list);
      }
    }
    all.sort(byAge);
    let root: Resource<TelemetrySpec> | undefined;
    const byNamespace = new Map<string, Resource<TelemetrySpec>>();
    const selecting = new Map<string, Resource<TelemetrySpec>[]>();
    for (const t of all) {
      const spec = t.spec ?? {};
      if (spec.targetRef !== undefined || (spec.targetRefs?.length ?? 0) > 0) {
        problem(push, key(t), 'targetRef/targetRefs select waypoints and gateways by reference, which Sextant does not generate for: use selector (ignored)');
        continue;
      }
      const ns = t.metadata.namespace;
      const selector = spec.selector?.matchLabels;
      if (selector === undefined || Object.keys(selector).length === 0) {
        if (ns === push.mesh.rootNamespace && root === undefined) root = t;
        if (!byNamespace.has(ns)) byNamespace.set(ns, t);
        else problem(push, key(t), `${key(byNamespace.get(ns)!)} is older and applies to the namespace already (ignored)`);
      } else {
        const list = selecting.get(ns) ?? [];
        list.push(t);
        selecting.set(ns, list);
      }
    }
    return { root, byNamespace, selecting, templates };
  });
}

/** The Telemetries that apply to a proxy, least specific first: mesh (root namespace), namespace, workload. */
export function telemetriesFor(push: SextantPushContext, proxy: Proxy): Resource<TelemetrySpec>[] {
  const idx = telemetryIndex(push);
  const out: Resource<TelemetrySpec>[] = [];
  if (idx.root !== undefined) out.push(idx.root);
  const ns = idx.byNamespace.get(proxy.namespace);
  if (ns !== undefined && ns !== idx.root) out.push(ns);
  const w = (idx.selecting.get(proxy.namespace) ?? []).find((t) => labelsMatch(t.spec?.selector?.matchLabels, proxy.labels));
  if (w !== undefined) out.push(w);
  return out;
}

/** What a proxy's listeners depend on from Telemetry: '' when none applies and no default provider is set. */
export function telemetryClassKey(push: SextantPushContext, proxy: Proxy): string {
  const list = telemetriesFor(push, proxy);
  if (list.length === 0) return (push.mesh.defaultProviders?.accessLogging.length ?? 0) > 0 ? 'defaults' : '';
  return list.map(key).join(',');
}

/** Whether the Telemetry `telemetryKey` applies (or applied) to the proxy in a snapshot, for push planning. */
export function telemetrySelects(push: SextantPushContext, telemetryKey: string, proxy: Proxy): boolean {
  const r = push.byKey.get(telemetryKey) as Resource<TelemetrySpec> | undefined;
  if (r === undefined) return false;
  const ns = r.metadata.namespace;
  if (ns !== proxy.namespace && ns !== push.mesh.rootNamespace) return false;
  const selector = r.spec?.selector?.matchLabels;
  if (selector === undefined || Object.keys(selector).length === 0) return true;
  return ns === proxy.namespace && labelsMatch(selector, proxy.labels);
}

/** Whether any Telemetry of the snapshot asks for `request_operation` (then RouteTemplates changes reach the proxies). */
export function operationsRequested(push: SextantPushContext): boolean {
  return push.memoize('telemetry|operations', () => push.resources.some((r) => r.kind === 'Telemetry'
    && ((r.spec as TelemetrySpec | undefined)?.metrics ?? []).some((m) => (m.overrides ?? []).some((o) => o.tagOverrides?.['request_operation'] !== undefined))));
}

// ---------------------------------------------------------------- access logging

interface LoggingSpec {
  filter: string | undefined;
  disabled: boolean;
}

function modeMatches(l: AccessLogging | MetricsOverrides, mode: Mode): boolean {
  const m = l.match?.mode ?? 'CLIENT_AND_SERVER';
  return m === 'CLIENT_AND_SERVER' || m === mode;
}

/** Istio's mergeLogs: which providers log for a mode, with their filter, least to most specific. */
function mergeLogs(logs: readonly AccessLogging[], defaults: readonly string[], mode: Mode): Map<string, LoggingSpec> {
  const providers = new Map<string, LoggingSpec>();
  if (logs.length === 0) {
    for (const p of defaults) providers.set(p, { filter: undefined, disabled: false });
    return providers;
  }
  let inScope = [...defaults];
  const filters = new Map<string, string>();
  for (const l of logs) {
    const names = (l.providers ?? []).map((p) => p.name);
    if (names.length > 0) inScope = names;
    if (l.filter?.expression !== undefined && l.filter.expression !== '') for (const p of inScope) filters.set(p, l.filter.expression);
  }
  const scope = new Set(inScope);
  let parent = [...defaults];
  for (const l of logs) {
    if (!modeMatches(l, mode)) continue;
    let names = (l.providers ?? []).map((p) => p.name);
    if (names.length === 0) names = parent;
    parent = names;
    for (const p of names) {
      if (!scope.has(p)) continue; // a parent's provider that a more specific Telemetry replaced
      providers.set(p, { filter: filters.get(p), disabled: l.disabled === true });
    }
  }
  return providers;
}

/** The ALS cluster of an `envoyHttpAls` service: its outbound cluster, or the control plane's own. */
function alsCluster(push: SextantPushContext, service: string, port: number): { cluster: string; authority: string } | undefined {
  const slash = service.indexOf('/');
  const host = slash >= 0 ? service.slice(slash + 1) : service;
  if ((push.registry.byHost.get(host) ?? []).length > 0) return { cluster: `outbound|${port}||${host}`, authority: host };
  // the pilot itself (MeshConfig defaultConfig.discoveryAddress): the proxy's xDS servers
  const discovery = push.mesh.defaultConfig.discoveryAddress.replace(/:\d+$/, '');
  if (host === discovery || host === `${discovery}.cluster.local` || `${host}.cluster.local` === discovery) return { cluster: XDS_GRPC_CLUSTER, authority: host };
  return undefined;
}

function accessLogEntry(push: SextantPushContext, providerName: string, spec: LoggingSpec, reporter: Reporter): ProtoJson | undefined {
  const provider: ExtensionProvider | undefined = push.mesh.extensionProviders?.find((p) => p.name === providerName);
  let common: ProtoJson;
  let extra: ProtoJson = {};
  const tags = [{ tag: 'reporter', literal: { value: reporter } }];
  if (provider === undefined && providerName === SEXTANT_PROVIDER) {
    common = {
      logName: SEXTANT_LOG_NAME,
      grpcService: { envoyGrpc: { clusterName: XDS_GRPC_CLUSTER } },
      transportApiVersion: 'V3',
      filterStateObjectsToLog: PEER_STATE_OBJECTS,
      customTags: tags,
    };
  } else if (provider?.envoyHttpAls !== undefined) {
    const als = provider.envoyHttpAls;
    const target = alsCluster(push, als.service, als.port);
    if (target === undefined) {
      problem(push, `provider/${providerName}`, `envoyHttpAls service ${als.service} is not in the registry (no ServiceEntry declares it): its access logs are not generated`);
      return undefined;
    }
    common = {
      logName: als.logName,
      grpcService: { envoyGrpc: { clusterName: target.cluster, authority: target.authority } },
      transportApiVersion: 'V3',
      filterStateObjectsToLog: als.filterStateObjectsToLog.length > 0 ? als.filterStateObjectsToLog : PEER_STATE_OBJECTS,
      customTags: tags,
    };
    extra = {
      ...(als.additionalRequestHeadersToLog.length > 0 ? { additionalRequestHeadersToLog: als.additionalRequestHeadersToLog } : {}),
      ...(als.additionalResponseHeadersToLog.length > 0 ? { additionalResponseHeadersToLog: als.additionalResponseHeadersToLog } : {}),
      ...(als.additionalResponseTrailersToLog.length > 0 ? { additionalResponseTrailersToLog: als.additionalResponseTrailersToLog } : {}),
    };
  } else {
    problem(push, `provider/${providerName}`, provider === undefined
      ? `no extension provider is named ${JSON.stringify(providerName)} (MeshConfig extensionProviders; built in: ${SEXTANT_PROVIDER})`
      : `provider ${providerName} is ${provider.kind}: access logs are generated for envoyHttpAls providers and the built-in ${SEXTANT_PROVIDER}`);
    return undefined;
  }
  const out: ProtoJson = {
    name: HTTP_GRPC_ACCESS_LOG_NAME,
    typedConfig: { '@type': HTTP_GRPC_ACCESS_LOG_TYPE, commonConfig: common, ...extra },
  };
  if (spec.filter !== undefined) {
    out['filter'] = { extensionFilter: { name: CEL_ACCESS_LOG_FILTER_NAME, typedConfig: { '@type': CEL_ACCESS_LOG_FILTER_TYPE, expression: spec.filter } } };
  }
  return out;
}

/** The access_log list of a connection manager in a mode (empty: none). */
export function accessLogsFor(push: SextantPushContext, proxy: Proxy, mode: Mode): ProtoJson[] {
  const reporter: Reporter = proxy.type === 'router' ? 'gateway' : mode === 'SERVER' ? 'destination' : 'source';
  return push.memoize(`telemetry|logs|${telemetryClassKey(push, proxy)}|${mode}|${reporter}`, () => {
    const logs = telemetriesFor(push, proxy).flatMap((t) => t.spec?.accessLogging ?? []);
    const merged = mergeLogs(logs, push.mesh.defaultProviders?.accessLogging ?? [], mode);
    const out: ProtoJson[] = [];
    for (const name of [...merged.keys()].sort()) {
      const spec = merged.get(name)!;
      if (spec.disabled) continue;
      const entry = accessLogEntry(push, name, spec, reporter);
      if (entry !== undefined) out.push(entry);
    }
    return out;
  });
}

// ---------------------------------------------------------------- metrics

const METRIC_NAMES: Readonly<Record<string, string | undefined>> = {
  REQUEST_COUNT: 'requests_total',
  REQUEST_DURATION: 'request_duration_milliseconds',
  REQUEST_SIZE: 'request_bytes',
  RESPONSE_SIZE: 'response_bytes',
  TCP_OPENED_CONNECTIONS: 'tcp_connections_opened_total',
  TCP_CLOSED_CONNECTIONS: 'tcp_connections_closed_total',
  TCP_SENT_BYTES: 'tcp_sent_bytes_total',
  TCP_RECEIVED_BYTES: 'tcp_received_bytes_total',
};

/**
 * Istio's standard metric labels and Kiali's `request_operation`: the dimensions the sidecars
 * produce. A tag override of any other label (a custom CEL dimension) is left out and reported,
 * rather than sent to sidecars that would refuse the whole listener update for it.
 */
const STANDARD_LABELS: ReadonlySet<string> = new Set([
  'reporter', 'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version',
  'source_canonical_service', 'source_canonical_revision', 'source_cluster',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version',
  'destination_service', 'destination_service_name', 'destination_service_namespace',
  'destination_canonical_service', 'destination_canonical_revision', 'destination_cluster',
  'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy', 'request_operation',
]);

/** The stats rules (`stats.PluginConfig.metrics`) of a mode: every applicable override, least specific first. */
function statsRules(push: SextantPushContext, proxy: Proxy, mode: Mode): ProtoJson[] {
  const rules: ProtoJson[] = [];
  for (const t of telemetriesFor(push, proxy)) {
    for (const m of t.spec?.metrics ?? []) {
      const providers = (m.providers ?? []).map((p) => p.name);
      if (providers.length > 0 && !providers.includes('prometheus')) continue; // overrides of other providers
      (m.overrides ?? []).forEach((o, i) => {
        if (!modeMatches(o, mode)) return;
        if (o.match?.customMetric !== undefined) {
          problem(push, `${key(t)}#metrics.overrides[${i}]`, `custom metric ${o.match.customMetric}: the proxy has Istio's standard metrics only (ignored)`);
          return;
        }
        const metric = o.match?.metric ?? 'ALL_METRICS';
        const name = metric === 'ALL_METRICS' ? '' : METRIC_NAMES[metric];
        if (name === undefined) {
          problem(push, `${key(t)}#metrics.overrides[${i}]`, `metric ${metric} is not emitted by the proxy (ignored)`);
          return;
        }
        if (o.disabled !== true && Object.keys(o.tagOverrides ?? {}).every((tag) => !STANDARD_LABELS.has(tag))) {
          // nothing for the sidecars in it (only custom labels, reported below)
          for (const tag of Object.keys(o.tagOverrides ?? {})) problem(push, `${key(t)}#metrics.overrides[${i}].tagOverrides.${tag}`, `label ${tag} is not one of Istio's standard labels (or request_operation): custom dimensions are not produced by the sidecars (ignored)`);
          return;
        }
        const rule: ProtoJson = {};
        if (name !== '') rule['name'] = name;
        if (o.disabled === true) rule['drop'] = true;
        const remove: string[] = [];
        const dimensions: Record<string, string> = {};
        for (const [tag, ov] of Object.entries(o.tagOverrides ?? {})) {
          if (!STANDARD_LABELS.has(tag)) {
            problem(push, `${key(t)}#metrics.overrides[${i}].tagOverrides.${tag}`, `label ${tag} is not one of Istio's standard labels (or request_operation): custom dimensions are not produced by the sidecars (ignored)`);
            continue;
          }
          if (ov.operation === 'REMOVE') remove.push(tag);
          else dimensions[tag] = ov.value ?? '';
        }
        if (remove.length > 0) rule['tags_to_remove'] = remove;
        if (Object.keys(dimensions).length > 0) rule['dimensions'] = dimensions;
        rules.push(rule);
      });
    }
  }
  return rules;
}

/** The templates a connection manager's requests are named by: its services' (inbound: without the service, the port is one workload's). */
function templatesFor(push: SextantPushContext, proxy: Proxy, mode: Mode, inboundPort: number | undefined): ProtoJson[] {
  const idx = telemetryIndex(push);
  if (idx.templates.size === 0) return [];
  const out: ProtoJson[] = [];
  const add = (t: OperationTemplate, withService: boolean): void => {
    out.push({
      ...(withService && t.service !== undefined ? { service: t.service } : {}),
      template: t.template,
      ...(t.name !== undefined ? { name: t.name } : {}),
      ...(t.methods !== undefined ? { methods: [...t.methods] } : {}),
    });
  };
  if (mode === 'SERVER') {
    const hosts = new Set(proxyServiceTargets(push, proxy).filter((t) => inboundPort === undefined || t.targetPort === inboundPort).map((t) => t.service.hostname));
    for (const h of [...hosts].sort()) for (const t of idx.templates.get(h) ?? []) add(t, hosts.size > 1);
    return out;
  }
  const scope = sidecarScope(push, proxy);
  for (const [host, list] of [...idx.templates].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    if (proxy.type !== 'router' && !scope.hostnames.has(host)) continue;
    for (const t of list) add(t, true);
  }
  return out;
}

/** The `istio.stats` filter of a connection manager in a mode, or undefined when no override applies. */
export function statsFilterFor(push: SextantPushContext, proxy: Proxy, mode: Mode, inboundPort: number | undefined): ProtoJson | undefined {
  const classKey = telemetryClassKey(push, proxy);
  const rules = push.memoize(`telemetry|rules|${classKey}|${mode}`, () => statsRules(push, proxy, mode));
  if (rules.length === 0) return undefined;
  const operations = rules.some((r) => Object.hasOwn((r['dimensions'] as object | undefined) ?? {}, 'request_operation'));
  const templates = operations ? templatesFor(push, proxy, mode, inboundPort) : [];
  // one object per distinct config, so proxies alike share its encoding
  return push.memoize(`telemetry|stats|${classKey}|${mode}|${JSON.stringify(templates)}`, () => {
    const value: ProtoJson = { metrics: rules };
    if (templates.length > 0) value['operations'] = { templates };
    return { name: STATS_FILTER, typedConfig: { '@type': TYPED_STRUCT_TYPE, typeUrl: STATS_TYPE_URL, value } };
  });
}

// ---------------------------------------------------------------- listeners

function portOf(l: ProtoJson, chain: ProtoJson): number | undefined {
  const dp = (chain['filterChainMatch'] as ProtoJson | undefined)?.['destinationPort'];
  if (typeof dp === 'number') return dp;
  const p = ((l['address'] as ProtoJson | undefined)?.['socketAddress'] as ProtoJson | undefined)?.['portValue'];
  return typeof p === 'number' ? p : undefined;
}

/**
 * Adds Telemetry's access logs and stats filter to every HTTP connection manager of the
 * listeners. Listeners are copied where they change (the originals may be shared by other
 * proxies' snapshots); untouched when no Telemetry or default provider applies.
 */
export function applyTelemetry(push: SextantPushContext, proxy: Proxy, listeners: ProtoJson[]): ProtoJson[] {
  if (telemetryClassKey(push, proxy) === '') return listeners;
  return listeners.map((l) => {
    const inbound = l['trafficDirection'] === 'INBOUND';
    const mode: Mode = inbound ? 'SERVER' : 'CLIENT';
    let changed = false;
    const chains = ((l['filterChains'] as ProtoJson[] | undefined) ?? []).map((c) => {
      let chainChanged = false;
      const filters = ((c['filters'] as ProtoJson[] | undefined) ?? []).map((f) => {
        const tc = f['typedConfig'] as ProtoJson | undefined;
        if (tc?.['@type'] !== HCM_TYPE) return f;
        const logs = accessLogsFor(push, proxy, mode);
        const stats = statsFilterFor(push, proxy, mode, inbound ? portOf(l, c) : undefined);
        if (logs.length === 0 && stats === undefined) return f;
        changed = true;
        chainChanged = true;
        const hcm: ProtoJson = { ...tc };
        if (logs.length > 0) hcm['accessLog'] = [...((tc['accessLog'] as ProtoJson[] | undefined) ?? []), ...logs];
        if (stats !== undefined) {
          const http = [...((tc['httpFilters'] as ProtoJson[] | undefined) ?? [])].filter((h) => h['name'] !== STATS_FILTER);
          const router = http.findIndex((h) => h['name'] === ROUTER_FILTER);
          http.splice(router < 0 ? http.length : router, 0, stats);
          hcm['httpFilters'] = http;
        }
        return { ...f, typedConfig: hcm };
      });
      return chainChanged ? { ...c, filters } : c;
    });
    return changed ? { ...l, filterChains: chains } : l;
  });
}

/**
 * What in the snapshot's Telemetry cannot be generated, whatever the proxy: providers no
 * MeshConfig names, providers of kinds without access logs, ALS services not in the registry,
 * Telemetries selecting by targetRef, overrides of metrics the proxy lacks. One line each,
 * naming the resource; the pilot logs them once.
 */
export function telemetryProblemList(push: SextantPushContext): string[] {
  return push.memoize('telemetry|problem-list', () => {
    const out: string[] = [];
    telemetryIndex(push); // records targetRef and duplicate problems
    const providers = new Set<string>(push.mesh.defaultProviders?.accessLogging ?? []);
    for (const r of push.resources) {
      if (r.kind !== 'Telemetry') continue;
      const spec = (r.spec ?? {}) as TelemetrySpec;
      for (const l of spec.accessLogging ?? []) for (const p of l.providers ?? []) providers.add(p.name);
      for (const m of spec.metrics ?? []) {
        (m.overrides ?? []).forEach((o, i) => {
          for (const tag of Object.keys(o.tagOverrides ?? {})) {
            if (!STANDARD_LABELS.has(tag)) problem(push, `${key(r)}#metrics.overrides[${i}].tagOverrides.${tag}`, `label ${tag} is not one of Istio's standard labels (or request_operation): custom dimensions are not produced by the sidecars (ignored)`);
          }
          if (o.match?.customMetric !== undefined) problem(push, `${key(r)}#metrics.overrides[${i}]`, `custom metric ${o.match.customMetric}: the proxy has Istio's standard metrics only (ignored)`);
          else if (o.match?.metric !== undefined && o.match.metric !== 'ALL_METRICS' && METRIC_NAMES[o.match.metric] === undefined) problem(push, `${key(r)}#metrics.overrides[${i}]`, `metric ${o.match.metric} is not emitted by the proxy (ignored)`);
        });
      }
    }
    for (const name of providers) accessLogEntry(push, name, { filter: undefined, disabled: false }, 'source');
    for (const [where, what] of telemetryProblems(push)) out.push(`${where}: ${what}`);
    return out.sort();
  });
}
