// The demo's live per-workload summary: scrapes each sidecar's Prometheus endpoint
// (Istio's istio_requests_total and istio_request_duration_milliseconds, reporter
// "destination") and turns counter increases into requests/s, success rate and p99. A
// sidecar that restarted starts its counters from zero; that is a reset, never a negative rate.
import { CounterReads, perSecond } from './counters.ts';
import { parsePrometheusText, type Sample } from './prometheus-text.ts';
import type { DemoWorkload } from './topology.ts';

export interface WorkloadRow {
  workload: string;
  service: string;
  version: string;
  /** NaN when unknown: on the first read, or when the sidecar did not answer. */
  rps: number;
  successRate: number;
  p99Ms: number;
  /** Requests the sidecar served since the demo started, across its restarts. */
  total: number;
  /** Whether the sidecar answered this scrape. */
  scraped: boolean;
}

export interface SummaryOptions {
  /** How many times the workload's sidecar was restarted: each restart resets its counters. */
  sidecarRestarts?: (w: DemoWorkload) => number;
  /** The clock rates are computed with (epoch milliseconds). */
  now?: () => number;
}

interface WorkloadCounters {
  reads: CounterReads;
  total: number;
  /** The sidecar's restart count at the last read. */
  sidecarRestarts: number;
}

export class LiveSummary {
  readonly #workloads: readonly DemoWorkload[];
  readonly #sidecarRestarts: (w: DemoWorkload) => number;
  readonly #now: () => number;
  readonly #counters = new Map<string, WorkloadCounters>();

  constructor(workloads: readonly DemoWorkload[], opts: SummaryOptions = {}) {
    this.#workloads = workloads;
    this.#sidecarRestarts = opts.sidecarRestarts ?? (() => 0);
    this.#now = opts.now ?? Date.now;
  }

  async scrape(): Promise<WorkloadRow[]> {
    return Promise.all(this.#workloads.map(async (w) => {
      const samples = await fetchSamples(`http://${w.adminAddress}/stats/prometheus`);
      return this.#row(w, samples, this.#now(), this.#sidecarRestarts(w));
    }));
  }

  #row(w: DemoWorkload, samples: Sample[] | undefined, atMs: number, sidecarRestarts: number): WorkloadRow {
    const row: WorkloadRow = { workload: w.name, service: w.service, version: w.version, rps: NaN, successRate: NaN, p99Ms: NaN, total: 0, scraped: samples !== undefined };
    const known = this.#counters.get(w.name);
    row.total = known?.total ?? 0;
    // A sidecar that did not answer keeps its last read, so the next answer is compared with it.
    if (samples === undefined) return row;
    const inbound = samples.filter((s) => s.labels['reporter'] === 'destination' &&
      (s.name === 'istio_requests_total' || s.name === 'istio_request_duration_milliseconds_bucket'));
    const values = new Map(inbound.map((s) => [seriesKey(s), s.value]));
    if (!known) {
      const counters: WorkloadCounters = { reads: new CounterReads(), total: 0, sidecarRestarts };
      counters.reads.read(values, atMs);
      counters.total = sum(inbound.filter((s) => s.name === 'istio_requests_total').map((s) => s.value));
      this.#counters.set(w.name, counters);
      row.total = counters.total;
      return row;
    }
    const delta = known.reads.read(values, atMs, sidecarRestarts !== known.sidecarRestarts);
    known.sidecarRestarts = sidecarRestarts;
    if (!delta) return row;
    let requests = 0;
    let ok = 0;
    const buckets = new Map<number, number>();
    for (const s of inbound) {
      const inc = delta.increase.get(seriesKey(s)) ?? 0;
      if (s.name === 'istio_requests_total') {
        requests += inc;
        if (!(s.labels['response_code'] ?? '').startsWith('5') && s.labels['response_code'] !== '0') ok += inc;
      } else {
        const le = s.labels['le'] === '+Inf' ? Infinity : Number(s.labels['le']);
        buckets.set(le, (buckets.get(le) ?? 0) + inc);
      }
    }
    known.total += requests;
    row.total = known.total;
    row.rps = perSecond(requests, delta.seconds);
    row.successRate = requests > 0 ? ok / requests : NaN;
    row.p99Ms = histogramQuantile(0.99, [...buckets.entries()].sort((a, b) => a[0] - b[0]));
    return row;
  }
}

/** The series' identity: its name and labels in a fixed order. */
function seriesKey(s: Sample): string {
  return `${s.name}{${Object.keys(s.labels).sort().map((k) => `${k}=${JSON.stringify(s.labels[k])}`).join(',')}}`;
}

function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/** The page's samples, or undefined when the sidecar did not answer (down or restarting). */
async function fetchSamples(url: string): Promise<Sample[] | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(800) });
    const text = await res.text();
    return res.status === 200 ? parsePrometheusText(text) : undefined;
  } catch {
    return undefined;
  }
}

/** Prometheus' histogram_quantile over cumulative buckets (linear within a bucket). */
export function histogramQuantile(q: number, buckets: Array<[number, number]>): number {
  const total = buckets.at(-1)?.[1] ?? 0;
  if (total <= 0) return NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, count - prevCount);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}
