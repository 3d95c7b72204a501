// The HTTP/2 settings the proxy offers its peers, downstream and upstream. The windows are
// what lets a large stream flow at more than window/RTT without buffering it whole: Node's
// defaults (64 KiB per stream and per connection) stall a 32 MiB message on every RTT.

export interface Http2Settings {
  /** SETTINGS_INITIAL_WINDOW_SIZE: bytes a peer may send on one stream before a WINDOW_UPDATE. */
  streamWindow: number;
  /** The connection-level window (session.setLocalWindowSize). */
  connectionWindow: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS offered to downstream peers. */
  maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE. */
  maxHeaderListSize: number;
  /** nghttp2's memory bound per session, in MB (Node's maxSessionMemory). */
  maxSessionMemoryMb: number;
  /** Body bytes queued unread before a stream stops being read (then its window closes). */
  bodyHighWaterMark: number;
}

/** 1 MiB per stream and 16 MiB per connection (the research brief's measured choice). */
export const DEFAULT_HTTP2_SETTINGS: Readonly<Http2Settings> = Object.freeze({
  streamWindow: 1 << 20,
  connectionWindow: 16 << 20,
  maxConcurrentStreams: 1024,
  maxHeaderListSize: 60 * 1024,
  maxSessionMemoryMb: 64,
  bodyHighWaterMark: 256 * 1024,
});

/** NGHTTP2 error codes the proxy sends or reads on RST_STREAM and GOAWAY. */
export const H2_NO_ERROR = 0;
export const H2_INTERNAL_ERROR = 2;
export const H2_REFUSED_STREAM = 7;
export const H2_CANCEL = 8;
