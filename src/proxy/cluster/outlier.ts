// Outlier detection with Envoy's semantics: consecutive 5xx and consecutive gateway
// failures eject a host for base_ejection_time × times ejected (capped), never more than
// max_ejection_percent of the cluster except that at least one host may always be ejected;
// hosts return at the first interval tick after their ejection time has passed.
import type { Host } from './host.ts';

export interface OutlierConfig {
  consecutive5xx: number;
  consecutiveGatewayFailure: number;
  /** Percent chance an ejection by each detector is enforced (Envoy: 100 and 0). */
  enforcingConsecutive5xx: number;
  enforcingConsecutiveGatewayFailure: number;
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionTimeMs: number;
  maxEjectionPercent: number;
  /**
   * Sextant's priority failover (cluster metadata `sextant.io` `ejectWholePriority`):
   * maxEjectionPercent holds per priority level, and a level may be ejected whole while another
   * level still has a healthy host, so a dead data centre (or lane) stops taking first tries.
   */
  ejectWholePriority?: boolean;
}

/** What happened to one request on one host, as the detector classifies it. */
export type OutlierResult = 'success' | 'error5xx' | 'gateway' | 'localOriginFailure';

export class OutlierDetector {
  readonly config: OutlierConfig;
  private readonly hosts: () => readonly Host[];
  private readonly onChange: () => void;
  private timer: NodeJS.Timeout | undefined;
  ejectionsTotal = 0;

  constructor(config: OutlierConfig, hosts: () => readonly Host[], onChange: () => void) {
    this.config = config;
    this.hosts = hosts;
    this.onChange = onChange;
    this.timer = setInterval(() => this.tick(), Math.max(10, config.intervalMs));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Records a response status (or a local failure) for a host. */
  report(host: Host, result: OutlierResult): void {
    if (result === 'success') {
      host.consecutive5xx = 0;
      host.consecutiveGatewayFailure = 0;
      return;
    }
    // Without split_external_local_origin_errors, local failures count as 5xx and gateway errors.
    host.consecutive5xx++;
    if (result === 'gateway' || result === 'localOriginFailure') host.consecutiveGatewayFailure++;
    else host.consecutiveGatewayFailure = 0;
    if (host.ejected) return;
    const c = this.config;
    if (c.consecutiveGatewayFailure > 0 && host.consecutiveGatewayFailure >= c.consecutiveGatewayFailure && chance(c.enforcingConsecutiveGatewayFailure)) {
      this.eject(host);
    } else if (c.consecutive5xx > 0 && host.consecutive5xx >= c.consecutive5xx && chance(c.enforcingConsecutive5xx)) {
      this.eject(host);
    }
  }

  private eject(host: Host): void {
    const all = this.hosts();
    if (this.config.ejectWholePriority === true) {
      if (!this.mayEjectInLevel(host, all)) return;
    } else {
      const ejected = all.filter((h) => h.ejected).length;
      if (ejected > 0 && ((ejected + 1) * 100) / all.length > this.config.maxEjectionPercent) return;
    }
    host.ejectionCount++;
    const time = Math.min(this.config.baseEjectionTimeMs * host.ejectionCount, Math.max(this.config.maxEjectionTimeMs, this.config.baseEjectionTimeMs));
    host.ejectedUntil = Date.now() + time;
    host.consecutive5xx = 0;
    host.consecutiveGatewayFailure = 0;
    this.ejectionsTotal++;
    this.onChange();
  }

  /** The cap within the host's priority level, lifted while another level has a healthy host. */
  private mayEjectInLevel(host: Host, all: readonly Host[]): boolean {
    let size = 0;
    let ejected = 0;
    let healthyElsewhere = false;
    for (const h of all) {
      if (h.priority === host.priority) {
        size++;
        if (h.ejected) ejected++;
      } else if (h.healthy && !h.edsDraining) healthyElsewhere = true;
    }
    return healthyElsewhere || ejected === 0 || ((ejected + 1) * 100) / size <= this.config.maxEjectionPercent;
  }

  /** Interval tick: return hosts whose time is up; decay the ejection multiplier of healthy ones. */
  tick(now = Date.now()): void {
    let changed = false;
    for (const h of this.hosts()) {
      if (h.ejectedUntil > 0) {
        if (now >= h.ejectedUntil) {
          h.ejectedUntil = 0;
          changed = true;
        }
      } else if (h.ejectionCount > 0) {
        h.ejectionCount--;
      }
    }
    if (changed) this.onChange();
  }
}

function chance(percent: number): boolean {
  return percent >= 100 || (percent > 0 && Math.random() * 100 < percent);
}
