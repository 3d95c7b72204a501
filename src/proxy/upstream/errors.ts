// Why an upstream exchange failed, in Envoy's response-flag vocabulary, with what the
// router needs to decide on a retry.

/**
 * Envoy response flags an upstream failure maps to:
 * UF connect failure or timeout; UC connection terminated (EOF) before the response
 * completed; UR connection reset; UT response timeout; UO pool overflow (pending queue
 * full); UPE upstream protocol error (malformed response); LR local reset (caller abort).
 */
export type UpstreamFlag = 'UF' | 'UC' | 'UR' | 'UT' | 'UO' | 'UPE' | 'LR';

export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
  readonly flag: UpstreamFlag;
  /** Safe to retry on another connection or host as far as the transport knows. */
  readonly retriable: boolean;
  /** Some request byte was written to a connection (the app may have seen the request). */
  readonly requestSent: boolean;
  /** Some response byte had arrived (the response head may have been handed out). */
  readonly responseStarted: boolean;
  /** The socket error code behind it (ECONNREFUSED, ECONNRESET, …) when there is one. */
  readonly code: string | undefined;
  /** The connection had carried an earlier request (a stale keep-alive candidate). */
  readonly reusedConnection: boolean;

  constructor(
    flag: UpstreamFlag,
    message: string,
    opts: { retriable?: boolean; requestSent?: boolean; responseStarted?: boolean; code?: string | undefined; reusedConnection?: boolean } = {},
  ) {
    super(message);
    this.flag = flag;
    this.requestSent = opts.requestSent ?? false;
    this.responseStarted = opts.responseStarted ?? false;
    this.retriable = opts.retriable ?? !this.responseStarted;
    this.code = opts.code;
    this.reusedConnection = opts.reusedConnection ?? false;
  }
}
