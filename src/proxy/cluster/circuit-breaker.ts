// Circuit breakers of one cluster (Envoy's DEFAULT priority thresholds): requests and
// retries in flight are counted here; connections and pending requests are limits the
// cluster's connection pool enforces. Overflow becomes a local 503 with flag UO.

export interface CircuitBreakerThresholds {
  maxConnections: number;
  maxPendingRequests: number;
  maxRequests: number;
  maxRetries: number;
}

/** Envoy's defaults when a cluster sets no thresholds. */
export const DEFAULT_THRESHOLDS: CircuitBreakerThresholds = {
  maxConnections: 1024,
  maxPendingRequests: 1024,
  maxRequests: 1024,
  maxRetries: 3,
};

export class CircuitBreaker {
  readonly thresholds: CircuitBreakerThresholds;
  activeRequests = 0;
  activeRetries = 0;
  /** Overflow counters, as Envoy's upstream_rq_pending_overflow / upstream_rq_retry_overflow. */
  requestOverflows = 0;
  retryOverflows = 0;

  constructor(thresholds: CircuitBreakerThresholds) {
    this.thresholds = thresholds;
  }

  /** Takes a request slot; false (and counted) when the cluster is at max_requests. */
  tryAcquireRequest(): boolean {
    if (this.activeRequests >= this.thresholds.maxRequests) {
      this.requestOverflows++;
      return false;
    }
    this.activeRequests++;
    return true;
  }

  releaseRequest(): void {
    this.activeRequests--;
  }

  tryAcquireRetry(): boolean {
    if (this.activeRetries >= this.thresholds.maxRetries) {
      this.retryOverflows++;
      return false;
    }
    this.activeRetries++;
    return true;
  }

  releaseRetry(): void {
    this.activeRetries--;
  }
}
