// The demo's live per-workload summary: scrapes each sidecar's Prometheus endpoint
// (Istio's istio_requests_total and istio_request_duration_milliseconds, reporter
// "destination") and turns counter deltas into requests/s, success rate and p99.
import { parsePrometheusText, type Sample } from './prometheus-text.ts';
import type { DemoWorkload } from './topology.ts';

export interface WorkloadRow {
  workload: string;
  service: string;
  version: string;
  rps: number;
  successRate: number;
  p99Ms: number;
  total: number;
}

interface Snapshot {
  at: number;
  requests: number;
  ok: number;
  buckets: Map<number, number>;
}

export class LiveSummary {
  readonly #workloads: readonly DemoWorkload[];
  readonly #previous = new Map<string, Snapshot>();

  constructor(workloads: readonly DemoWorkload[]) {
    this.#workloads = workloads;
  }

  async scrape(): Promise<WorkloadRow[]> {
    return Promise.all(this.#workloads.map(async (w) => this.#row(w, await fetchSamples(`http://${w.adminAddress}/stats/prometheus`))));
  }

  #row(w: DemoWorkload, samples: Sample[]): WorkloadRow {
    const inbound = samples.filter((s) => s.labels['reporter'] === 'destination');
    let requests = 0;
    let ok = 0;
    const buckets = new Map<number, number>();
    for (const s of inbound) {
      if (s.name === 'istio_requests_total') {
        requests += s.value;
        if (!(s.labels['response_code'] ?? '').startsWith('5') && s.labels['response_code'] !== '0') ok += s.value;
      } else if (s.name === 'istio_request_duration_milliseconds_bucket') {
        const le = s.labels['le'] === '+Inf' ? Infinity : Number(s.labels['le']);
        buckets.set(le, (buckets.get(le) ?? 0) + s.value);
      }
    }
    const now: Snapshot = { at: Date.now(), requests, ok, buckets };
    const before = this.#previous.get(w.name);
    this.#previous.set(w.name, now);
    const row: WorkloadRow = { workload: w.name, service: w.service, version: w.version, rps: 0, successRate: NaN, p99Ms: NaN, total: requests };
    if (!before) return row;
    const seconds = (now.at - before.at) / 1000;
    const dReq = requests - before.requests;
    row.rps = seconds > 0 ? dReq / seconds : 0;
    row.successRate = dReq > 0 ? (ok - before.ok) / dReq : NaN;
    row.p99Ms = histogramQuantile(0.99, diffBuckets(buckets, before.buckets));
    return row;
  }
}

async function fetchSamples(url: string): Promise<Sample[]> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(800) });
    return parsePrometheusText(await res.text());
  } catch {
    return [];
  }
}

function diffBuckets(now: Map<number, number>, before: Map<number, number>): Array<[number, number]> {
  return [...now.entries()].map(([le, v]) => [le, v - (before.get(le) ?? 0)] as [number, number]).sort((a, b) => a[0] - b[0]);
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
