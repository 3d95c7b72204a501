// A steady trickle of requests into the mesh's front door (productpage's sidecar), with
// its own client-side view: requests, successes and latency over a sliding window.
import http from 'node:http';

export interface TrafficWindow {
  requests: number;
  ok: number;
  /** Milliseconds, ascending, for percentiles. */
  latencies: number[];
  byStatus: Map<number, number>;
}

export class TrafficGenerator {
  readonly #target: { host: string; port: number; path: string };
  readonly #ratePerSecond: number;
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  #timer: NodeJS.Timeout | undefined;
  #window: TrafficWindow = emptyWindow();
  #sent = 0;

  constructor(target: { host: string; port: number; path: string }, ratePerSecond: number) {
    this.#target = target;
    this.#ratePerSecond = ratePerSecond;
  }

  start(): void {
    const interval = 1000 / this.#ratePerSecond;
    this.#timer = setInterval(() => this.#one(), interval);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#agent.destroy();
  }

  /** Returns the window since the last call and starts a new one. */
  take(): TrafficWindow {
    const w = this.#window;
    this.#window = emptyWindow();
    w.latencies.sort((a, b) => a - b);
    return w;
  }

  #one(): void {
    const n = this.#sent++;
    const headers: Record<string, string> = {};
    // Every fifth request is from user "jason", so Istio's header-routing samples show.
    if (n % 5 === 0) headers['end-user'] = 'jason';
    const started = performance.now();
    const req = http.request(
      { host: this.#target.host, port: this.#target.port, path: this.#target.path, headers, agent: this.#agent, timeout: 15_000 },
      (res) => {
        res.resume();
        res.on('end', () => this.#record(res.statusCode ?? 0, performance.now() - started));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => this.#record(0, performance.now() - started));
    req.end();
  }

  #record(status: number, ms: number): void {
    const w = this.#window;
    w.requests++;
    if (status >= 200 && status < 400) w.ok++;
    w.latencies.push(ms);
    w.byStatus.set(status, (w.byStatus.get(status) ?? 0) + 1);
  }
}

function emptyWindow(): TrafficWindow {
  return { requests: 0, ok: 0, latencies: [], byStatus: new Map() };
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}
