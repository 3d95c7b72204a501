// Load balancing over a cluster's hosts with Envoy's semantics: priority levels loaded by
// health × overprovisioning factor, panic mode below the healthy panic threshold, then one
// policy within the chosen level (round robin, least request, random, ring hash).
import type { Host } from './host.ts';

export type LbPolicy = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM' | 'RING_HASH' | 'MAGLEV';

/** What a request offers the balancer: a hash for ring hash, hosts to avoid (retries). */
export interface LbContext {
  hash?: number | undefined;
  /** Hosts tried already (retry host predicate previous_hosts). */
  exclude?: ReadonlySet<Host> | undefined;
  /** Attempts at picking a host outside `exclude` (host_selection_retry_max_attempts). */
  excludeAttempts?: number | undefined;
  /**
   * Priority levels tried already (retry priority previous_priorities): the load is computed
   * over the other levels, unless none of them has a healthy host.
   */
  excludePriorities?: ReadonlySet<number> | undefined;
}

export interface BalancerOptions {
  policy: LbPolicy;
  /** Envoy's default 1.4 (140 in percent). */
  overprovisioningFactor: number;
  /** Percent; 0 disables panic mode. Envoy's default 50. */
  healthyPanicThreshold: number;
  /** Ring hash sizes (Envoy: 1024 .. 8M). */
  minimumRingSize: number;
  maximumRingSize: number;
  /** Least request: how many random hosts are compared. */
  choiceCount: number;
  /**
   * common_lb_config.locality_weighted_lb_config: within a level, a locality is chosen first by
   * its EDS weight × its health, then a host within it (Istio's localityLbSetting.distribute).
   */
  localityWeighted?: boolean;
}

export const DEFAULT_BALANCER_OPTIONS: BalancerOptions = {
  policy: 'ROUND_ROBIN',
  overprovisioningFactor: 1.4,
  healthyPanicThreshold: 50,
  minimumRingSize: 1024,
  maximumRingSize: 8 * 1024 * 1024,
  choiceCount: 2,
};

interface PriorityLevel {
  /** The hosts' priority (EDS `priority`): levels are the non-empty ones, in order. */
  priority: number;
  hosts: Host[];
  /** Hosts not excluded (EDS DRAINING hosts are): the base of the panic threshold and the panic pool. */
  eligible: Host[];
  healthy: Host[];
  /** Hosts the policy chooses among: healthy ones, or all eligible ones in panic mode. */
  pool: Host[];
  rr: number;
  /** Smooth weighted round robin state (only when weights differ). */
  current: Map<Host, number> | undefined;
  weighted: boolean;
  ring: { hashes: Uint32Array; hosts: Host[] } | undefined;
  /** Locality-weighted: the level's localities with a share (cumulative effective weights). */
  localities: { level: PriorityLevel; upTo: number }[] | undefined;
}

/** A balancer over one host set; rebuilt lazily when hosts or their health change. */
export class Balancer {
  private readonly opts: BalancerOptions;
  private hosts: Host[] = [];
  private levels: PriorityLevel[] = [];
  /** Cumulative per-priority load in percent. */
  private loads: number[] = [];
  private dirty = true;
  /** Health of each level (percent, scaled by the overprovisioning factor, capped at 100). */
  private health: number[] = [];
  /** The overprovisioning factor of the current assignment (EDS policy), else the cluster's. */
  private factor: number;

  constructor(opts: BalancerOptions) {
    this.opts = opts;
    this.factor = opts.overprovisioningFactor;
  }

  /**
   * The ClusterLoadAssignment's overprovisioning factor (a ratio: Envoy's percent / 100);
   * undefined restores the cluster's.
   */
  setOverprovisioningFactor(factor: number | undefined): void {
    const f = factor ?? this.opts.overprovisioningFactor;
    if (f !== this.factor) {
      this.factor = f;
      this.dirty = true;
    }
  }

  setHosts(hosts: Host[]): void {
    this.hosts = hosts;
    this.dirty = true;
  }

  /** Call when any host's health or ejection changed. */
  invalidate(): void {
    this.dirty = true;
  }

  get allHosts(): readonly Host[] {
    return this.hosts;
  }

  /** Per-priority load in percent, as Envoy computes it (for tests and /clusters). */
  priorityLoads(): number[] {
    this.rebuild();
    return this.loads.map((c, i) => c - (i > 0 ? this.loads[i - 1]! : 0));
  }

