// State a proxy's Proxy-Wasm VMs share: the key-value store and the queues (per VM id, as
// Envoy shares them among the VMs of one vm_id) and the metrics plugins define. All bounded.

export interface SharedLimits {
  /** Keys per VM id. */
  maxKeys: number;
  /** Bytes of keys and values per VM id. */
  maxBytes: number;
  /** Queues per VM id and items per queue. */
  maxQueues: number;
  maxQueueItems: number;
  /** Metrics defined by all plugins of the proxy. */
  maxMetrics: number;
}

export const DEFAULT_SHARED_LIMITS: SharedLimits = Object.freeze({ maxKeys: 10_000, maxBytes: 16 * 1024 * 1024, maxQueues: 256, maxQueueItems: 10_000, maxMetrics: 1000 });

interface Entry {
  value: Uint8Array;
  cas: number;
}

/** The key-value store of one VM id: compare-and-swap values, bounded in keys and bytes. */
export class SharedData {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  private casSeq = 0;
  private readonly limits: SharedLimits;

  constructor(limits: SharedLimits) {
    this.limits = limits;
  }

  get(key: string): Entry | undefined {
    return this.entries.get(key);
  }

  /** 'ok', 'cas_mismatch', or 'full' (the store's bounds would be exceeded). */
  set(key: string, value: Uint8Array, cas: number): 'ok' | 'cas_mismatch' | 'full' {
    const old = this.entries.get(key);
    if (cas !== 0 && (old === undefined || old.cas !== cas)) return 'cas_mismatch';
    const keyBytes = Buffer.byteLength(key);
    const delta = value.length - (old === undefined ? -keyBytes : old.value.length);
    if (old === undefined && this.entries.size >= this.limits.maxKeys) return 'full';
    if (this.bytes + delta > this.limits.maxBytes) return 'full';
    this.bytes += delta;
    // cas values are never 0 (0 means "no check")
    this.casSeq = this.casSeq >= 0xfffffffe ? 1 : this.casSeq + 1;
    this.entries.set(key, { value: value.slice(), cas: this.casSeq });
    return 'ok';
  }

  get size(): number {
    return this.entries.size;
  }
}

interface Queue {
  id: number;
  vmId: string;
  name: string;
  items: Uint8Array[];
  /** Who to tell when an item is enqueued (the registering plugin's root context). */
  onReady: ((id: number) => void) | undefined;
}

/** Shared queues, by VM id and name; ids are proxy-wide. */
export class SharedQueues {
  private readonly byId = new Map<number, Queue>();
  private readonly byName = new Map<string, Queue>();
  private nextId = 1;
  private readonly limits: SharedLimits;

  constructor(limits: SharedLimits) {
    this.limits = limits;
  }

  /** Registers (or re-opens) a queue; undefined when the VM id has too many. */
  register(vmId: string, name: string, onReady: (id: number) => void): number | undefined {
    const key = `${vmId}\u0000${name}`;
    let q = this.byName.get(key);
    if (q === undefined) {
      let count = 0;
      for (const other of this.byId.values()) if (other.vmId === vmId) count++;
      if (count >= this.limits.maxQueues) return undefined;
      q = { id: this.nextId++, vmId, name, items: [], onReady: undefined };
      this.byName.set(key, q);
      this.byId.set(q.id, q);
    }
    q.onReady = onReady;
    return q.id;
  }

  resolve(vmId: string, name: string): number | undefined {
    return this.byName.get(`${vmId}\u0000${name}`)?.id;
  }

  /** 'ok', 'not_found', or 'full'. */
  enqueue(id: number, value: Uint8Array): 'ok' | 'not_found' | 'full' {
    const q = this.byId.get(id);
    if (q === undefined) return 'not_found';
    if (q.items.length >= this.limits.maxQueueItems) return 'full';
    q.items.push(value.slice());
    const ready = q.onReady;
    if (ready !== undefined) setImmediate(() => ready(id));
    return 'ok';
  }

  /** The next item, 'empty', or 'not_found'. */
  dequeue(id: number): Uint8Array | 'empty' | 'not_found' {
    const q = this.byId.get(id);
    if (q === undefined) return 'not_found';
    return q.items.shift() ?? 'empty';
  }

