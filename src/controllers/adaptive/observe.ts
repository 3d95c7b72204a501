// What the sidecars reported over LRS since a rule's last tick, per instance (address and
// inbound port), and the observation of a rule's service made from it. The load metrics are
// those of the pilot–proxy contract: `latency_ms_pNN` (samples, value × samples),
// `concurrency_max` and `limit_in_effect` (one sample, the value), `shed_shadow` and
// `shed_tier_N` (counts).
import type { Observation } from './step.ts';

/** One cluster's load from one report (the fields of the LRS ClusterStats the controller reads). */
export interface ClusterSample {
  cluster: string;
  successful: number;
  errors: number;
  dropped: number;
  metrics: ReadonlyMap<string, { count: number; total: number }>;
}

/** The sums of one instance since it was last read. */
export interface InstanceLoad {
  successful: number;
  errors: number;
  /** Enforced sheds. */
  dropped: number;
  /** Would-be sheds (shadow mode). */
  shadowShed: number;
  /** Sheds by tier summed (`shed_tier_N`): drops, and queue timeouts where the gate counts them there. */
  tierShed: number;
  /** latency metric name → samples and sum of value × samples. */
  latency: Map<string, { count: number; total: number }>;
  /** Highest concurrency reported; undefined when the proxy does not report it (a plain Envoy). */
  peak: number | undefined;
  /** The limit the gate last said it enforced. */
  limitInEffect: number | undefined;
  /** Reports folded in since the last read. */
  reports: number;
  /** When the last report arrived (ms since epoch). */
  lastAt: number;
}

const INBOUND = /^inbound\|(\d{1,5})\|\|$/;

/** The inbound port of an `inbound|PORT||` cluster; undefined for any other cluster. */
export function inboundPort(cluster: string): number | undefined {
  const m = INBOUND.exec(cluster);
  if (m === null) return undefined;
  const port = Number(m[1]);
  return port > 0 && port <= 65535 ? port : undefined;
}

/** The most instances held at once: reports for instances no rule names are dropped once this is reached. */
export const MAX_TRACKED_INSTANCES = 100_000;

/** Report sums per instance (`address|port`), read and reset at each rule tick. */
export class LoadLedger {
  private readonly byInstance = new Map<string, InstanceLoad>();
  dropped = 0;

  get size(): number {
    return this.byInstance.size;
  }

  /** Folds one proxy's report in, under each of its addresses. */
  add(addresses: readonly string[], receivedAt: number, clusters: readonly ClusterSample[]): void {
    for (const c of clusters) {
      const port = inboundPort(c.cluster);
      if (port === undefined) continue;
      for (const address of addresses) {
        const key = `${address}|${port}`;
        let load = this.byInstance.get(key);
        if (load === undefined) {
          if (this.byInstance.size >= MAX_TRACKED_INSTANCES) {
            this.dropped++;
            continue;
          }
          load = emptyLoad(receivedAt);
          this.byInstance.set(key, load);
        }
        fold(load, c, receivedAt);
      }
    }
  }

  /** Whether a report for the instance arrived since its last take. */
  has(key: string): boolean {
    return (this.byInstance.get(key)?.reports ?? 0) > 0;
  }

  /** When the instance last reported (ms since epoch), if it ever did. */
  lastReportAt(key: string): number | undefined {
    return this.byInstance.get(key)?.lastAt;
  }

  /** The sums of an instance since its last take (undefined when nothing arrived), and resets them. */
  take(key: string): InstanceLoad | undefined {
    const load = this.byInstance.get(key);
    if (load === undefined || load.reports === 0) return undefined;
    const out = { ...load, latency: new Map(load.latency) };
    Object.assign(load, emptyLoad(load.lastAt));
    return out;
  }

  /** Forgets instances with no report since `before` (ms since epoch). */
  prune(before: number): void {
    for (const [k, v] of this.byInstance) if (v.lastAt < before) this.byInstance.delete(k);
  }

  clear(): void {
    this.byInstance.clear();
  }
}

function emptyLoad(lastAt: number): InstanceLoad {
  return { successful: 0, errors: 0, dropped: 0, shadowShed: 0, tierShed: 0, latency: new Map(), peak: undefined, limitInEffect: undefined, reports: 0, lastAt };
}

function fold(load: InstanceLoad, c: ClusterSample, at: number): void {
  load.successful += c.successful;
  load.errors += c.errors;
  load.dropped += c.dropped;
  load.reports++;
  load.lastAt = Math.max(load.lastAt, at);
  for (const [name, m] of c.metrics) {
    if (name.startsWith('latency_ms_')) {
      const prev = load.latency.get(name) ?? { count: 0, total: 0 };
      load.latency.set(name, { count: prev.count + m.count, total: prev.total + m.total });
    } else if (name === 'concurrency_max') {
      const v = m.count > 0 ? m.total / m.count : m.total;
      load.peak = Math.max(load.peak ?? 0, v);
    } else if (name === 'limit_in_effect') {
      load.limitInEffect = m.count > 0 ? m.total / m.count : m.total;
    } else if (name === 'shed_shadow') {
      load.shadowShed += m.total;
    } else if (name.startsWith('shed_tier_')) {
      load.tierShed += m.total;
    }
  }
}

/** An instance's share of a tick: its sums (undefined: it did not report). */
export interface InstanceTick {
  healthy: boolean;
  load: InstanceLoad | undefined;
}

/**
 * The service's observation for the step: reporting healthy instances' sums; the latency at the
 * rule's percentile is the sample-weighted mean of the instances' values. An instance that does
 * not report its concurrency counts as using its limit (growth is then not refused on its account).
 */
export function observation(instances: readonly InstanceTick[], percentile: number, budget: number): Observation {
  const metric = `latency_ms_p${percentile}`;
  let healthy = 0;
  let reporting = 0;
  let samples = 0;
  let weighted = 0;
  let finished = 0;
  let errors = 0;
  let peak = 0;
  let peakUnknown = false;
  let shed = 0;
  for (const i of instances) {
    if (!i.healthy) continue;
    healthy++;
    const l = i.load;
    if (l === undefined) continue;
    reporting++;
    const lat = l.latency.get(metric);
    if (lat !== undefined && lat.count > 0) {
      samples += lat.count;
      weighted += lat.total;
    }
    // A gate that counts its queue timeouts as errors also counts them in shed_tier_N: they are
    // sheds (overload's normal answer), not the service's errors, so they come out of the errors.
    const timeouts = Math.min(l.errors, Math.max(0, l.tierShed - l.dropped));
    finished += l.successful + l.errors - timeouts;
    errors += l.errors - timeouts;
    shed += l.dropped + l.shadowShed + timeouts;
    if (l.peak === undefined) peakUnknown = true;
    else peak += l.peak;
  }
  return {
    instances: healthy,
    reporting,
    samples,
    latencyMs: samples > 0 ? weighted / samples : undefined,
    finished,
    errors,
    peakInFlight: peakUnknown ? Math.max(peak, budget) : peak,
    shed,
  };
}
