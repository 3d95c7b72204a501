// Every admission gate of the proxy, one per limit runtime key (an inbound port), kept across
// config updates so that requests in flight and waiting are not forgotten when a listener
// changes. Synced from the listeners in force: a gate no listener names any more is closed
// once it is idle.
import type { AdmissionConfig } from './config.ts';
import { AdmissionGate } from './gate.ts';
import type { GateCounters, GateReport, GateTimers, LimitSource } from './gate.ts';

export interface AdmissionGatesOptions {
  source?: LimitSource;
  clock?: () => number;
  timers?: GateTimers;
}

export class AdmissionGates {
  private readonly gates = new Map<string, AdmissionGate>();
  /** Gates no listener names any more, closed when idle. */
  private readonly retired = new Set<AdmissionGate>();
  private readonly o: AdmissionGatesOptions;

  constructor(o: AdmissionGatesOptions = {}) {
    this.o = o;
  }

  /** The gate of `config.limitRuntimeKey`, created or reconfigured (its state kept). */
  gate(config: AdmissionConfig): AdmissionGate {
    let g = this.gates.get(config.limitRuntimeKey);
    if (g === undefined) {
      g = new AdmissionGate(config, this.o.source, this.o.clock, this.o.timers);
      this.gates.set(config.limitRuntimeKey, g);
    } else g.reconfigure(config);
    return g;
  }

  /** Brings the gates in line with the configs in force (one per key; the last of a key wins). */
  sync(configs: Iterable<AdmissionConfig>): void {
    const keep = new Set<string>();
    for (const c of configs) {
      keep.add(c.limitRuntimeKey);
      this.gate(c);
    }
    for (const [k, g] of this.gates) {
      if (keep.has(k)) continue;
      this.gates.delete(k);
      this.retired.add(g);
    }
    for (const g of this.retired) {
      if (g.inflight > 0) continue;
      g.close();
      this.retired.delete(g);
    }
  }

  /** The gates in force. */
  all(): IterableIterator<AdmissionGate> {
    return this.gates.values();
  }

  /** One load report per gate (each starts a new interval). */
  reports(): GateReport[] {
    return [...this.gates.values()].map((g) => g.report());
  }

  close(): void {
    for (const g of this.gates.values()) g.close();
    for (const g of this.retired) g.close();
    this.gates.clear();
    this.retired.clear();
  }
}

/** The gate stats as `/stats` prints them (`admission.<cluster>.<stat>`). */
export function admissionStatLines(gates: Iterable<AdmissionGate>): string[] {
  const out: string[] = [];
  for (const g of gates) {
    const p = `admission.${g.config.cluster}`;
    const c: GateCounters = g.counters;
    const limit = g.limit();
    out.push(
      `${p}.rq_admitted: ${c.admitted}`, `${p}.rq_queued: ${c.queued}`,
      `${p}.rq_rejected_overflow: ${c.rejectedOverflow}`, `${p}.rq_rejected_evicted: ${c.rejectedEvicted}`, `${p}.rq_rejected_timeout: ${c.rejectedTimeout}`,
      `${p}.rq_shadow_rejected: ${c.shadowRejects}`, `${p}.reflex_cuts: ${c.reflexCuts}`,
      `${p}.rq_active: ${g.inflight}`, `${p}.rq_waiting: ${g.waiting}`, `${p}.limit: ${limit === Infinity ? 0 : limit}`,
    );
  }
  return out;
}

/** The same in Prometheus form (`sextant_admission_*{cluster, rule}`). */
export function admissionPrometheus(gates: Iterable<AdmissionGate>): string {
  const list = [...gates];
  if (list.length === 0) return '';
  const rows: [string, 'counter' | 'gauge', string, (g: AdmissionGate) => number, string?][] = [
    ['sextant_admission_requests_admitted_total', 'counter', 'Requests the admission gate admitted.', (g) => g.counters.admitted],
    ['sextant_admission_requests_queued_total', 'counter', 'Requests that waited in the admission queue.', (g) => g.counters.queued],
    ['sextant_admission_requests_rejected_total', 'counter', 'Requests the admission gate refused (503 UO), by reason.', (g) => g.counters.rejectedOverflow, 'overflow'],
    ['sextant_admission_requests_rejected_total', 'counter', '', (g) => g.counters.rejectedEvicted, 'evicted'],
    ['sextant_admission_requests_rejected_total', 'counter', '', (g) => g.counters.rejectedTimeout, 'timeout'],
    ['sextant_admission_shadow_rejects_total', 'counter', 'Requests shadow mode would have refused.', (g) => g.counters.shadowRejects],
    ['sextant_admission_reflex_cuts_total', 'counter', 'Times the local reflex lowered the limit.', (g) => g.counters.reflexCuts],
    ['sextant_admission_requests_active', 'gauge', 'Requests admitted and not done.', (g) => g.inflight],
    ['sextant_admission_requests_waiting', 'gauge', 'Requests waiting in the admission queue.', (g) => g.waiting],
    ['sextant_admission_limit', 'gauge', 'The admitted concurrency in force (0: unlimited).', (g) => { const l = g.limit(); return l === Infinity ? 0 : l; }],
  ];
  const out: string[] = [];
  let last = '';
  for (const [name, type, help, value, reason] of rows) {
    if (name !== last) out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    last = name;
    for (const g of list) {
      const labels = `cluster_name="${g.config.cluster}",rule="${g.config.rule}"${reason !== undefined ? `,reason="${reason}"` : ''}`;
      out.push(`${name}{${labels}} ${value(g)}`);
    }
  }
  return out.join('\n');
}
