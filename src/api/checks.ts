// Istio's value checks as small pure functions: durations, DNS names and wildcards, IPs and
// CIDRs, ports, label selectors, header names, RE2-compatible regexes, and the few limits of
// Envoy's that Istio does not check. Each returns an error message (what is expected) or
// undefined when the value is valid.
import { isIP } from 'node:net';

// ---------------------------------------------------------------- durations

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000,
};
const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/** Parses a Go/proto duration ("1.5s", "100ms", "1h30m") to milliseconds; undefined if malformed. */
export function parseDurationMs(s: string): number | undefined {
  let i = 0;
  let sign = 1;
  if (s[0] === '-' || s[0] === '+') {
    sign = s[0] === '-' ? -1 : 1;
    i = 1;
  }
  if (i === s.length) return undefined;
  if (s.slice(i) === '0') return 0;
  let total = 0;
  DURATION_PART.lastIndex = i;
  while (i < s.length) {
    DURATION_PART.lastIndex = i;
    const m = DURATION_PART.exec(s);
    if (m === null) return undefined;
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    i = DURATION_PART.lastIndex;
  }
  return sign * total;
}

/** The CRDs' rule for most durations: duration(self) >= duration('1ms'). */
export function checkDurationAtLeast1ms(s: string): string | undefined {
  const ms = parseDurationMs(s);
  if (ms === undefined) return `Invalid value: ${JSON.stringify(s)}: must be a duration such as "100ms", "1s" or "1m30s"`;
  if (ms < 1) return `Invalid value: ${JSON.stringify(s)}: must be a valid duration greater than 1ms`;
  return undefined;
}

/** A duration that may be zero but not negative or malformed. */
export function checkDurationNonNegative(s: string): string | undefined {
  const ms = parseDurationMs(s);
  if (ms === undefined) return `Invalid value: ${JSON.stringify(s)}: must be a duration such as "100ms", "1s" or "1m30s"`;
  if (ms < 0) return `Invalid value: ${JSON.stringify(s)}: duration must not be negative`;
  return undefined;
}

// ---------------------------------------------------------------- DNS names and hosts

const DNS1123_LABEL = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/;
// Istio matches host labels case-insensitively (its host names are lower-cased for matching),
// but its DNS-1123 check is on the raw text: keep lower case only, like Istio.
const WILDCARD_PREFIX = /^(?:\*|(?:\*|\*-)?[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)$/;

export function isDNS1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}

/** Kubernetes DNS-1123 subdomain (object names). */
const DNS1123_SUBDOMAIN = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;

export function isDNS1123Subdomain(s: string): boolean {
  if (s.length === 0 || s.length > 253 || !DNS1123_SUBDOMAIN.test(s)) return false;
  if (s.length <= 63) return true;
  for (const label of s.split('.')) if (label.length > 63) return false;
  return true;
}

function checkDNS1123Labels(domain: string): string | undefined {
  const parts = domain.split('.');
  const tld = parts[parts.length - 1]!;
  if (/^[+-]?\d+$/.test(tld)) return `domain name ${JSON.stringify(domain)} invalid (top level domain ${JSON.stringify(tld)} cannot be all-numeric)`;
  for (let i = 0; i < parts.length; i++) {
    const label = parts[i]!;
    // A trailing dot (absolute name) is allowed.
    if (i === parts.length - 1 && label === '' && i > 0) continue;
    if (!isDNS1123Label(label)) return `domain name ${JSON.stringify(domain)} invalid (label ${JSON.stringify(label)} invalid)`;
  }
  return undefined;
}

function checkDomainPreconditions(domain: string): string | undefined {
  if (domain.length === 0) return 'empty domain name not allowed';
  if (domain.length > 255) return `domain name ${JSON.stringify(domain)} too long (max 255)`;
  return undefined;
}

/** Istio's ValidateWildcardDomain: a DNS name whose first label may be "*" or start with "*". */
export function checkWildcardDomain(domain: string): string | undefined {
  const pre = checkDomainPreconditions(domain);
  if (pre !== undefined) return pre;
  const dot = domain.indexOf('.');
  const first = dot < 0 ? domain : domain.slice(0, dot);
  if (first.length > 63 || !WILDCARD_PREFIX.test(first)) {
    return `domain name ${JSON.stringify(domain)} invalid (label ${JSON.stringify(first)} invalid)`;
  }
  if (dot >= 0) return checkDNS1123Labels(domain.slice(dot + 1));
  return undefined;
}

