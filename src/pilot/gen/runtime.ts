// RTDS for a sidecar: the `sextant-adaptive` runtime layer, which carries the adaptive-limits
// controller's per-instance concurrency limits under Envoy's own circuit-breaker keys
// (`circuit_breakers.inbound|PORT||.default.max_requests`), so a real Envoy obeys them too.
// The layer is leased: it goes out with an xDS TTL, and lapses when the pilot stops refreshing it.
import type { ProtoJson } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import { clusterName } from './names.ts';

/** The one Runtime resource a sidecar subscribes to for adaptive limits. */
export const ADAPTIVE_RUNTIME_NAME = 'sextant-adaptive';

/** The runtime key of an inbound port's admitted concurrency (Envoy's circuit-breaker override). */
export function limitRuntimeKey(inboundPort: number): string {
  return `circuit_breakers.${clusterName('inbound', inboundPort, '', '')}.default.max_requests`;
}

/** One instance's limit on one inbound port, as the controller decided it. */
export interface InstanceLimit {
  /** The inbound port (the workload's target port): the key's `inbound|PORT||`. */
  port: number;
  /** Admitted concurrency; the controller never publishes one below the rule's floor. */
  limit: number;
  /** `namespace/name` of the rule. */
  rule: string;
  /** The lease (xDS TTL) the value is pushed with. */
  leaseMs: number;
  /**
   * When the controller's last tick stops vouching for it (ms since epoch): a controller that
   * stops ticking while the pilot lives must not keep its limits alive through heartbeats.
   */
  expiresAt?: number;
}

/** What the controller publishes: limits by instance address. Replaced whole, never changed in place. */
export interface LimitTable {
  readonly byAddress: ReadonlyMap<string, readonly InstanceLimit[]>;
}

export const NO_LIMITS: LimitTable = Object.freeze({ byAddress: new Map<string, readonly InstanceLimit[]>() });

/** A Runtime resource and how long it holds without a refresh (undefined: for good). */
export interface RuntimeLayer {
  resource: ProtoJson;
  ttlMs: number | undefined;
}

/**
 * The `sextant-adaptive` layer for a proxy at `now`: a key per inbound port with a limit at one
 * of its addresses (unexpired), leased for the shortest lease among them. With no limit it is an empty layer
 * without TTL: nothing to lapse, and a proxy waiting for the layer is answered at once.
 */
export function adaptiveRuntime(table: LimitTable, proxy: Proxy, now: number): RuntimeLayer {
  const layer: Record<string, number> = {};
  let ttlMs: number | undefined;
  for (const address of proxy.ipAddresses) {
    for (const l of table.byAddress.get(address) ?? []) {
      const key = limitRuntimeKey(l.port);
      if (layer[key] !== undefined || (l.expiresAt !== undefined && l.expiresAt <= now)) continue; // the first address's value wins, as endpoints are listed
      layer[key] = l.limit;
      ttlMs = ttlMs === undefined ? l.leaseMs : Math.min(ttlMs, l.leaseMs);
    }
  }
  const sorted: Record<string, number> = {};
  for (const k of Object.keys(layer).sort()) sorted[k] = layer[k]!;
  return { resource: { name: ADAPTIVE_RUNTIME_NAME, layer: sorted }, ttlMs };
}
