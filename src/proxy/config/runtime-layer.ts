// Envoy's layered runtime as this proxy has it: RTDS layers (Runtime resources, one per
// subscribed name, later layers winning) holding flat key → value maps that filters read
// (local rate limit `filter_enabled`/`filter_enforced`, the admission gate's limit). A layer
// sent with an xDS `Resource.ttl` is leased: heartbeats refresh the lease, and when it lapses
// the layer's values are gone (Envoy's TTL semantics), so a dead control plane cannot freeze
// a value. Time is read, not timed: a lapsed lease is noticed by whoever reads next.
import type pino from 'pino';
import type { ProtoJson } from '../../envoy/index.ts';
import type { XdsResource } from '../xds/ads-client.ts';
import { ConfigError } from './fields.ts';

/** The RTDS resource the adaptive-limits controller leases to each proxy. */
export const ADAPTIVE_RUNTIME_LAYER = 'sextant-adaptive';

/** One runtime value, as Envoy's snapshot keeps it: the text, and the number or fraction it parses as. */
export interface RuntimeEntry {
  /** The value as text (`/runtime`'s final_value). */
  raw: string;
  /** The value as a number, when it is one (integers for getInteger). */
  number: number | undefined;
  /** A FractionalPercent value ({numerator, denominator}). */
  fraction: { numerator: number; denominator: number } | undefined;
  bool: boolean | undefined;
}

interface Layer {
  name: string;
  values: ReadonlyMap<string, RuntimeEntry>;
  /** When the lease lapses (clock ms); undefined: not leased. */
  expiresAt: number | undefined;
  version: string;
}

/** A FractionalPercent's denominator by name. */
const DENOMINATORS: Readonly<Record<string, number>> = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 };

export interface RuntimeLayersOptions {
  /** The RTDS layer names, lowest first (each a Runtime resource subscribed by name). */
  names?: readonly string[];
  clock?: () => number;
  logger?: pino.Logger;
}

/** Bounds on what a layer may hold (a control plane bug must not grow the proxy). */
const MAX_KEYS = 10_000;
const MAX_KEY_LENGTH = 1024;

export class RuntimeLayers {
  readonly names: readonly string[];
  private readonly clock: () => number;
  private readonly logger: pino.Logger | undefined;
  private layers = new Map<string, Layer>();
  /** Bumped whenever what get() may answer changes (an update, a lapsed lease): readers may cache by it. */
  private gen = 0;
  /** Leases seen to lapse, for stats. */
  lapsed = 0;
  /** Layer updates applied. */
  updates = 0;

  constructor(o: RuntimeLayersOptions = {}) {
    this.names = o.names ?? [ADAPTIVE_RUNTIME_LAYER];
    this.clock = o.clock ?? Date.now;
    this.logger = o.logger;
  }

  /** The Runtime resource names to subscribe to. */
  interest(): ReadonlySet<string> {
    return new Set(this.names);
  }

  /** A number that changes whenever a value may have changed (an update, or a lease seen to lapse). */
  generation(now: number = this.clock()): number {
    this.expire(now);
    return this.gen;
  }

  /**
   * Takes the complete set of Runtime resources after an update (a missing one is removed).
   * Throws a ConfigError naming the resource and key when one cannot be used; nothing then changes.
   */
  apply(resources: ReadonlyMap<string, XdsResource>): void {
    const now = this.clock();
    this.expire(now);
    const next = new Map<string, Layer>();
    for (const [name, r] of resources) {
      if (!this.names.includes(name)) continue;
      const old = this.layers.get(name);
      if (r.heartbeat === true) {
        // A heartbeat refreshes a live lease; a lapsed one stays lapsed until the body is sent again.
        if (old !== undefined && old.values.size > 0) next.set(name, { ...old, expiresAt: r.ttlMs !== undefined && r.ttlMs > 0 ? now + r.ttlMs : undefined });
        else if (old !== undefined) next.set(name, old);
        continue;
      }
      const body = r.resource;
      if (body['name'] !== undefined && body['name'] !== name) throw new ConfigError(`Runtime ${name}: resource name differs from its name field ${JSON.stringify(body['name'])}`);
      const values = new Map<string, RuntimeEntry>();
      flatten((body['layer'] ?? {}) as ProtoJson, '', values, `Runtime ${name}.layer`);
      const expiresAt = r.ttlMs !== undefined && r.ttlMs > 0 ? now + r.ttlMs : undefined;
      next.set(name, { name, values, expiresAt, version: r.version });
    }
    for (const [name, old] of this.layers) {
      const now2 = next.get(name);
      if (now2 === undefined) this.logger?.info({ layer: name }, 'runtime layer removed');
      else if (old.expiresAt !== undefined && now2.expiresAt === undefined) this.logger?.info({ layer: name }, 'runtime layer no longer leased');
    }
    this.layers = next;
    this.updates++;
    this.gen++;
  }

  /** The value of `key` in the highest layer that has it and whose lease holds. */
  get(key: string, now: number = this.clock()): RuntimeEntry | undefined {
    this.expire(now);
    let found: RuntimeEntry | undefined;
    for (const n of this.names) {
      const e = this.layers.get(n)?.values.get(key);
      if (e !== undefined) found = e;
    }
    return found;
  }