/** Istio's ValidateFQDN: a DNS name of valid labels, no wildcard. */
export function checkFQDN(domain: string): string | undefined {
  const pre = checkDomainPreconditions(domain);
  if (pre !== undefined) return pre;
  return checkDNS1123Labels(domain);
}

// ---------------------------------------------------------------- addresses

export function isIPAddress(s: string): boolean {
  return isIP(s) !== 0;
}

/** An IP address or a CIDR block (v4 or v6). */
export function checkIPOrCIDR(s: string): string | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return isIP(s) !== 0 ? undefined : `${s} is not a valid IP`;
  const ip = s.slice(0, slash);
  const bits = s.slice(slash + 1);
  const family = isIP(ip);
  if (family === 0 || !/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128)) {
    return `${s} is not a valid CIDR block`;
  }
  return undefined;
}

/** Istio's ValidateUnixAddress, for the part after "unix://". */
export function checkUnixAddress(addr: string): string | undefined {
  if (addr.length === 0) return 'unix address must not be empty';
  if (addr.startsWith('@')) return undefined; // abstract socket
  if (!addr.startsWith('/') || addr.endsWith('/')) return `${addr} is not an absolute path to a file`;
  return undefined;
}

// ---------------------------------------------------------------- ports and protocols

export function checkPort(n: number): string | undefined {
  return n > 0 && n <= 65535 ? undefined : `port number ${n} must be in the range 1..65535`;
}

export const PORT_NAME = /^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$/;

/** Protocols Istio recognises on ports (protocol.Parse), upper-cased. */
export const PROTOCOLS: ReadonlySet<string> = new Set([
  'TCP', 'UDP', 'GRPC', 'GRPC-WEB', 'HTTP', 'HTTP_PROXY', 'HTTP2', 'HTTPS', 'TLS', 'MONGO', 'REDIS', 'MYSQL', 'HBONE', 'THRIFT',
]);

export function checkProtocol(p: string): string | undefined {
  return PROTOCOLS.has(p.toUpperCase()) ? undefined
    : `unsupported protocol: ${p}: expected one of ${[...PROTOCOLS].join(', ')}`;
}

// ---------------------------------------------------------------- labels

const QUALIFIED_NAME = /^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;

/** Kubernetes' limits on names: a qualified name's name part and a label value; a DNS subdomain. */
export const QUALIFIED_NAME_MAX = 63;
export const LABEL_VALUE_MAX = 63;
export const DNS1123_SUBDOMAIN_MAX = 253;
/** Kubernetes' TotalAnnotationSizeLimitB: keys and values of one object's annotations together. */
export const ANNOTATIONS_MAX_BYTES = 256 * 1024;

/**
 * A Kubernetes qualified name, the form of label and annotation keys: [prefix/]name, the
 * prefix a DNS subdomain of up to 253 characters, the name up to 63 characters.
 */
export function checkLabelKey(key: string): string | undefined {
  const slash = key.indexOf('/');
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (slash >= 0) {
    const prefix = key.slice(0, slash);
    if (prefix.length > DNS1123_SUBDOMAIN_MAX) return `label key ${JSON.stringify(key)}: prefix part must be no more than ${DNS1123_SUBDOMAIN_MAX} characters`;
    if (!isDNS1123Subdomain(prefix)) return `label key ${JSON.stringify(key)}: prefix must be a DNS-1123 subdomain`;
  }
  if (name.length > QUALIFIED_NAME_MAX) return `label key ${JSON.stringify(key)} is invalid: name part must be no more than ${QUALIFIED_NAME_MAX} characters`;
  if (name.length === 0 || !QUALIFIED_NAME.test(name)) {
    return `label key ${JSON.stringify(key)} is invalid: a name of up to 63 characters: alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric`;
  }
  return undefined;
}

export function checkLabelValue(value: string): string | undefined {
  if (value === '') return undefined;
  if (value.length > LABEL_VALUE_MAX) return `label value ${JSON.stringify(value)} is invalid: must be no more than ${LABEL_VALUE_MAX} characters`;
  if (!QUALIFIED_NAME.test(value)) {
    return `label value ${JSON.stringify(value)} is invalid: up to 63 characters: alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric`;
  }
  return undefined;
}

// ---------------------------------------------------------------- HTTP

const HEADER_NAME = /^[-_A-Za-z0-9]+$/;

/** Istio's ValidateHTTPHeaderName: letters, digits, '-' and '_'. */
export function checkHeaderName(name: string): string | undefined {
  if (name === '') return 'header name cannot be empty';
  if (!HEADER_NAME.test(name)) return `header name ${name} is not a valid header name: use letters, digits, '-' and '_'`;
  return undefined;
}

