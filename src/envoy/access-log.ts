// Envoy's access-log vocabulary shared by the sender (the proxy) and the receiver (the pilot's
// sink): the ALS service, the gRPC access logger's type, and the short response flags as the
// `ResponseFlags` message of `envoy.data.accesslog.v3` spells them.

/** `envoy.service.accesslog.v3.AccessLogService`, the one method Envoy calls. */
export const ACCESS_LOG_SERVICE = 'envoy.service.accesslog.v3.AccessLogService';
export const STREAM_ACCESS_LOGS_METHOD = `/${ACCESS_LOG_SERVICE}/StreamAccessLogs`;
export const STREAM_ACCESS_LOGS_MESSAGE = 'envoy.service.accesslog.v3.StreamAccessLogsMessage';
export const STREAM_ACCESS_LOGS_RESPONSE = 'envoy.service.accesslog.v3.StreamAccessLogsResponse';
export const HTTP_ACCESS_LOG_ENTRY = 'envoy.data.accesslog.v3.HTTPAccessLogEntry';

/** `envoy.access_loggers.http_grpc`: HTTP access logs streamed over ALS. */
export const HTTP_GRPC_ACCESS_LOG_TYPE = 'type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig';
export const HTTP_GRPC_ACCESS_LOG_NAME = 'envoy.access_loggers.http_grpc';
/** The CEL access-log filter Istio's Telemetry `filter.expression` becomes. */
export const CEL_ACCESS_LOG_FILTER_TYPE = 'type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter';
export const CEL_ACCESS_LOG_FILTER_NAME = 'envoy.access_loggers.extension_filters.cel';

/**
 * The bootstrap cluster of the xDS server in Istio's sidecars (`xds-grpc`); the proxy resolves
 * it to the servers it gets xDS from, so an ALS provider can name the control plane itself.
 */
export const XDS_GRPC_CLUSTER = 'xds-grpc';

/** Short response flag → its field in `envoy.data.accesslog.v3.ResponseFlags` (camelCase, as the codec names it). */
export const RESPONSE_FLAG_FIELDS: Readonly<Record<string, string>> = {
  LH: 'failedLocalHealthcheck',
  UH: 'noHealthyUpstream',
  UT: 'upstreamRequestTimeout',
  LR: 'localReset',
  UR: 'upstreamRemoteReset',
  UF: 'upstreamConnectionFailure',
  UC: 'upstreamConnectionTermination',
  UO: 'upstreamOverflow',
  NR: 'noRouteFound',
  DI: 'delayInjected',
  FI: 'faultInjected',
  RL: 'rateLimited',
  RLSE: 'rateLimitServiceError',
  DC: 'downstreamConnectionTermination',
  URX: 'upstreamRetryLimitExceeded',
  SI: 'streamIdleTimeout',
  IH: 'invalidEnvoyRequestHeaders',
  DPE: 'downstreamProtocolError',
  UMSDR: 'upstreamMaxStreamDurationReached',
  RFCF: 'responseFromCacheFilter',
  NFCF: 'noFilterConfigFound',
  DT: 'durationTimeout',
  UPE: 'upstreamProtocolError',
  NC: 'noClusterFound',
  OM: 'overloadManager',
  DF: 'dnsResolutionFailure',
  DR: 'downstreamRemoteReset',
};

/** `UAEX` is a message of its own in ResponseFlags (`unauthorizedDetails`, reason EXTERNAL_SERVICE = 1). */
export const UNAUTHORIZED_FLAG = 'UAEX';

/** The short flags (in Envoy's order) of a decoded ResponseFlags message; '' for none. */
export function shortResponseFlags(flags: Readonly<Record<string, unknown>> | null | undefined): string {
  if (flags === undefined || flags === null) return '';
  const out: string[] = [];
  for (const [short, field] of Object.entries(RESPONSE_FLAG_FIELDS)) if (flags[field] === true) out.push(short);
  if (flags['unauthorizedDetails'] !== undefined && flags['unauthorizedDetails'] !== null) out.push(UNAUTHORIZED_FLAG);
  return out.join(',');
}

/** `envoy.config.core.v3.RequestMethod` values by method name. */
export const REQUEST_METHODS: Readonly<Record<string, number>> = {
  GET: 1, HEAD: 2, POST: 3, PUT: 4, DELETE: 5, CONNECT: 6, OPTIONS: 7, TRACE: 8, PATCH: 9,
};

const METHOD_NAMES: readonly string[] = ['', ...Object.keys(REQUEST_METHODS)];

/** The method name of a RequestMethod value (a number or, from JSON, its name); '' when unspecified. */
export function requestMethodName(v: unknown): string {
  if (typeof v === 'number') return METHOD_NAMES[v] ?? '';
  if (typeof v === 'string') return v === 'METHOD_UNSPECIFIED' ? '' : v;
  return '';
}

/** `HTTPAccessLogEntry.HTTPVersion` by the protocol an access log names. */
export const HTTP_VERSIONS: Readonly<Record<string, number>> = { 'HTTP/1.0': 1, 'HTTP/1.1': 2, 'HTTP/2': 3, 'HTTP/3': 4 };

/**
 * Route names Istio's generators give routes nobody named (`default`, the catch-all vhosts'
 * `allow_any` and `block_all`): they say nothing of a request's operation.
 */
export const ISTIO_GENERATED_ROUTE_NAMES: ReadonlySet<string> = new Set(['default', 'allow_any', 'block_all']);
