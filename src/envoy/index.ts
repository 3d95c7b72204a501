// Envoy's v3 API as the pilot and the proxy share it: protos, type URLs, codecs.
export { envoyRoot, PROTO_INCLUDE_DIRS, PROTO_FILES } from './protos.ts';
export * from './types.ts';
export { encodeMessage, decodeMessage, toAny, messageType } from './codec.ts';
export type { ProtoJson } from './codec.ts';
export { formatDuration, parseDuration, protoJsonName } from './json.ts';
export { checkResource, checkEncoded, checkDecoded, ruleType, formatRuleViolation, type RuleReport, type RuleViolation } from './validate-rules.ts';
