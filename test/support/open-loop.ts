// An open-loop HTTP load generator: Poisson arrivals at a rate that follows a schedule, each
// request sent at its intended time whatever the earlier ones are doing, and its latency
// measured from that intended time (no coordinated omission). Records each request's tier,
// status and whether the answer was a shed (`x-envoy-overloaded`), for the adaptive-limits
// end-to-end test and the overload benchmark.
import http from 'node:http';
import { Rng } from './mmc.ts';

export interface OpenLoopOptions {
  host: string;
  port: number;
  path?: string;
  /** Requests per second at t ms since the start. */
  rate: (t: number) => number;
  durationMs: number;
  seed: number;
  /** Share of requests sent as tier 0 (the header's value 0); the rest as `lowTier`. */
  tier0Fraction?: number;
  lowTier?: number;
  tierHeader?: string;
  /** The client gives up after this (the request counts as failed; default 2 s). */
  deadlineMs?: number;
  /** Sockets at most (default 1024). */
  maxSockets?: number;
}

export interface Sent {
  /** Intended send time, ms since the start. */
  at: number;
  tier: number;
  /** 0: no answer (error or deadline). */
  status: number;
  overloaded: boolean;
  /** From the intended send time. */
  latencyMs: number;
}

export interface OpenLoopResult {
  sent: Sent[];
  /** How late sends left after their intended time (p99, ms): the generator's own lag. */
  sendLagP99Ms: number;
}

export async function runOpenLoop(o: OpenLoopOptions): Promise<OpenLoopResult> {
  const rng = new Rng(o.seed);
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.maxSockets ?? 1024, maxFreeSockets: o.maxSockets ?? 1024 });
  const deadline = o.deadlineMs ?? 2000;
  const sent: Sent[] = [];
  const lags: number[] = [];
  const pending = new Set<Promise<void>>();
  const start = performance.now();
  // the schedule of intended send times, drawn ahead (thinning on 10 ms slices)
  let next = 0;
  const draw = (from: number): number => {
    let t = from;
    for (;;) {
      const r = o.rate(t);
      if (r > 0) {
        const gap = rng.exp(1000 / r);
        if (gap <= 10) return t + gap;
      }
      t += 10;
      if (t > o.durationMs) return Infinity;
    }
  };
  next = draw(0);
  const fire = (at: number): void => {
    const tier = rng.next() < (o.tier0Fraction ?? 0.1) ? 0 : (o.lowTier ?? 5);
    const rec: Sent = { at, tier, status: 0, overloaded: false, latencyMs: 0 };
    sent.push(rec);
    const p = new Promise<void>((resolve) => {
      let done = false;
      const finish = (status: number, overloaded: boolean): void => {
        if (done) return;
        done = true;
        rec.status = status;
        rec.overloaded = overloaded;
        rec.latencyMs = performance.now() - start - at;
        resolve();
      };
      const req = http.request({ host: o.host, port: o.port, path: o.path ?? '/', agent, headers: { [o.tierHeader ?? 'x-sextant-priority']: String(tier) } }, (res) => {
        res.on('data', () => undefined);
        res.on('end', () => finish(res.statusCode ?? 0, res.headers['x-envoy-overloaded'] === 'true'));
        res.on('error', () => finish(0, false));
      });
      req.setTimeout(deadline, () => {
        finish(0, false);
        req.destroy();
      });
      req.on('error', () => finish(0, false));
      req.end();
    });
    pending.add(p);
    void p.then(() => pending.delete(p));
  };
  await new Promise<void>((resolve) => {
    const loop = (): void => {
      const now = performance.now() - start;
      while (next <= now) {
        lags.push(now - next);
        fire(next);
        next = draw(next);
      }
      if (next === Infinity || now > o.durationMs) {
        resolve();
        return;
      }
      setTimeout(loop, Math.max(0, Math.min(5, next - now)));
    };
    loop();
  });
  await Promise.all(pending);
  agent.destroy();
  lags.sort((a, b) => a - b);
  return { sent, sendLagP99Ms: lags.length === 0 ? 0 : lags[Math.min(lags.length - 1, Math.ceil(0.99 * lags.length) - 1)]! };
}

/** Summary of the requests intended in [from, to) ms. */
export function summarize(sent: readonly Sent[], from: number, to: number): { sent: number; ok: number; shed: number; failed: number; admittedP99: number; tier0Sent: number; tier0Ok: number } {
  const lat: number[] = [];
  let n = 0;
  let ok = 0;
  let shed = 0;
  let failed = 0;
  let tier0Sent = 0;
  let tier0Ok = 0;
  for (const s of sent) {
    if (s.at < from || s.at >= to) continue;
    n++;
    if (s.overloaded) shed++;
    else {
      lat.push(s.latencyMs);
      if (s.status >= 200 && s.status < 300) ok++;
      else failed++;
    }
    if (s.tier === 0) {
      tier0Sent++;
      if (s.status >= 200 && s.status < 300) tier0Ok++;
    }
  }
  lat.sort((a, b) => a - b);
  const admittedP99 = lat.length === 0 ? NaN : lat[Math.min(lat.length - 1, Math.ceil(0.99 * lat.length) - 1)]!;
  return { sent: n, ok, shed, failed, admittedP99, tier0Sent, tier0Ok };
}
