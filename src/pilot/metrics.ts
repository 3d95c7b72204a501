// The pilot's Prometheus metrics, under istiod's names so existing dashboards and alerts work.
// Each pilot owns its registry (several pilots can run in one process, as tests do).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ConfigStoreStatus } from '../config/index.ts';

/** Istio's short type label (`cds`, `eds`, `lds`, `rds`) for a type URL. */
export function typeLabel(typeUrl: string): string {
  if (typeUrl.endsWith('.Cluster')) return 'cds';
  if (typeUrl.endsWith('.ClusterLoadAssignment')) return 'eds';
  if (typeUrl.endsWith('.Listener')) return 'lds';
  if (typeUrl.endsWith('.RouteConfiguration')) return 'rds';
  return 'other'; // keeps the label set bounded whatever clients ask for
}

const SECONDS_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 3, 5, 10, 20, 30];

export class PilotMetrics {
  readonly registry = new Registry();
  readonly xdsConnections: Gauge;
  readonly xdsPushes: Counter;
  readonly convergenceTime: Histogram;
  readonly pushTime: Histogram;
  readonly xdsRejects: Counter;
  readonly debounceTime: Histogram;
  readonly services: Gauge;
  readonly virtualServices: Gauge;
  readonly pushTriggers: Counter;
  /** Sextant's own: whether the config store follows its source (read from the store at each scrape). */
  readonly configStoreHealthy: Gauge;
  readonly configStoreHeldDeletions: Gauge;
  readonly configStoreErrors: Gauge;
  private configStatus: () => ConfigStoreStatus | undefined = () => undefined;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.xdsConnections = new Gauge({ name: 'pilot_xds', help: 'Number of endpoints connected to this pilot using XDS.', labelNames: ['version'], registers });
    this.xdsPushes = new Counter({ name: 'pilot_xds_pushes', help: 'Pilot build and send errors for lds, rds, cds and eds.', labelNames: ['type'], registers });
    this.convergenceTime = new Histogram({
      name: 'pilot_proxy_convergence_time',
      help: 'Delay in seconds between config change and a proxy receiving all required configuration (its ACK).',
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.pushTime = new Histogram({ name: 'pilot_xds_push_time', help: 'Total time in seconds Pilot takes to push lds, rds, cds and eds.', labelNames: ['type'], buckets: SECONDS_BUCKETS, registers });
    this.xdsRejects = new Counter({ name: 'pilot_total_xds_rejects', help: 'Total number of XDS responses from pilot rejected by proxy.', labelNames: ['type'], registers });
    this.debounceTime = new Histogram({ name: 'pilot_debounce_time', help: 'Delay in seconds between the first config enters debouncing and the merged push request is pushed into the push queue.', buckets: SECONDS_BUCKETS, registers });
    this.services = new Gauge({ name: 'pilot_services', help: 'Total services known to pilot.', registers });
    this.virtualServices = new Gauge({ name: 'pilot_virt_services', help: 'Total virtual services known to pilot.', registers });
    this.pushTriggers = new Counter({ name: 'pilot_push_triggers', help: 'Total number of times a push was triggered, labeled by reason for the push.', labelNames: ['type'], registers });
    const status = (): ConfigStoreStatus | undefined => this.configStatus();
    this.configStoreHealthy = new Gauge({
      name: 'sextant_config_store_healthy',
      help: '1 while the config store follows its source; 0 while it serves its last good state instead (config directory missing, walk limit reached, mass deletion held).',
      registers,
      collect() {
        const s = status();
        if (s !== undefined) this.set(s.healthy ? 1 : 0);
      },
    });
    this.configStoreHeldDeletions = new Gauge({
      name: 'sextant_config_store_held_deletions',
      help: 'Resources a held mass deletion would remove; it applies when an operator confirms it.',
      registers,
      collect() {
        const s = status();
        if (s !== undefined) this.set(s.heldChange?.deletions ?? 0);
      },
    });
    this.configStoreErrors = new Gauge({
      name: 'sextant_config_store_errors',
      help: 'Config the store holds but does not serve: invalid files or values, duplicate definitions.',
      registers,
      collect() {
        const s = status();
        if (s !== undefined) this.set(s.errors);
      },
    });
    if (options.defaultMetrics === true) collectDefaultMetrics({ register: this.registry });
  }

  /** Where the config store gauges read from (the pilot's store, once open). */
  observeConfigStore(status: () => ConfigStoreStatus | undefined): void {
    this.configStatus = status;
  }
}
