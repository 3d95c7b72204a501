// The Proxy-Wasm ABI's numbers (v0.2.1, which v0.2.0 modules also speak): statuses, actions,
// buffer, map, stream and metric types, log levels, WASI errno values.

export const Status = {
  OK: 0,
  NOT_FOUND: 1,
  BAD_ARGUMENT: 2,
  SERIALIZATION_FAILURE: 3,
  PARSE_FAILURE: 4,
  INVALID_MEMORY_ACCESS: 6,
  EMPTY: 7,
  CAS_MISMATCH: 8,
  INTERNAL_FAILURE: 10,
  UNIMPLEMENTED: 12,
} as const;

/** What a stream callback returns: CONTINUE (0), anything else pauses (StopIteration, StopIterationAndBuffer, …). */
export const ACTION_CONTINUE = 0;

export const BufferType = {
  HTTP_REQUEST_BODY: 0,
  HTTP_RESPONSE_BODY: 1,
  DOWNSTREAM_DATA: 2,
  UPSTREAM_DATA: 3,
  HTTP_CALL_RESPONSE_BODY: 4,
  GRPC_CALL_MESSAGE: 5,
  VM_CONFIGURATION: 6,
  PLUGIN_CONFIGURATION: 7,
  FOREIGN_FUNCTION_ARGUMENTS: 8,
} as const;

export const MapType = {
  HTTP_REQUEST_HEADERS: 0,
  HTTP_REQUEST_TRAILERS: 1,
  HTTP_RESPONSE_HEADERS: 2,
  HTTP_RESPONSE_TRAILERS: 3,
  GRPC_CALL_INITIAL_METADATA: 4,
  GRPC_CALL_TRAILING_METADATA: 5,
  HTTP_CALL_RESPONSE_HEADERS: 6,
  HTTP_CALL_RESPONSE_TRAILERS: 7,
} as const;

export const StreamType = {
  HTTP_REQUEST: 0,
  HTTP_RESPONSE: 1,
  DOWNSTREAM: 2,
  UPSTREAM: 3,
} as const;

export const MetricType = {
  COUNTER: 0,
  GAUGE: 1,
  HISTOGRAM: 2,
} as const;

export const LogLevel = {
  TRACE: 0,
  DEBUG: 1,
  INFO: 2,
  WARN: 3,
  ERROR: 4,
  CRITICAL: 5,
} as const;

export const Errno = {
  SUCCESS: 0,
  BADF: 8,
  FAULT: 21,
  INVAL: 28,
  NOTSUP: 58,
} as const;

/** The ABI versions a module may declare (by exporting `proxy_abi_version_X_Y_Z`) and this host runs. */
export const SUPPORTED_ABI_VERSIONS: readonly string[] = ['0_2_1', '0_2_0'];