  /** Forgets the ready callbacks of a plugin going away (its queues and items stay). */
  detach(onReady: (id: number) => void): void {
    for (const q of this.byId.values()) if (q.onReady === onReady) q.onReady = undefined;
  }
}

export type MetricKind = 'counter' | 'gauge' | 'histogram';

/** Histogram bucket bounds (Envoy's default buckets). */
const BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

interface Metric {
  id: number;
  name: string;
  kind: MetricKind;
  value: bigint;
  /** Histograms: per-bucket counts, sum and count. */
  buckets?: number[];
  sum?: number;
  count?: number;
}

/** Metrics plugins define (proxy_define_metric), proxy-wide by name, exposed to Prometheus. */
export class WasmMetrics {
  private readonly byName = new Map<string, Metric>();
  private readonly byId = new Map<number, Metric>();
  private nextId = 1;
  private readonly limits: SharedLimits;

  constructor(limits: SharedLimits) {
    this.limits = limits;
  }

  /** The metric's id (the same for the same name and kind); undefined for a kind clash or too many. */
  define(kind: MetricKind, name: string): number | undefined {
    const m = this.byName.get(name);
    if (m !== undefined) return m.kind === kind ? m.id : undefined;
    if (this.byName.size >= this.limits.maxMetrics) return undefined;
    const metric: Metric = { id: this.nextId++, name, kind, value: 0n };
    if (kind === 'histogram') {
      metric.buckets = BUCKETS.map(() => 0);
      metric.sum = 0;
      metric.count = 0;
    }
    this.byName.set(name, metric);
    this.byId.set(metric.id, metric);
    return metric.id;
  }

  /** 'ok', 'not_found', or 'bad_argument' (a counter going down, a histogram incremented). */
  increment(id: number, delta: bigint): 'ok' | 'not_found' | 'bad_argument' {
    const m = this.byId.get(id);
    if (m === undefined) return 'not_found';
    if (m.kind === 'histogram' || (m.kind === 'counter' && delta < 0n)) return 'bad_argument';
    m.value = m.kind === 'counter' ? BigInt.asUintN(64, m.value + delta) : BigInt.asIntN(64, m.value + delta);
    return 'ok';
  }

  /** Sets a counter or gauge; records an observation of a histogram. */
  record(id: number, value: bigint): 'ok' | 'not_found' {
    const m = this.byId.get(id);
    if (m === undefined) return 'not_found';
    if (m.kind === 'histogram') {
      const v = Number(value);
      m.count! += 1;
      m.sum! += v;
      for (let i = 0; i < BUCKETS.length; i++) if (v <= BUCKETS[i]!) m.buckets![i]! += 1;
    } else {
      m.value = value;
    }
    return 'ok';
  }

  get(id: number): bigint | 'not_found' | 'bad_argument' {
    const m = this.byId.get(id);
    if (m === undefined) return 'not_found';
    if (m.kind === 'histogram') return 'bad_argument';
    return m.value;
  }

  /** A metric's value by name (counters and gauges), for tests and admin. */
  valueOf(name: string): bigint | undefined {
    const m = this.byName.get(name);
    return m === undefined || m.kind === 'histogram' ? undefined : m.value;
  }

  /** Prometheus text: Envoy exposes plugin metrics as they are named, sanitized. */
  exposition(): string {
    const lines: string[] = [];
    for (const m of this.byName.values()) {
      const name = promName(m.name);
      if (m.kind === 'histogram') {
        lines.push(`# TYPE ${name} histogram`);
        for (let i = 0; i < BUCKETS.length; i++) lines.push(`${name}_bucket{le="${BUCKETS[i]}"} ${m.buckets![i]}`);
        lines.push(`${name}_bucket{le="+Inf"} ${m.count}`, `${name}_sum ${m.sum}`, `${name}_count ${m.count}`);
      } else {
        lines.push(`# TYPE ${name} ${m.kind}`, `${name} ${m.value}`);
      }
    }
    return lines.join('\n');
  }
}

function promName(name: string): string {
  const s = name.replace(/[^a-zA-Z0-9_:]/g, '_');
  return /^[0-9]/.test(s) ? `_${s}` : s;
}
