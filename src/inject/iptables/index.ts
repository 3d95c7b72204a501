// `sextant iptables`: the init step that captures a workload's declared traffic for its
// sidecar (rules.ts builds them, apply.ts writes and removes them), and the address contract
// the proxy reads captured connections by (capture-addresses.ts).
export {
  DEFAULT_OPTIONS, IptablesOptionError, buildRules, checkOptions, parsePortList, parseRangeList, restoreText,
  CHAIN_PREFIX, INBOUND_ROUTE,
} from './rules.ts';
export type { IptablesOptions, RuleSet } from './rules.ts';
export {
  DEFAULT_TOOLS, IptablesApplyError, applyRules, cleanPreview, cleanRules, isApplied, normalizeSave, parseSave, planClean, spawnRunner,
} from './apply.ts';
export type { CommandResult, CommandRunner, IptablesTools } from './apply.ts';
export {
  DEFAULT_DNS_CAPTURE_PORT, DEFAULT_INBOUND_CAPTURE_PORT, DEFAULT_OUTBOUND_CAPTURE_PORT, DEFAULT_PROXY_UID,
  INBOUND_CAPTURE_NET, OUTBOUND_CAPTURE_NET, PRESERVE_SOURCE_RANGES_ENV, SOURCE_MAP_NET,
  captureAddress, capturedDestination, mappedSource, parseCidr, sourceMap,
} from './capture-addresses.ts';
export type { CapturedDestination, Cidr, SourceMapEntry } from './capture-addresses.ts';
