// The pilot's xDS serving: ADS (state of the world and delta), client status, and the cache.
export { DiscoveryServer, isWildcardType } from './ads.ts';
export type { DiscoveryServerOptions } from './ads.ts';
export { ADS_SERVICE, CSDS_SERVICE } from './wire.ts';
export { csdsHandlers, clientStatus } from './csds.ts';
export { proxyStatus, syncState } from './status.ts';
export type { ProxySyncStatus, TypeStatus, SyncState } from './status.ts';
export { ResourceCache } from './cache.ts';
