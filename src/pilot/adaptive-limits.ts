// The pilot's side of adaptive limits (M22), wired together: the LRS server on the xDS port
// (load reports in), the adaptive-limits controller (src/controllers/adaptive, started on the
// elected leader by the caller), and the `sextant-adaptive` RTDS layer it publishes to (limits
// out, leased). Reports and limits pass through an exchange (./adaptive-exchange.ts): in process
// for one pilot, through etcd when several pilots share one, so every proxy reports into the
// leader's controller and gets its limit whichever pilot it is connected to. The controller
// reads the serving snapshot's rules and instances through `adaptiveTargets`; nothing here
// rebuilds a snapshot.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Resource } from '../api/resource.ts';
import type { ConfigStore } from '../config/index.ts';
import { AdaptiveController } from '../controllers/adaptive/index.ts';
import type { AdaptiveRuleInput } from '../controllers/adaptive/index.ts';
import { adaptiveTargets } from './gen/adaptive.ts';
import { ADAPTIVE_RUNTIME_NAME, adaptiveRuntime } from './gen/runtime.ts';
import { InProcessExchange, type AdaptiveExchange } from './adaptive-exchange.ts';
import type { Generators, Proxy } from './model.ts';
import { SextantPushContext } from './push/context.ts';
import type { DiscoveryServer } from './xds/index.ts';
import { LoadReportingServer } from './xds/lrs.ts';

export interface AdaptiveLimitsOptions {
  server: DiscoveryServer;
  generators: Generators;
  logger: Logger;
  registry: Registry;
  /** The ADS server's rule for who may speak for a node (closed control plane). */
  authorize?: (call: ServerDuplexStream<unknown, unknown>, proxy: Proxy) => void;
  store: () => ConfigStore | undefined;
  /** The latest stored state of a resource by `Kind/namespace/name` (status included). */
  resource: (key: string) => Resource | undefined;
  /** Status writes per rule at most this often (default 5 s). */
  statusEveryMs?: number;
}

export interface AdaptiveLimits {
  lrs: LoadReportingServer;
  controller: AdaptiveController;
  /** Replaces the exchange (the in-process one until the store is known to be etcd); the old one is closed. */
  useExchange(next: AdaptiveExchange): void;
  readonly exchange: AdaptiveExchange;
  /** `/debug/limits`: the controller's view and the exchange's. */
  debug(): ReturnType<AdaptiveController['debug']> & { exchange: Record<string, unknown> };
  close(): Promise<void>;
}

export function startAdaptiveLimits(o: AdaptiveLimitsOptions): AdaptiveLimits {
  const lrs = new LoadReportingServer({
    proxyFromNode: (node) => o.generators.proxyFromNode(node),
    ...(o.authorize !== undefined ? { authorize: o.authorize } : {}),
    logger: o.logger,
  });
  let exchange: AdaptiveExchange = new InProcessExchange();
  let unsubscribeExchange = (): void => undefined;
  const controller = new AdaptiveController({
    logger: o.logger,
    registry: o.registry,
    ...(o.statusEveryMs !== undefined ? { statusEveryMs: o.statusEveryMs } : {}),
    rules(): AdaptiveRuleInput[] {
      const push = o.server.pushContext;
      // Test pilots may bring generators of their own; adaptive limits need the built-in snapshot.
      if (!(push instanceof SextantPushContext)) return [];
      return adaptiveTargets(push).map((t) => ({ ...t, status: o.resource(t.key)?.status }));
    },
    publish(byAddress, moved) {
      exchange.publish(byAddress, moved);
    },
    store: o.store,
  });
  const connect = (next: AdaptiveExchange): void => {
    unsubscribeExchange();
    exchange = next;
    const offReport = next.onReport((r) => controller.observe(r.addresses, r.receivedAt, r.clusters));
    const offChange = next.onChange(() => o.server.runtime.changed());
    unsubscribeExchange = () => {
      offReport();
      offChange();
    };
  };
  connect(exchange);
  o.server.runtime.setSource((proxy) => new Map([[ADAPTIVE_RUNTIME_NAME, adaptiveRuntime(exchange.table(), proxy, Date.now())]]));
  const unsubscribe = lrs.onReport((r) => exchange.report({ addresses: r.proxy.ipAddresses, receivedAt: r.receivedAt, clusters: r.clusters }));
  return {
    lrs,
    controller,
    get exchange() {
      return exchange;
    },
    useExchange(next) {
      const old = exchange;
      connect(next);
      void old.close();
      o.server.runtime.changed();
    },
    debug() {
      return { ...controller.debug(), exchange: exchange.status() };
    },
    async close() {
      unsubscribe();
      controller.stop();
      lrs.close();
      unsubscribeExchange();
      await exchange.close();
    },
  };
}
