// The telemetry room: the access-log entry and its origin, the operation of a request, and the
// LogStore behind the access-log sink, the HTTP API and the CLI (node:sqlite or PostgreSQL).
export type {
  AccessLogEntry,
  CodeCounts,
  Graph,
  GraphEdge,
  GraphNode,
  LogPage,
  LogQuery,
  LogStore,
  LogStoreStats,
  OperationRow,
  OperationsQuery,
  Origin,
  PeerRow,
  PeersQuery,
  Reporter,
  RetentionPolicy,
  TimeWindow,
} from './types.ts';
export { CLIENT_FLAGS, NEUTRAL_FLAGS, PROXY_FLAGS, codeClassOf, originOf } from './origin.ts';
export {
  ANY_SEGMENT,
  DEFAULT_OPERATION_BUDGET,
  ID_SEGMENT,
  OTHER_OPERATION,
  OperationNamer,
  OperationTemplateError,
  REST_SEGMENTS,
  compileOperationTemplate,
  isIdentifierSegment,
} from './operations.ts';
export type { OperationNamerOptions, OperationRequest, OperationTemplate } from './operations.ts';
export { LogStoreSpecError, DEFAULT_SQLITE_FILE, defaultLogStoreSpec, openLogStore } from './open-store.ts';
export type { OpenLogStoreOptions } from './open-store.ts';
export { SqliteLogStore, openSqliteLogStore } from './sqlite-store.ts';
export { SqliteThreadLogStore } from './sqlite-thread-store.ts';
export type { SqliteLogStoreOptions } from './sqlite-store.ts';
export { PostgresLogStore, openPostgresLogStore } from './postgres-store.ts';
export type { PostgresLogStoreOptions } from './postgres-store.ts';
export { DEFAULT_RETENTION, LogQueryError, MAX_LOG_LIMIT, MAX_PEER_ROWS } from './query.ts';
export { LATENCY_BUCKETS_MS, quantileOf } from './rollup.ts';
