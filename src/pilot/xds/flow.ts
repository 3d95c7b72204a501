// HTTP/2 receive windows of the xDS port. A state-of-the-world proxy holding a full mesh ACKs
// every EDS push with a request naming all its clusters (about 470 KB for 10,000): with the
// protocol's default 64 KiB windows each such request waits for several WINDOW_UPDATEs, each
// sent only when the pilot's event loop has read what came before, and on a connection shared
// by several streams one large request holds up every other stream's. istiod's gRPC server
// grows its windows as it measures the connection (BDP estimation); grpc-js (1.14) has no
// server option for windows at all, so they are set here on each session it accepts.
import type { Server } from '@grpc/grpc-js';
import type { Http2Server, ServerHttp2Session } from 'node:http2';

/** What one stream, and one connection (all its streams), may send ahead of the pilot reading it. */
export interface ReceiveWindows {
  streamBytes: number;
  connectionBytes: number;
}

/** Room for a few full-mesh ACKs in flight per connection; grpc-js reads every stream as data arrives. */
export const XDS_RECEIVE_WINDOWS: ReceiveWindows = { streamBytes: 4 * 1024 * 1024, connectionBytes: 16 * 1024 * 1024 };

/** The HTTP/2 protocol's largest window. */
const MAX_WINDOW = 2 ** 31 - 1;

/** Widens one session's receive windows (a closed or closing session is left alone). */
export function widenSession(session: ServerHttp2Session, windows: ReceiveWindows): void {
  if (session.destroyed || session.closed) return;
  session.setLocalWindowSize(Math.min(windows.connectionBytes, MAX_WINDOW));
  session.settings({ initialWindowSize: Math.min(windows.streamBytes, MAX_WINDOW) });
}

/**
 * Widens the receive windows of every session `server` accepts from now on, and of those it
 * holds. grpc-js keeps its HTTP/2 servers and sessions in private maps (`http2Servers`,
 * `sessions`; @grpc/grpc-js 1.14): found by shape, so with a grpc-js that keeps them otherwise
 * nothing changes but the windows (false is returned). Call it after the server is bound.
 */
export function widenReceiveWindows(server: Server, windows: ReceiveWindows = XDS_RECEIVE_WINDOWS): boolean {
  const internals = server as unknown as { http2Servers?: unknown; sessions?: unknown };
  if (!(internals.http2Servers instanceof Map) || internals.http2Servers.size === 0) return false;
  const servers = [...(internals.http2Servers as Map<unknown, unknown>).keys()] as Http2Server[];
  if (!servers.every((s) => typeof (s as { on?: unknown }).on === 'function')) return false;
  for (const s of servers) s.on('session', (session: ServerHttp2Session) => widenSession(session, windows));
  if (internals.sessions instanceof Map) for (const session of (internals.sessions as Map<ServerHttp2Session, unknown>).keys()) widenSession(session, windows);
  return true;
}