  pick(ctx: LbContext = {}): Host | undefined {
    this.rebuild();
    if (this.levels.length === 0) return undefined;
    const skip = ctx.excludePriorities;
    const index = skip !== undefined && skip.size > 0 && this.levels.length > 1 ? this.choosePriorityExcluding(skip, ctx.hash) : this.choosePriority(ctx.hash);
    let level = this.levels[index]!;
    if (level.localities !== undefined) level = pickLocality(level.localities);
    if (level.pool.length === 0) return undefined;
    const exclude = ctx.exclude;
    let attempts = exclude && exclude.size > 0 ? Math.max(1, ctx.excludeAttempts ?? 1) : 0;
    let host = this.pickIn(level, ctx.hash);
    while (host && exclude?.has(host) && attempts-- > 0) {
      host = this.pickIn(level, ctx.hash === undefined ? undefined : (ctx.hash + attempts * 0x9e3779b1) >>> 0);
    }
    return host;
  }

  /**
   * The level's localities by effective weight, Envoy's: the locality's EDS weight × its health
   * (healthy share × overprovisioning factor, capped at 1). Undefined when no locality has a
   * weight (or one locality holds every host): the level is balanced as a whole.
   */
  private localityShares(l: PriorityLevel): { level: PriorityLevel; upTo: number }[] | undefined {
    const by = new Map<string, Host[]>();
    for (const h of l.hosts) {
      const list = by.get(h.locality);
      if (list) list.push(h);
      else by.set(h.locality, [h]);
    }
    if (by.size < 2 || !l.hosts.some((h) => h.localityWeight > 0)) return undefined;
    const out: { level: PriorityLevel; upTo: number }[] = [];
    let upTo = 0;
    for (const hosts of by.values()) {
      const sub = newLevel(l.priority, hosts);
      if (sub.eligible.length === 0 || sub.healthy.length === 0) continue;
      const health = Math.min(1, (this.factor * sub.healthy.length) / sub.eligible.length);
      const w = hosts[0]!.localityWeight * health;
      if (w <= 0) continue;
      sub.pool = sub.healthy;
      sub.weighted = sub.pool.some((h) => h.weight !== sub.pool[0]!.weight);
      upTo += w;
      out.push({ level: sub, upTo });
    }
    return out.length > 0 ? out : undefined;
  }

  private choosePriority(hash: number | undefined): number {
    if (this.levels.length === 1) return 0;
    const r = hash === undefined ? Math.random() * 100 : (hash % 100);
    for (let i = 0; i < this.loads.length; i++) if (r < this.loads[i]!) return i;
    return 0;
  }

  /**
   * Envoy's previous_priorities retry priority: the levels tried already count as having no
   * healthy host and the priority load is computed again over the others; when none of the
   * others has any, the ordinary load applies.
   */
  private choosePriorityExcluding(skip: ReadonlySet<number>, hash: number | undefined): number {
    const health = this.levels.map((l, i) => (skip.has(l.priority) ? 0 : this.health[i]!));
    if (!health.some((h) => h > 0)) return this.choosePriority(hash);
    const loads = cumulativeLoads(health);
    const r = hash === undefined ? Math.random() * 100 : (hash % 100);
    for (let i = 0; i < loads.length; i++) if (r < loads[i]!) return i;
    return health.findIndex((h) => h > 0);
  }

  private pickIn(level: PriorityLevel, hash: number | undefined): Host | undefined {
    const pool = level.pool;
    if (pool.length === 1) return pool[0];
    switch (this.opts.policy) {
      case 'RANDOM':
        return pool[Math.floor(Math.random() * pool.length)];
      case 'LEAST_REQUEST': {
        let best: Host | undefined;
        for (let i = 0; i < this.opts.choiceCount; i++) {
          const h = pool[Math.floor(Math.random() * pool.length)]!;
          if (!best || h.active / h.weight < best.active / best.weight) best = h;
        }
        return best;
      }
      case 'RING_HASH':
      case 'MAGLEV': {
        if (hash === undefined) return pool[Math.floor(Math.random() * pool.length)];
        level.ring ??= buildRing(pool, this.opts.minimumRingSize, this.opts.maximumRingSize);
        return ringLookup(level.ring, hash);
      }
      default:
        return level.weighted ? smoothWeighted(level) : pool[level.rr++ % pool.length];
    }
  }

