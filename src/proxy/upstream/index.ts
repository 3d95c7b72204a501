// Upstream connection pools: per-endpoint keep-alive HTTP/1.1 connections for clusters,
// and per-destination pools freed when idle for passthrough traffic.
export type { OpenedSocket, SecureUpstream, UpstreamEndpoint, UpstreamResponse } from './connection.ts';
export { authorityOf, endpointKey, endpointOf } from './connection.ts';
export { UpstreamError } from './errors.ts';
export type { UpstreamFlag } from './errors.ts';
export { UpstreamPool } from './pool.ts';
export type { UpstreamPoolOptions, UpstreamRequestOptions, UpstreamPoolStats } from './pool.ts';
export { PassthroughPools } from './passthrough.ts';
export type { PassthroughPoolsOptions } from './passthrough.ts';
export { ReplayableBody } from './request-body.ts';
export { isLocalAddress } from './source-address.ts';
export { BurstReclaimer, reclaimMemory } from './memory.ts';
export type { BurstReclaimerOptions } from './memory.ts';
