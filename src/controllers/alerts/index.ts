// The alerts controller's door: the Prometheus rule file of the mesh (`sextant alerts rules`),
// generated from windows and thresholds, with the durations it reads and writes.
export {
  ALERT_NAMES, APP_FLAGS_REGEX, AlertRuleOptionError, CLIENT_FLAGS_REGEX, DEFAULT_ALERT_RULE_OPTIONS, RULE_GROUP,
  alertRuleOptions, alertRules, alertRulesYaml,
} from './rules.ts';
export type { AlertRuleOptions, AlertingRule, RuleFile } from './rules.ts';
export { DurationError, formatPromDuration, parsePromDuration } from './duration.ts';
