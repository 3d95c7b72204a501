// Explicit bounds of the HTTP/1 codec; every one has a default and a reason.

export interface Http1Limits {
  /** Max bytes of a request or response head (start line + headers); Envoy's default is 60 KiB. */
  maxHeaderBytes: number;
  /** Max number of header lines in a head (and in chunked trailers); Envoy's default is 100. */
  maxHeaders: number;
  /** From the first byte of a request head to its end; on expiry 408 and close. 0 disables. */
  headersTimeoutMs: number;
  /**
   * A request body that is still arriving may go this long without a byte (reading paused
   * for backpressure does not count); on expiry 408 (or a reset once a response began) and
   * close, and its upstream exchange is aborted. Envoy's stream_idle_timeout. 0 disables.
   */
  bodyIdleTimeoutMs: number;
  /** A keep-alive connection with no request in flight is closed after this. 0 disables. */
  idleTimeoutMs: number;
  /** Requests served per downstream connection before it is closed; 0 is unlimited. */
  maxRequestsPerConnection: number;
  /** Body bytes queued unread before reading from the socket pauses (backpressure). */
  bodyHighWaterMark: number;
  /**
   * Unread body bytes the server still reads and discards when a response completes
   * before its request body was consumed, to keep the connection; beyond it, it closes.
   */
  maxDrainBytes: number;
}

export const DEFAULT_HTTP1_LIMITS: Readonly<Http1Limits> = Object.freeze({
  maxHeaderBytes: 60 * 1024,
  maxHeaders: 100,
  headersTimeoutMs: 30_000,
  bodyIdleTimeoutMs: 300_000,
  idleTimeoutMs: 3_600_000,
  maxRequestsPerConnection: 0,
  bodyHighWaterMark: 64 * 1024,
  maxDrainBytes: 64 * 1024,
});

/** Full limits from a partial set; rejects nonsense with a message naming the field. */
export function http1Limits(partial: Partial<Http1Limits> = {}): Http1Limits {
  const out: Http1Limits = { ...DEFAULT_HTTP1_LIMITS, ...partial };
  for (const [k, v] of Object.entries(out)) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      throw new RangeError(`http1 limits: ${k} must be a non-negative integer, got ${String(v)}`);
    }
  }
  if (out.maxHeaderBytes < 64) throw new RangeError('http1 limits: maxHeaderBytes must be at least 64');
  if (out.maxHeaders < 1) throw new RangeError('http1 limits: maxHeaders must be at least 1');
  if (out.bodyHighWaterMark < 1) throw new RangeError('http1 limits: bodyHighWaterMark must be at least 1');
  return out;
}
