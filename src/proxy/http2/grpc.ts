// gRPC as the proxy sees it on the wire: which requests are gRPC, the status of a response
// (from its headers when trailers-only, else its trailers), deadlines from `grpc-timeout`,
// and how a failure the proxy makes itself is said to a gRPC client (a trailers-only
// response: `:status 200`, `grpc-status`, `grpc-message`, never a bare HTTP error).
import type { RawHeader } from '../http/index.ts';
import { headerValue } from '../http/index.ts';

/** Envoy's Grpc::Common::hasGrpcContentType: `application/grpc`, `application/grpc+proto`, `application/grpc;…`. */
export function isGrpcRequest(headers: readonly RawHeader[]): boolean {
  const ct = headerValue(headers, 'content-type');
  if (ct === undefined || ct.length < 16 || !ct.startsWith('application/grpc')) return false;
  const next = ct.charCodeAt(16);
  return ct.length === 16 || next === 0x2b /* + */ || next === 0x3b /* ; */;
}

/** gRPC status codes by name (retryOn words and fault `grpcStatus` names). */
export const GRPC_STATUS = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5,
  ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9,
  ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
  DATA_LOSS: 15, UNAUTHENTICATED: 16,
} as const;

/**
 * Envoy's Grpc::Utility::httpToGrpcStatus (gRPC's http-grpc-status-mapping): the status a
 * local HTTP answer becomes for a gRPC client. 504 maps to UNAVAILABLE, as in Envoy.
 */
export function httpToGrpcStatus(status: number): number {
  switch (status) {
    case 400: return GRPC_STATUS.INTERNAL;
    case 401: return GRPC_STATUS.UNAUTHENTICATED;
    case 403: return GRPC_STATUS.PERMISSION_DENIED;
    case 404: return GRPC_STATUS.UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return GRPC_STATUS.UNAVAILABLE;
    default: return GRPC_STATUS.UNKNOWN;
  }
}

/** The `grpc-status` of a header or trailer section as a number, or -1 when absent or not a number. */
export function grpcStatusOf(headers: readonly RawHeader[] | null): number {
  if (headers === null) return -1;
  const v = headerValue(headers, 'grpc-status');
  if (v === undefined || v === '' || v.length > 3) return -1;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 ? n : -1;
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/**
 * `grpc-timeout` (1–8 digits and a unit H, M, S, m, u, n) in milliseconds, rounded up so a
 * sub-millisecond deadline is not 0 (no timeout); undefined when absent or malformed.
 */
export function grpcTimeoutMs(headers: readonly RawHeader[]): number | undefined {
  const v = headerValue(headers, 'grpc-timeout');
  if (v === undefined) return undefined;
  const unit = TIMEOUT_UNITS[v.charAt(v.length - 1)];
  const digits = v.slice(0, -1);
  if (unit === undefined || !/^\d{1,8}$/.test(digits)) return undefined;
  return Math.ceil(Number(digits) * unit);
}

// RFC 3986 unreserved and the printable ASCII gRPC leaves as is; everything else %XX (gRPC's
// "Percent-Encoded" grpc-message, which Envoy applies to a local reply's body text).
function percentEncode(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    if (b >= 0x20 && b <= 0x7e && b !== 0x25) out += String.fromCharCode(b);
    else out += '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/**
 * The header section of a trailers-only gRPC answer made by the proxy: `content-type`,
 * `grpc-status` and, when there is text, `grpc-message` (Envoy's sendLocalReply for gRPC).
 */
export function grpcLocalReplyHeaders(grpcStatus: number, message: string | undefined): RawHeader[] {
  const out: RawHeader[] = [
    { name: 'content-type', value: 'application/grpc' },
    { name: 'grpc-status', value: String(grpcStatus) },
  ];
  if (message !== undefined && message !== '') out.push({ name: 'grpc-message', value: percentEncode(message) });
  return out;
}
