// The proxy's HTTP/1.0 and 1.1 codec: byte-exact heads (name case, order, duplicates),
// strict framing on requests, tolerant but safe framing on responses.
export type { RawHeader, RequestHead, ResponseHead, HttpVersion } from './headers.ts';
export {
  headerValues,
  headerValue,
  hasHeader,
  headerTokens,
  setHeader,
  withoutHeader,
  contentLengthOf,
  assertSendable,
  isToken,
  isFieldValue,
  reasonPhrase,
  STATUS_REASONS,
} from './headers.ts';
export type { Http1Limits } from './limits.ts';
export { DEFAULT_HTTP1_LIMITS, http1Limits } from './limits.ts';
export { BodyStream, emptyBody } from './body.ts';
export type { AbortSignalLike } from './abort.ts';
export { RequestAbort } from './abort.ts';
export { HttpParseError } from './parser.ts';
export type { DownstreamRequest, RespondOptions } from './server.ts';
export { serveHttp1, ServerConnection, DownstreamClosedError } from './server.ts';
