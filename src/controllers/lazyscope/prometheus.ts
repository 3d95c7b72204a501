// The durable lane of lazy scope: which workloads called which services in a window, from
// Prometheus (`istio_requests_total` as the calling sidecars report it, `reporter="source"`).
// Source-side metrics include the calls that already go direct, so an edge in use stays alive
// after the switch; the hub reports first calls under the caller's name, so Prometheus alone
// learns new edges too. A series that appeared inside the window counts (its first sample is
// already a call), as the alert rules count new series.

/** One caller → service pair with calls in the window. */
export interface PrometheusEdge {
  namespace: string;
  workload: string;
  /** Istio's `destination_service` (the service host). */
  service: string;
}

/** Rows one evaluation reads at most (a bound on a mesh-sized answer). */
export const MAX_PROMETHEUS_EDGES = 200_000;

/** A Prometheus duration (`90s`) for a window in milliseconds, whole seconds. */
export function promDuration(ms: number): string {
  return `${Math.max(1, Math.ceil(ms / 1000))}s`;
}

/** The query: caller → service pairs with at least one call in the window. */
export function edgeQuery(windowMs: number): string {
  const w = promDuration(windowMs);
  const sel = 'istio_requests_total{reporter="source"}';
  return `sum by (source_workload, source_workload_namespace, destination_service) (increase(${sel}[${w}]) > 0 or (${sel} > 0 unless ${sel} offset ${w}))`;
}

export class PrometheusQueryError extends Error {
  override readonly name = 'PrometheusQueryError';
}

/**
 * Runs the edge query against Prometheus's HTTP API (`/api/v1/query`), within `timeoutMs`.
 * Throws PrometheusQueryError naming the URL and Prometheus's reason when it does not answer
 * or answers with an error.
 */
export async function queryEdges(baseUrl: string, windowMs: number, timeoutMs = 5000): Promise<PrometheusEdge[]> {
  const url = new URL('api/v1/query', baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`);
  url.searchParams.set('query', edgeQuery(windowMs));
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new PrometheusQueryError(`Prometheus at ${url.origin} did not answer: ${err instanceof Error ? err.message : String(err)}`);
  }
  const text = await res.text();
  let body: { status?: string; error?: string; data?: { resultType?: string; result?: { metric?: Record<string, string> }[] } };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new PrometheusQueryError(`Prometheus at ${url.origin} answered ${res.status} with something other than JSON`);
  }
  if (!res.ok || body.status !== 'success') throw new PrometheusQueryError(`Prometheus at ${url.origin} refused the query (${res.status}): ${body.error ?? 'no reason given'}`);
  const out: PrometheusEdge[] = [];
  for (const r of body.data?.result ?? []) {
    const m = r.metric ?? {};
    const workload = m['source_workload'] ?? '';
    const namespace = m['source_workload_namespace'] ?? '';
    const service = m['destination_service'] ?? '';
    if (workload === '' || workload === 'unknown' || namespace === '' || service === '' || service === 'unknown') continue;
    out.push({ namespace, workload, service });
    if (out.length >= MAX_PROMETHEUS_EDGES) break;
  }
  return out;
}