  /** Envoy's getInteger: the key's value as a whole number ≥ 0, or undefined. */
  integer(key: string, now?: number): number | undefined {
    const n = this.get(key, now)?.number;
    return n !== undefined && Number.isFinite(n) && n >= 0 ? Math.floor(n) : undefined;
  }

  /**
   * Envoy's featureEnabled for a RuntimeFractionalPercent: the runtime value (a fraction, or
   * a number read as the default's numerator) or else the default, against `random` in [0, 1).
   */
  featureEnabled(key: string | undefined, numerator: number, denominator: number, random: number = Math.random()): boolean {
    let num = numerator;
    let den = denominator;
    if (key !== undefined && key !== '') {
      const e = this.get(key);
      if (e?.fraction !== undefined) { num = e.fraction.numerator; den = e.fraction.denominator; }
      else if (e?.number !== undefined && e.number >= 0) num = Math.floor(e.number);
    }
    if (num >= den) return true;
    if (num <= 0) return false;
    return Math.floor(random * den) < num;
  }

  /** When the lease of `layer` lapses (clock ms), undefined when unleased or absent. */
  leaseExpiry(layer: string): number | undefined {
    return this.layers.get(layer)?.expiresAt;
  }

  /** Envoy's admin /runtime: the layers, and each key's value per layer and in effect. */
  dump(now: number = this.clock()): { layers: string[]; entries: Record<string, { final_value: string; layer_values: string[] }> } {
    this.expire(now);
    const entries: Record<string, { final_value: string; layer_values: string[] }> = {};
    const keys = new Set<string>();
    for (const l of this.layers.values()) for (const k of l.values.keys()) keys.add(k);
    for (const k of [...keys].sort()) {
      const layerValues = this.names.map((n) => this.layers.get(n)?.values.get(k)?.raw ?? '');
      entries[k] = { final_value: this.get(k, now)?.raw ?? '', layer_values: layerValues };
    }
    return { layers: [...this.names], entries };
  }

  // A leased layer whose TTL passed loses its values (and is reported once).
  private expire(now: number): void {
    for (const [name, l] of this.layers) {
      if (l.expiresAt === undefined || now < l.expiresAt || l.values.size === 0) continue;
      this.layers.set(name, { ...l, values: new Map() });
      this.lapsed++;
      this.gen++;
      this.logger?.warn({ layer: name, version: l.version }, 'runtime layer lease lapsed; its values no longer apply');
    }
  }
}

/**
 * Envoy's ProtoLayer walk: nested structs become dotted keys, except a struct that is a
 * FractionalPercent (it has numerator or denominator, or is empty), which is one value.
 */
function flatten(s: ProtoJson, prefix: string, out: Map<string, RuntimeEntry>, at: string): void {
  for (const [k, v] of Object.entries(s)) {
    const key = prefix === '' ? k : `${prefix}.${k}`;
    if (key.length > MAX_KEY_LENGTH) throw new ConfigError(`${at}: key longer than ${MAX_KEY_LENGTH} characters`);
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as ProtoJson;
      const keys = Object.keys(o);
      if (keys.length === 0 || 'numerator' in o || 'denominator' in o) {
        add(out, key, fractionEntry(o, `${at}.${k}`), at);
        continue;
      }
      flatten(o, key, out, `${at}.${k}`);
      continue;
    }
    if (Array.isArray(v)) throw new ConfigError(`${at}.${k}: a runtime value cannot be a list`);
    add(out, key, scalarEntry(v), at);
  }
}

function add(out: Map<string, RuntimeEntry>, key: string, e: RuntimeEntry, at: string): void {
  if (out.size >= MAX_KEYS && !out.has(key)) throw new ConfigError(`${at}: more than ${MAX_KEYS} keys`);
  out.set(key, e);
}

function scalarEntry(v: unknown): RuntimeEntry {
  if (typeof v === 'boolean') return { raw: String(v), number: undefined, fraction: undefined, bool: v };
  if (typeof v === 'number') return { raw: String(v), number: v, fraction: undefined, bool: undefined };
  const raw = v === null || v === undefined ? '' : String(v);
  const n = raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : undefined;
  const bool = raw === 'true' ? true : raw === 'false' ? false : undefined;
  return { raw, number: n, fraction: undefined, bool };
}

function fractionEntry(o: ProtoJson, at: string): RuntimeEntry {
  const numerator = Number(o['numerator'] ?? 0);
  const denName = String(o['denominator'] ?? 'HUNDRED');
  const denominator = DENOMINATORS[denName];
  if (denominator === undefined) throw new ConfigError(`${at}.denominator: expected HUNDRED, TEN_THOUSAND or MILLION, got ${JSON.stringify(o['denominator'])}`);
  if (!(Number.isInteger(numerator) && numerator >= 0)) throw new ConfigError(`${at}.numerator: expected a whole number ≥ 0, got ${JSON.stringify(o['numerator'])}`);
  return { raw: JSON.stringify({ numerator, denominator: denName }), number: undefined, fraction: { numerator, denominator }, bool: undefined };
}