/** CORS allow/expose headers: a header name or "*". */
export function checkCORSHeaderName(name: string): string | undefined {
  return name === '*' ? undefined : checkHeaderName(name);
}

function isAuthorityHeader(name: string): boolean {
  const l = name.toLowerCase();
  return l === ':authority' || l === 'host';
}

/** Request headers that are set or added: any name but pseudo-headers, except the authority. */
export function checkRequestHeaderSetName(name: string): string | undefined {
  if (name === '') return 'header name cannot be empty';
  if ((name.startsWith(':') || name.toLowerCase() === 'host') && !isAuthorityHeader(name)) {
    return `invalid header ${JSON.stringify(name)}: header cannot have ":" prefix`;
  }
  return undefined;
}

/** Headers that are removed, or changed in responses: not Host, not pseudo-headers. */
export function checkHeaderOperationName(name: string): string | undefined {
  if (name === '') return 'header name cannot be empty';
  if (name.toLowerCase() === 'host') return `invalid header ${JSON.stringify(name)}: cannot set Host header`;
  if (name.startsWith(':')) return `invalid header ${JSON.stringify(name)}: header cannot have ":" prefix`;
  return undefined;
}

export { isAuthorityHeader };

// eslint-disable-next-line no-control-regex
const HEADER_VALUE = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;

/** Header values: no control characters (Envoy rejects them). */
export function checkHeaderValue(value: string): string | undefined {
  return HEADER_VALUE.test(value) ? undefined : `header value configuration ${JSON.stringify(value)} is invalid: control characters are not allowed`;
}

export const HTTP_METHODS: ReadonlySet<string> = new Set([
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH',
]);

export const GRPC_STATUS: ReadonlySet<string> = new Set([
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE',
  'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
]);

/** Envoy's retry_on policies (HTTP and gRPC) accepted by Istio; status codes are also allowed. */
export const RETRY_ON: ReadonlySet<string> = new Set([
  '5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'envoy-ratelimited', 'retriable-4xx',
  'refused-stream', 'retriable-status-codes', 'retriable-headers', 'http3-post-connect-failure',
  'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable',
]);

// ---------------------------------------------------------------- Envoy's limits
// Values Istio accepts and Envoy's protos refuse (their protoc-gen-validate rules). Envoy
// rejects the whole resource that carries one (a route configuration, a cluster), not just
// the one route, so these are refused here: Sextant is stricter than Istio on them.

/** HTTP statuses Envoy sends (DirectResponseAction.status, FaultAbort.http_status): `gte: 200, lt: 600`. */
export const ENVOY_HTTP_STATUS_MIN = 200;
export const ENVOY_HTTP_STATUS_MAX = 599;
/** HeaderValue key and value (config/core/v3/base.proto): `max_bytes: 16384`. */
export const ENVOY_HEADER_MAX_BYTES = 16384;
/** request/response_headers_to_add of a route or weighted cluster: `max_items: 1000`. */
export const ENVOY_HEADERS_TO_ADD_MAX = 1000;
/** UpstreamTlsContext.sni: `max_bytes: 255` (the DNS name limit). */
export const ENVOY_SNI_MAX_BYTES = 255;

/** A status Envoy can send: 200 to 599. Istio accepts 600 too (it checks `> 600`). */
export function checkEnvoyHTTPStatus(status: number): string | undefined {
  return status >= ENVOY_HTTP_STATUS_MIN && status <= ENVOY_HTTP_STATUS_MAX ? undefined
    : `HTTP status ${status} is not in range ${ENVOY_HTTP_STATUS_MIN}-${ENVOY_HTTP_STATUS_MAX}`;
}

/** UTF-8 size of `s`, counted only when it could exceed `max` (most values are short). */
function bytesOver(s: string, max: number): number | undefined {
  if (s.length * 3 <= max) return undefined;
  const bytes = Buffer.byteLength(s);
  return bytes > max ? bytes : undefined;
}

/** A header name or value to set or add: at most 16384 bytes. */
export function checkHeaderBytes(what: 'name' | 'value', s: string): string | undefined {
  const bytes = bytesOver(s, ENVOY_HEADER_MAX_BYTES);
  return bytes === undefined ? undefined : `header ${what} is ${bytes} bytes: Envoy accepts at most ${ENVOY_HEADER_MAX_BYTES}`;
}

