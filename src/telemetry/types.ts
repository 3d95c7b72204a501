// The telemetry room's shared vocabulary: one access-log entry as the pilot's sink stores it,
// the origin of a response, and the LogStore every backend (node:sqlite, PostgreSQL) implements.
// Producers (the ALS sink) and readers (the HTTP API, the dashboard, the CLI) see only this.

/**
 * Who made the response: `app` (the application answered), `proxy` (a sidecar or gateway
 * answered or failed on its own: NR, UH, UF, UO, URX, UC, UT, RL, FI, …) or `client` (the
 * downstream went away: DC, …). One rule (`originOf` in ./origin.ts) decides it everywhere.
 */
export type Origin = 'app' | 'proxy' | 'client';

/** Which side of a call reported it, as Istio's `reporter` label. */
export type Reporter = 'source' | 'destination' | 'gateway';

/** One request as a proxy reported it over ALS, after the sink resolved names and origin. */
export interface AccessLogEntry {
  /** Request start, ms since the epoch. */
  time: number;
  durationMs: number;
  reporter: Reporter;
  /** The reporting proxy's node id (`sidecar~IP~POD.NS~NS.svc.cluster.local`). */
  node: string;
  sourceIp: string;
  /** Workload name and namespace of the caller, '' when unknown (a caller outside the mesh). */
  sourceWorkload: string;
  sourceNamespace: string;
  /** The caller's SPIFFE principal when mTLS told it, else ''. */
  sourcePrincipal: string;
  /** The upstream host that served (IP:port), '' when none was reached. */
  destinationIp: string;
  destinationWorkload: string;
  destinationNamespace: string;
  /** The destination service host (`reviews.default.svc.cluster.local`), '' when unknown. */
  destinationService: string;
  destinationPort: number;
  method: string;
  /** The path without the query. */
  path: string;
  /** The request operation (route name, template or learned template; `__other__` past the budget). */
  operation: string;
  authority: string;
  protocol: string;
  responseCode: number;
  /** Envoy's short response flags (`NR`, `UF,URX`, … or '' for none). */
  responseFlags: string;
  origin: Origin;
  bytesReceived: number;
  bytesSent: number;
  requestId: string;
  upstreamCluster: string;
  routeName: string;
}

/** A time window, ms since the epoch, `from` inclusive, `to` exclusive. */
export interface TimeWindow {
  from: number;
  to: number;
}

export interface LogQuery extends TimeWindow {
  service?: string;
  operation?: string;
  path?: string;
  sourceIp?: string;
  /** Only responses of this class: '2xx' | '4xx' | '5xx'. */
  codeClass?: '2xx' | '3xx' | '4xx' | '5xx';
  origin?: Origin;
  /** Only entries of this reporter (both sidecars of a call may report it). */
  reporter?: Reporter;
  /** At most this many (bounded by the store, default 100, at most 1,000). */
  limit?: number;
  /** The `next` of the previous page. */
  cursor?: string;
}

export interface LogPage {
  entries: AccessLogEntry[];
  /** Present when more entries match. */
  next?: string;
}

export interface PeersQuery extends TimeWindow {
  /** Exactly one of path or operation. */
  path?: string;
  operation?: string;
  service?: string;
  /** At most this many rows, the busiest first (default and most 1,000). */
  limit?: number;
}

/** One distinct (source, destination) pair that called a path or operation in the window. */
export interface PeerRow {
  sourceIp: string;
  sourceWorkload: string;
  sourceNamespace: string;
  destinationIp: string;
  destinationWorkload: string;
  destinationService: string;
  count: number;
  firstSeen: number;
  lastSeen: number;
}

export interface OperationsQuery extends TimeWindow {
  service?: string;
  sort?: 'requests' | 'errors' | 'p99' | 'name';
  limit?: number;
}

/** Counts of responses by class and origin. */
export interface CodeCounts {
  total: number;
  '2xx': number;
  '3xx': number;
  '4xx': number;
  '5xx': number;
  /** 4xx and 5xx split by who made them. */
  byOrigin: Record<Origin, { '4xx': number; '5xx': number }>;
}

export interface OperationRow {
  service: string;
  operation: string;
  counts: CodeCounts;
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

export interface GraphNode {
  /** `workload:NS/NAME`, `service:HOST` or `unknown:IP` for callers outside the mesh. */
  id: string;
  kind: 'workload' | 'service' | 'unknown';
  name: string;
  namespace: string;
}

export interface GraphEdge {
  source: string;
  target: string;
  counts: CodeCounts;
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

export interface Graph {
  window: TimeWindow;
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** Set when the window held more edges than a graph answer carries (the busiest are kept). */
  truncated?: boolean;
}

/** What a store holds, for /debug, metrics and retention tests. */
export interface LogStoreStats {
  rows: number;
  rollupRows: number;
  oldest: number | undefined;
  newest: number | undefined;
  /** On-disk size in bytes where the backend knows it. */
  bytes: number | undefined;
}

export interface RetentionPolicy {
  /** Entries older than this are removed (default 7 days). Rollups keep their own age (default 30 days). */
  maxAgeMs: number;
  /** At most this many entries are kept (default 1,000,000); the oldest go first. */
  maxRows: number;
  rollupMaxAgeMs: number;
  /**
   * Minute rollups (windows exact to the minute) are kept this long (default 1 day); older
   * windows are answered from hour rollups, kept for rollupMaxAgeMs.
   */
  minuteRollupMaxAgeMs?: number;
  /** At most this many rows per rollup table (minutes, hours) are kept (default 2,000,000); the oldest go first. */
  rollupMaxRows?: number;
}

/**
 * The access-log store. One conformance suite runs against every backend. Writes are batched
 * by the caller (the sink); queries are bounded and answer from indexes and per-minute rollups.
 */
export interface LogStore {
  readonly kind: 'sqlite' | 'postgres';
  insert(entries: readonly AccessLogEntry[]): Promise<void>;
  logs(q: LogQuery): Promise<LogPage>;
  peers(q: PeersQuery): Promise<PeerRow[]>;
  operations(q: OperationsQuery): Promise<OperationRow[]>;
  graph(w: TimeWindow): Promise<Graph>;
  /** Applies the retention policy now; returns the entries removed. */
  enforceRetention(now?: number): Promise<number>;
  stats(): Promise<LogStoreStats>;
  close(): Promise<void>;
}
