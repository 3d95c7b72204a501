// Istio's standard metrics in Prometheus text format: counters and histograms keyed by a
// bounded set of label values. Paths are never labels; every metric holds at most
// `maxSeries` series and counts what it had to drop, so no traffic can grow it unboundedly.
import { ALL_LABELS } from './stats-config.ts';
import type { MetricLabel, StandardMetric, StatsConfig } from './stats-config.ts';

export type LabelValues = Readonly<Record<MetricLabel, string>>;

const DURATION_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
const BYTES_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000];

interface Series {
  labels: string;
  value: number;
  bucketBounds: readonly number[] | undefined;
  buckets: Float64Array | undefined;
  sum: number;
}

/** The metrics recordRequest() counts, in the order of its series. */
const REQUEST_METRICS: readonly StandardMetric[] = ['requests_total', 'request_duration_milliseconds', 'request_bytes', 'response_bytes'];

/** Adds one observation to a series (a histogram's count, sum and bucket; a counter's value). */
function count(m: { droppedSeries: number }, s: Series | null | 'full', value: number): void {
  if (s === null) return;
  if (s === 'full') {
    m.droppedSeries++;
    return;
  }
  const b = s.bucketBounds;
  if (b === undefined) {
    s.value += value;
    return;
  }
  s.value++;
  s.sum += value;
  for (let i = 0; i < b.length; i++) {
    if (value <= b[i]!) {
      s.buckets![i]!++;
      break;
    }
  }
}

class Family {
  readonly name: string;
  readonly help: string;
  readonly kind: 'counter' | 'histogram';
  readonly bucketBounds: number[];
  readonly series = new Map<string, Series>();

  constructor(name: string, help: string, kind: 'counter' | 'histogram', buckets: number[] = []) {
    this.name = name;
    this.help = help;
    this.kind = kind;
    this.bucketBounds = buckets;
  }
}

export class IstioMetrics {
  private readonly families = new Map<StandardMetric, Family>();
  readonly maxSeries: number;
  /** Series not created because a family was full. */
  droppedSeries = 0;
  /** Extra text appended to the exposition (proxy-level gauges). */
  private readonly extra: (() => string)[] = [];
  /** The request series of a label-values object under a stats config (label objects are reused). */
  private readonly requestSeries = new WeakMap<LabelValues, { config: StatsConfig; series: (Series | null | 'full')[] }>();

  constructor(maxSeries = 10_000) {
    this.maxSeries = maxSeries;
    this.families.set('requests_total', new Family('istio_requests_total', 'Requests handled, by source, destination and response.', 'counter'));
    this.families.set('request_duration_milliseconds', new Family('istio_request_duration_milliseconds', 'Request duration in milliseconds.', 'histogram', DURATION_BUCKETS));
    this.families.set('request_bytes', new Family('istio_request_bytes', 'Request sizes (body bytes).', 'histogram', BYTES_BUCKETS));
    this.families.set('response_bytes', new Family('istio_response_bytes', 'Response sizes (body bytes).', 'histogram', BYTES_BUCKETS));
    this.families.set('tcp_sent_bytes_total', new Family('istio_tcp_sent_bytes_total', 'Bytes sent to the downstream on TCP connections.', 'counter'));
    this.families.set('tcp_received_bytes_total', new Family('istio_tcp_received_bytes_total', 'Bytes received from the downstream on TCP connections.', 'counter'));
    this.families.set('tcp_connections_opened_total', new Family('istio_tcp_connections_opened_total', 'TCP connections opened.', 'counter'));
    this.families.set('tcp_connections_closed_total', new Family('istio_tcp_connections_closed_total', 'TCP connections closed.', 'counter'));
  }

  addExposition(f: () => string): void {
    this.extra.push(f);
  }

  /** Records one HTTP request under `config` (which metrics, which labels). */
  recordRequest(config: StatsConfig, labels: LabelValues, durationMs: number, requestBytes: number, responseBytes: number): void {
    // Label objects are reused across requests and series are never removed: each label
    // object keeps its four series under the config in force, found once.
    let series = this.requestSeries.get(labels);
    if (series === undefined || series.config !== config) {
      series = { config, series: REQUEST_METRICS.map((m) => this.seriesOf(config, m, labels)) };
      this.requestSeries.set(labels, series);
    }
    const s = series.series;
    count(this, s[0]!, 1);
    count(this, s[1]!, durationMs);
    count(this, s[2]!, requestBytes);
    count(this, s[3]!, responseBytes);
  }

  observe(config: StatsConfig, metric: StandardMetric, labels: LabelValues, value: number): void {
    count(this, this.seriesOf(config, metric, labels), value);
  }

  /** The series of `labels` in `metric` under `config`: null when disabled, 'full' when it could not be added. */
  private seriesOf(config: StatsConfig, metric: StandardMetric, labels: LabelValues): Series | null | 'full' {
    const settings = config.get(metric);
    if (!settings || !settings.enabled) return null;
    const fam = this.families.get(metric)!;
    let key = '';
    for (const l of settings.labels) key += `${l}="${escapeLabel(labels[l])}",`;
    let s = fam.series.get(key);
    if (!s) {
      if (fam.series.size >= this.maxSeries) return 'full';
      s = { labels: key.slice(0, -1), value: 0, bucketBounds: fam.kind === 'histogram' ? fam.bucketBounds : undefined, buckets: fam.kind === 'histogram' ? new Float64Array(fam.bucketBounds.length) : undefined, sum: 0 };
      fam.series.set(key, s);
    }
    return s;
  }

  seriesCount(): number {
    let n = 0;
    for (const f of this.families.values()) n += f.series.size;
    return n;
  }

  /** Prometheus text exposition format 0.0.4. */
  expose(): string {
    const out: string[] = [];
    for (const f of this.families.values()) {
      if (f.series.size === 0) continue;
      out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.kind}`);
      for (const s of f.series.values()) {
        if (f.kind === 'counter') {
          out.push(`${f.name}{${s.labels}} ${s.value}`);
          continue;
        }
        let cum = 0;
        const sep = s.labels ? `${s.labels},` : '';
        f.bucketBounds.forEach((b, i) => {
          cum += s.buckets![i]!;
          out.push(`${f.name}_bucket{${sep}le="${b}"} ${cum}`);
        });
        out.push(`${f.name}_bucket{${sep}le="+Inf"} ${s.value}`);
        out.push(`${f.name}_sum{${s.labels}} ${s.sum}`);
        out.push(`${f.name}_count{${s.labels}} ${s.value}`);
      }
    }
    out.push('# HELP sextant_metric_series_dropped_total Metric series not created because a metric reached its series bound.');
    out.push('# TYPE sextant_metric_series_dropped_total counter');
    out.push(`sextant_metric_series_dropped_total ${this.droppedSeries}`);
    for (const f of this.extra) out.push(f());
    return out.join('\n') + '\n';
  }
}

function escapeLabel(v: string): string {
  return /["\\\n]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v;
}

/** Label values with every label 'unknown', to start from. */
export function unknownLabels(): Record<MetricLabel, string> {
  return Object.fromEntries(ALL_LABELS.map((l) => [l, 'unknown'])) as Record<MetricLabel, string>;
}