/** Headers one `set` and `add` pair puts on a request or response: at most 1000 together. */
export function checkHeadersToAddCount(count: number): string | undefined {
  return count <= ENVOY_HEADERS_TO_ADD_MAX ? undefined : `${count} headers to set and add: Envoy accepts at most ${ENVOY_HEADERS_TO_ADD_MAX}`;
}

/** The SNI a client TLS setting sends: at most 255 bytes. */
export function checkSNIBytes(sni: string): string | undefined {
  const bytes = bytesOver(sni, ENVOY_SNI_MAX_BYTES);
  return bytes === undefined ? undefined : `SNI is ${bytes} bytes: Envoy accepts at most ${ENVOY_SNI_MAX_BYTES}`;
}

// ---------------------------------------------------------------- regexes

const regexCache = new Map<string, string | null>();
const REGEX_CACHE_LIMIT = 4096;

/**
 * Checks that a pattern is a regex Envoy's RE2 engine accepts: it must compile, and must not
 * use lookaround or backreferences (which RE2 rejects). Results are cached (bounded).
 */
export function checkRE2(pattern: string): string | undefined {
  if (pattern.length > 1024) return 'regex is too large, max length allowed is 1024';
  const cached = regexCache.get(pattern);
  if (cached !== undefined) return cached ?? undefined;
  const result = computeRE2(pattern);
  if (regexCache.size >= REGEX_CACHE_LIMIT) regexCache.clear();
  regexCache.set(pattern, result ?? null);
  return result;
}

function computeRE2(pattern: string): string | undefined {
  // Lookarounds: (?= (?! (?<= (?<! ; backreferences: \1..\9 and \k<name>, outside classes.
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      const n = pattern[i + 1];
      if (!inClass && n !== undefined && ((n >= '1' && n <= '9') || n === 'k')) {
        return `invalid regex ${JSON.stringify(pattern)}: backreferences are not supported by RE2`;
      }
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      if (pattern[i + 1] === ']') i++;
      else if (pattern[i + 1] === '^' && pattern[i + 2] === ']') i += 2;
      continue;
    }
    if (c === '(' && pattern[i + 1] === '?') {
      const a = pattern[i + 2];
      const b = pattern[i + 3];
      if (a === '=' || a === '!' || (a === '<' && (b === '=' || b === '!'))) {
        return `invalid regex ${JSON.stringify(pattern)}: lookahead and lookbehind are not supported by RE2`;
      }
    }
    if ((c === '*' || c === '+' || c === '?' || c === '}') && pattern[i + 1] === '+') {
      return `invalid regex ${JSON.stringify(pattern)}: possessive quantifiers are not supported by RE2`;
    }
  }
  try {
    // 'u' mode is stricter than legacy JS regexes and closer to RE2 (no stray escapes).
    new RegExp(pattern, 'u');
  } catch (err) {
    try {
      new RegExp(pattern);
    } catch {
      return `invalid regex ${JSON.stringify(pattern)}: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- exportTo

/**
 * Istio's validateExportTo: ".", "*", "~" (ServiceEntries only) or namespace names; no
 * duplicates ("." counts as the resource's own namespace); "*" and "~" stand alone; a
 * DestinationRule with a workloadSelector exports only to its own namespace.
 */
export function checkExportTo(namespace: string, exportTo: readonly string[], isServiceEntry: boolean, drWithSelector = false): string[] {
  const errors: string[] = [];
  const set = new Set<string>();
  for (const e of exportTo) {
    const key = e === '.' ? namespace : e;
    if (set.has(key)) {
      errors.push(key !== e ? `duplicate entries in exportTo: . and current namespace ${namespace}` : `duplicate entries in exportTo for entry ${e}`);
      continue;
    }
    if (e === '~' && isServiceEntry) {
      set.add(key);
      continue;
    }
    if (key === '*' || isDNS1123Label(key)) set.add(key);
    else errors.push(`exportTo ${JSON.stringify(e)} is invalid: expected ".", "*"${isServiceEntry ? ', "~"' : ''} or a namespace name`);
  }
  if (drWithSelector && set.size > 0) {
    if (set.has(namespace)) {
      if (set.size > 1) errors.push('destination rule with workload selector cannot have multiple entries in exportTo');
    } else errors.push('destination rule with workload selector cannot have exportTo beyond current namespace');
  }
  if (set.has('*') && exportTo.length > 1) errors.push('cannot have both public (*) and non-public exportTo values for a resource');
  if (set.has('~') && exportTo.length > 1) errors.push('cannot export service entry to no one (~) and someone');
  return errors;
}
