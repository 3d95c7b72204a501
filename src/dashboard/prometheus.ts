// The alerts Prometheus holds (`--prometheus URL`): read from its /api/v1/alerts with a bounded
// wait and a bounded answer, each failure one sentence naming the URL.
import { ApiError } from './params.ts';

/** One alert as the monitoring API serves it. */
export interface MeshAlert {
  name: string;
  state: 'firing' | 'pending';
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** When the rule's expression first held (RFC 3339). */
  activeAt: string;
  value: number;
}

export interface AlertsAnswer {
  prometheus: string;
  alerts: MeshAlert[];
}

/** How much of Prometheus's answer is read at most. */
const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

export class PrometheusAlerts {
  readonly url: URL;
  private readonly timeoutMs: number;

  constructor(base: string, timeoutMs = 5000) {
    this.url = new URL('api/v1/alerts', base.endsWith('/') ? base : `${base}/`);
    this.timeoutMs = timeoutMs;
  }

  async alerts(): Promise<AlertsAnswer> {
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.url, { redirect: 'error', signal: AbortSignal.timeout(this.timeoutMs) });
      text = await boundedText(res);
    } catch (err) {
      throw new ApiError(502, `cannot read alerts from Prometheus at ${this.url.href}: ${why(err, this.timeoutMs)}`);
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new ApiError(502, `Prometheus at ${this.url.href} answered ${res.status} with something other than JSON: is --prometheus the address of a Prometheus server?`);
    }
    const b = body as { status?: unknown; error?: unknown; data?: { alerts?: unknown } };
    if (b.status !== 'success' || !Array.isArray(b.data?.alerts)) {
      throw new ApiError(502, `Prometheus at ${this.url.href} answered ${res.status}: ${typeof b.error === 'string' ? b.error : 'not a list of alerts'}`);
    }
    const alerts: MeshAlert[] = [];
    for (const a of b.data.alerts as Array<Record<string, unknown>>) {
      const labels = strings(a['labels']);
      const state = a['state'];
      if (state !== 'firing' && state !== 'pending') continue;
      alerts.push({
        name: labels['alertname'] ?? '',
        state,
        labels,
        annotations: strings(a['annotations']),
        activeAt: typeof a['activeAt'] === 'string' ? a['activeAt'] : '',
        value: Number(a['value']),
      });
    }
    // Firing first, then by name and labels, so the page and the CLI list them steadily.
    alerts.sort((x, y) => (x.state !== y.state ? (x.state === 'firing' ? -1 : 1) : x.name !== y.name ? (x.name < y.name ? -1 : 1) : JSON.stringify(x.labels) < JSON.stringify(y.labels) ? -1 : 1));
    return { prometheus: this.url.origin, alerts };
  }
}

/** The body as text, refused past MAX_ANSWER_BYTES (the reading stops there). */
async function boundedText(res: Response): Promise<string> {
  const reader = res.body?.getReader();
  if (reader === undefined) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_ANSWER_BYTES) {
      await reader.cancel();
      throw new Error(`its answer is longer than the ${MAX_ANSWER_BYTES} bytes read`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function strings(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof v !== 'object' || v === null) return out;
  for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

function why(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `no answer within ${timeoutMs / 1000} s`;
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  const code = (cause as { code?: unknown } | undefined)?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  return cause instanceof Error ? cause.message : String(cause);
}
