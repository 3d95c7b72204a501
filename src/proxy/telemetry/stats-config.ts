// Istio's stats filter config (`istio.stats`, a TypedStruct of `stats.PluginConfig`, which is
// what a Telemetry resource's metrics overrides compile to): which standard metrics are
// dropped and which labels are removed or added back, per metric or for all of them; and,
// when `request_operation` is added, the RouteTemplates the operation is named by.
import type { ProtoJson } from '../../envoy/index.ts';
import { ConfigError } from '../config/fields.ts';
import { OperationTemplateError, compileOperationTemplate } from '../../telemetry/operations.ts';
import type { OperationTemplate } from '../../telemetry/operations.ts';

export const STANDARD_METRICS = ['requests_total', 'request_duration_milliseconds', 'request_bytes', 'response_bytes', 'tcp_sent_bytes_total', 'tcp_received_bytes_total', 'tcp_connections_opened_total', 'tcp_connections_closed_total'] as const;
export type StandardMetric = (typeof STANDARD_METRICS)[number];

/** Every label the proxy can emit, in Istio's order. */
export const ALL_LABELS = [
  'reporter', 'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version',
  'source_canonical_service', 'source_canonical_revision', 'source_cluster',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version',
  'destination_service', 'destination_service_name', 'destination_service_namespace',
  'destination_canonical_service', 'destination_canonical_revision', 'destination_cluster',
  'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy',
  // Istio's and Kiali's operation label (opt-in: a Telemetry tagOverride adds it); bounded per service
  'request_operation',
] as const;
export type MetricLabel = (typeof ALL_LABELS)[number];

/**
 * The lean default: enough to draw the call graph and error rates by workload and service;
 * principals, apps, versions, revisions, clusters and gRPC status are opt-in.
 */
export const DEFAULT_LABELS: readonly MetricLabel[] = [
  'reporter', 'source_workload', 'source_workload_namespace', 'source_canonical_service',
  'destination_workload', 'destination_workload_namespace', 'destination_service', 'destination_canonical_service',
  'request_protocol', 'response_code', 'response_flags',
];

export interface MetricSettings {
  enabled: boolean;
  labels: readonly MetricLabel[];
}

export interface StatsConfig extends ReadonlyMap<StandardMetric, MetricSettings> {
  /** Some metric carries `request_operation`: requests are named by operation (src/telemetry/operations.ts). */
  readonly usesOperation?: boolean;
  /** The declared operations (RouteTemplates) the pilot sends along (`value.operations.templates`). */
  readonly operationTemplates?: readonly OperationTemplate[];
}

export function defaultStatsConfig(): StatsConfig {
  return new Map(STANDARD_METRICS.map((m) => [m, { enabled: true, labels: DEFAULT_LABELS }]));
}

/**
 * Reads `{metrics: [{name?, drop?, tags_to_remove?, dimensions?}]}` from a TypedStruct
 * (`udpa.type.v1.TypedStruct` or `xds.type.v3.TypedStruct`) or a bare Struct. A rule without
 * a name applies to every metric; `dimensions` keys add labels from ALL_LABELS back.
 */
export function compileStatsConfig(typed: ProtoJson | undefined, at: string): StatsConfig {
  const value = ((typed?.['value'] ?? typed ?? {}) as ProtoJson);
  const rules = (value['metrics'] as ProtoJson[] | undefined) ?? [];
  const out = new Map<StandardMetric, { enabled: boolean; labels: MetricLabel[] }>(
    STANDARD_METRICS.map((m) => [m, { enabled: true, labels: [...DEFAULT_LABELS] }]),
  );
  rules.forEach((r, i) => {
    const where = `${at}.value.metrics[${i}]`;
    const name = String(r['name'] ?? '');
    const targets = name === '' ? [...STANDARD_METRICS] : [name as StandardMetric];
    if (name !== '' && !STANDARD_METRICS.includes(name as StandardMetric)) {
      throw new ConfigError(`${where}.name: unknown metric ${name}; expected one of ${STANDARD_METRICS.join(', ')}`);
    }
    const remove = ((r['tags_to_remove'] ?? r['tagsToRemove']) as string[] | undefined) ?? [];
    const add = Object.keys((r['dimensions'] as ProtoJson | undefined) ?? {});
    for (const l of [...remove, ...add]) {
      if (!ALL_LABELS.includes(l as MetricLabel)) throw new ConfigError(`${where}: unknown label ${l}`);
    }
    for (const t of targets) {
      const s = out.get(t)!;
      if (r['drop'] === true) s.enabled = false;
      for (const l of add) if (!s.labels.includes(l as MetricLabel)) s.labels.push(l as MetricLabel);
      s.labels = s.labels.filter((l) => !remove.includes(l));
    }
  });
  // Keep Istio's label order whatever the rules' order was; metrics with the same labels
  // share one list, so the request path builds each series key once.
  const interned = new Map<string, MetricLabel[]>();
  for (const s of out.values()) {
    const labels = ALL_LABELS.filter((l) => s.labels.includes(l));
    const k = labels.join(',');
    if (!interned.has(k)) interned.set(k, labels);
    s.labels = interned.get(k)!;
  }
  const usesOperation = [...out.values()].some((s) => s.enabled && s.labels.includes('request_operation'));
  return Object.assign(out, { usesOperation, operationTemplates: compileTemplates(value['operations'], `${at}.value.operations`) });
}

/** `{templates: [{service?, template, name?, methods?}]}`: each checked as the sink and the API check it. */
function compileTemplates(v: unknown, at: string): OperationTemplate[] {
  if (v === undefined || v === null) return [];
  const list = (v as ProtoJson)['templates'];
  if (!Array.isArray(list)) throw new ConfigError(`${at}.templates: expected a list`);
  return list.map((t, i) => {
    const o = (t ?? {}) as ProtoJson;
    const methods = o['methods'];
    const tpl: OperationTemplate = {
      template: String(o['template'] ?? ''),
      ...(typeof o['service'] === 'string' ? { service: o['service'] } : {}),
      ...(typeof o['name'] === 'string' ? { name: o['name'] } : {}),
      ...(Array.isArray(methods) ? { methods: methods.map(String) } : {}),
    };
    try {
      compileOperationTemplate(tpl);
    } catch (err) {
      if (err instanceof OperationTemplateError) throw new ConfigError(`${at}.templates[${i}]: ${err.message}`);
      throw err;
    }
    return tpl;
  });
}