  private rebuild(): void {
    if (!this.dirty) return;
    this.dirty = false;
    const byPriority: Host[][] = [];
    for (const h of this.hosts) (byPriority[h.priority] ??= []).push(h);
    const levels: PriorityLevel[] = [];
    byPriority.forEach((hosts, p) => { if (hosts && hosts.length > 0) levels.push(newLevel(p, hosts)); });
    // Health of each level in percent, scaled by the overprovisioning factor, capped at 100.
    const health = levels.map((l) => (l.eligible.length === 0 ? 0 : Math.min(100, Math.floor((this.factor * 100 * l.healthy.length) / l.eligible.length))));
    this.health = health;
    const total = Math.min(100, health.reduce((a, b) => a + b, 0));
    this.loads = cumulativeLoads(health);
    for (const l of levels) {
      const healthyPct = l.eligible.length === 0 ? 0 : (100 * l.healthy.length) / l.eligible.length;
      // As Envoy: no level panics while the levels together are fully available (normalized
      // total health 100), however few healthy hosts one level has.
      const panic = total < 100 && this.opts.healthyPanicThreshold > 0 && healthyPct < this.opts.healthyPanicThreshold;
      l.pool = panic ? l.eligible : l.healthy;
      l.weighted = l.pool.some((h) => h.weight !== l.pool[0]!.weight);
      // in panic every host of the level takes traffic, whatever its locality (as Envoy)
      l.localities = this.opts.localityWeighted === true && !panic ? this.localityShares(l) : undefined;
    }
    this.levels = levels;
  }
}

/** One locality of a level, chosen by its cumulative share (locality-weighted balancing). */
function pickLocality(localities: readonly { level: PriorityLevel; upTo: number }[]): PriorityLevel {
  const r = Math.random() * localities[localities.length - 1]!.upTo;
  for (const l of localities) if (r < l.upTo) return l.level;
  return localities[localities.length - 1]!.level;
}

/** Per-level load in percent from per-level health (Envoy's priority load), as cumulative bounds. */
function cumulativeLoads(health: readonly number[]): number[] {
  const total = Math.min(100, health.reduce((a, b) => a + b, 0));
  const loads: number[] = [];
  if (total === 0) {
    health.forEach((_, i) => loads.push(i === 0 ? 100 : 0));
  } else {
    let remaining = 100;
    for (const h of health) {
      const load = Math.min(remaining, Math.floor((h * 100) / total));
      loads.push(load);
      remaining -= load;
    }
    // Rounding leftovers go to the first level with any health, as Envoy does.
    const first = health.findIndex((h) => h > 0);
    if (remaining > 0 && first >= 0) loads[first]! += remaining;
  }
  let cum = 0;
  return loads.map((l) => (cum += l));
}

function newLevel(priority: number, hosts: Host[]): PriorityLevel {
  const eligible = hosts.filter((h) => !h.edsDraining);
  return { priority, hosts, eligible, healthy: eligible.filter((h) => h.healthy), pool: [], rr: Math.floor(Math.random() * hosts.length), current: undefined, weighted: false, ring: undefined, localities: undefined };
}

function smoothWeighted(level: PriorityLevel): Host | undefined {
  const cur = (level.current ??= new Map());
  let total = 0;
  let best: Host | undefined;
  let bestVal = -Infinity;
  for (const h of level.pool) {
    const v = (cur.get(h) ?? 0) + h.weight;
    cur.set(h, v);
    total += h.weight;
    if (v > bestVal) { bestVal = v; best = h; }
  }
  if (best) cur.set(best, bestVal - total);
  return best;
}

/** 32-bit FNV-1a with a murmur3 finalizer: cheap, well mixed, stable across processes. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function buildRing(hosts: Host[], minSize: number, maxSize: number): { hashes: Uint32Array; hosts: Host[] } {
  const totalWeight = hosts.reduce((a, h) => a + h.weight, 0);
  const size = Math.min(maxSize, Math.max(minSize, hosts.length));
  const entries: { hash: number; host: Host }[] = [];
  for (const h of hosts) {
    const replicas = Math.max(1, Math.round((size * h.weight) / totalWeight));
    for (let i = 0; i < replicas; i++) entries.push({ hash: hashString(`${h.key}_${i}`), host: h });
  }
  entries.sort((a, b) => a.hash - b.hash);
  return { hashes: Uint32Array.from(entries.map((e) => e.hash)), hosts: entries.map((e) => e.host) };
}

function ringLookup(ring: { hashes: Uint32Array; hosts: Host[] }, hash: number): Host | undefined {
  let lo = 0;
  let hi = ring.hashes.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ring.hashes[mid]! < hash) lo = mid + 1;
    else hi = mid;
  }
  return ring.hosts[lo === ring.hashes.length ? 0 : lo];
}
