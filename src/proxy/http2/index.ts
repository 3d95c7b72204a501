// HTTP/2 on both sides of the proxy, on Node's http2 core API: h2c downstream (the same
// DownstreamRequest the HTTP/1 codec gives the router), pooled upstream sessions, the
// HTTP/1.1 ↔ HTTP/2 header translation, and gRPC's view of requests and statuses.
export { serveHttp2, Http2ServerConnection } from './server.ts';
export type { Http2ServeOptions } from './server.ts';
export { Http2Pool } from './pool.ts';
export type { Http2PoolOptions, Http2PoolStats, Http2RequestOptions } from './pool.ts';
export { DEFAULT_HTTP2_SETTINGS } from './settings.ts';
export type { Http2Settings } from './settings.ts';
export { h2RequestHeaders, h2ResponseHeaders, requestHeadFromH2, responseHeadFromH2 } from './headers.ts';
export { GRPC_STATUS, grpcLocalReplyHeaders, grpcStatusOf, grpcTimeoutMs, httpToGrpcStatus, isGrpcRequest } from './grpc.ts';
