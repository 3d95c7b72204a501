// The pilot's side of adaptive limits (M22), wired together: the LRS server on the xDS port
// (load reports in), the adaptive-limits controller (src/controllers/adaptive, started on the
// elected leader by the caller), and the `sextant-adaptive` RTDS layer it publishes to (limits
// out, leased). The controller reads the serving snapshot's rules and instances through
// `adaptiveTargets`; nothing here rebuilds a snapshot.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Resource } from '../api/resource.ts';
import type { ConfigStore } from '../config/index.ts';
import { AdaptiveController } from '../controllers/adaptive/index.ts';
import type { AdaptiveRuleInput } from '../controllers/adaptive/index.ts';
import { adaptiveTargets } from './gen/adaptive.ts';
import { ADAPTIVE_RUNTIME_NAME, NO_LIMITS, adaptiveRuntime, type LimitTable } from './gen/runtime.ts';
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
  close(): void;
}

export function startAdaptiveLimits(o: AdaptiveLimitsOptions): AdaptiveLimits {
  const lrs = new LoadReportingServer({
    proxyFromNode: (node) => o.generators.proxyFromNode(node),
    ...(o.authorize !== undefined ? { authorize: o.authorize } : {}),
    logger: o.logger,
  });
  let table: LimitTable = NO_LIMITS;
  o.server.runtime.setSource((proxy) => new Map([[ADAPTIVE_RUNTIME_NAME, adaptiveRuntime(table, proxy, Date.now())]]));
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
      table = { byAddress };
      if (moved) o.server.runtime.changed();
    },
    store: o.store,
  });
  const unsubscribe = lrs.onReport((r) => controller.observe(r.proxy.ipAddresses, r.receivedAt, r.clusters));
  return {
    lrs,
    controller,
    close() {
      unsubscribe();
      controller.stop();
      lrs.close();
    },
  };
}
