// The local rate limit room: Envoy's `envoy.filters.http.local_ratelimit`, compiled from
// listener config (compileLocalRateLimit) and route config (compileRouteLimits: per-route
// configs and rate_limits actions), run per request by LocalRateLimits.check against the
// proxy's token buckets, whose balances survive config updates (token-bucket.ts).
export { compileLocalRateLimit, descriptorKey, LOCAL_RATELIMIT_FILTER, LOCAL_RATELIMIT_TYPE } from './config.ts';
export type { DescriptorLimit, LocalRateLimitConfig, RuntimePercent } from './config.ts';
export { compileRouteLimits, routeLimits } from './route-limits.ts';
export type { RouteLimits } from './route-limits.ts';
export { LocalRateLimits, localRateLimitPrometheus, localRateLimitStatLines } from './local-ratelimit.ts';
export type { LocalRateLimitCounters, LocalRateLimitFilter, LocalRateLimitsOptions, RateLimitFacts, RateLimitVerdict } from './local-ratelimit.ts';
export { maskAddress } from './actions.ts';
export type { DescriptorFacts } from './actions.ts';
export { BucketTable, TokenBucket } from './token-bucket.ts';
export type { BucketParams } from './token-bucket.ts';
