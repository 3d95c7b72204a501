// HTTP/1.x message heads as they travel: header names keep their case, order and
// duplicates exactly as received (M12, M13); lookups are case-insensitive.

/** One header line. `name` is byte-for-byte as received (latin1), never lower-cased. */
export interface RawHeader {
  name: string;
  value: string;
}

export type HttpVersion = '1.0' | '1.1';

export interface RequestHead {
  method: string;
  /** The request target as received: origin-form (`/x?y`), absolute-form (`http://reviews:9080/x`), `*`. */
  target: string;
  version: HttpVersion;
  headers: RawHeader[];
}

export interface ResponseHead {
  status: number;
  /** Reason phrase as received (may be empty). */
  reason: string;
  version: HttpVersion;
  headers: RawHeader[];
}

/** Every value of the headers called `name` (case-insensitive), in order, never joined. */
export function headerValues(h: readonly RawHeader[], name: string): string[] {
  const out: string[] = [];
  const n = name.length;
  let lower: string | undefined;
  for (let i = 0; i < h.length; i++) {
    const e = h[i]!;
    if (e.name.length !== n) continue;
    if (e.name === name || e.name.toLowerCase() === (lower ??= name.toLowerCase())) out.push(e.value);
  }
  return out;
}

/** The first value of the header `name` (case-insensitive), or undefined. */
export function headerValue(h: readonly RawHeader[], name: string): string | undefined {
  const n = name.length;
  let lower: string | undefined;
  for (let i = 0; i < h.length; i++) {
    const e = h[i]!;
    if (e.name.length !== n) continue;
    if (e.name === name || e.name.toLowerCase() === (lower ??= name.toLowerCase())) return e.value;
  }
  return undefined;
}

/** True when a header named `name` (case-insensitive) is present. */
export function hasHeader(h: readonly RawHeader[], name: string): boolean {
  return headerValue(h, name) !== undefined;
}

/** A copy of `h` without the headers named `name` (case-insensitive). */
export function withoutHeader(h: readonly RawHeader[], name: string): RawHeader[] {
  const lower = name.toLowerCase();
  return h.filter((e) => e.name.length !== lower.length || e.name.toLowerCase() !== lower);
}

/**
 * Sets `name` to a single `value`: the first existing line keeps its position and its
 * name's case, later duplicates are removed; appended when absent.
 */
export function setHeader(h: readonly RawHeader[], name: string, value: string): RawHeader[] {
  const lower = name.toLowerCase();
  const out: RawHeader[] = [];
  let done = false;
  for (const e of h) {
    if (e.name.length === lower.length && e.name.toLowerCase() === lower) {
      if (!done) out.push({ name: e.name, value });
      done = true;
    } else out.push(e);
  }
  if (!done) out.push({ name, value });
  return out;
}

/** The single valid Content-Length of `headers`, or -1 (absent, invalid, conflicting). */
export function contentLengthOf(headers: readonly RawHeader[]): number {
  let v = -1;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    if (h.name.length !== 14 || h.name.toLowerCase() !== 'content-length') continue;
    const value = h.value;
    // one value is the rule; a list (RFC 9110 §8.6) must repeat the same number
    let from = 0;
    for (;;) {
      const comma = value.indexOf(',', from);
      const n = decimal(value, from, comma < 0 ? value.length : comma);
      if (n < 0 || (v !== -1 && v !== n)) return -1;
      v = n;
      if (comma < 0) break;
      from = comma + 1;
    }
  }
  return v;
}

// The decimal number in s[from, to), optional whitespace around it; -1 when not one (or longer than 15 digits).
function decimal(s: string, from: number, to: number): number {
  while (from < to && (s.charCodeAt(from) === 32 || s.charCodeAt(from) === 9)) from++;
  while (to > from && (s.charCodeAt(to - 1) === 32 || s.charCodeAt(to - 1) === 9)) to--;
  if (to === from || to - from > 15) return -1;
  let n = 0;
  for (let k = from; k < to; k++) {
    const d = s.charCodeAt(k) - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

// RFC 9110 tchar: the bytes allowed in a header name and a method.
export const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TOKEN[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TOKEN[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TOKEN[c] = 1;

/** True when `s` is a non-empty RFC 9110 token (valid header name or method). */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255 || TOKEN[c] !== 1) return false;
  }
  return true;
}

/** True when `s` may be sent as a field value: no CR, LF, NUL or other controls but HTAB. */
export function isFieldValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 255) return false;
  }
  return true;
}

// Fields a trailer section may not carry (RFC 9110 §6.5.1): a recipient must have them
// before the content, so one that arrives late is either ignored or, worse, merged into
// the header section by an application that trusts it. Framing and hop-by-hop fields,
// routing, request modifiers (controls and conditionals), authentication and cookies,
// response control data, and content format and processing.
const NOT_IN_TRAILERS = new Set([
  'transfer-encoding', 'content-length', 'trailer', 'te',
  'connection', 'keep-alive', 'proxy-connection', 'upgrade',
  'host',
  'cache-control', 'expect', 'max-forwards', 'pragma', 'range',
  'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'if-range',
  'authorization', 'proxy-authorization', 'www-authenticate', 'proxy-authenticate', 'cookie', 'set-cookie',
  'age', 'expires', 'date', 'location', 'retry-after', 'vary', 'warning',
  'content-encoding', 'content-type', 'content-range',
]);

/** True when a field called `name` may be sent in a trailer section (see NOT_IN_TRAILERS). */
export function allowedInTrailers(name: string): boolean {
  return !NOT_IN_TRAILERS.has(name.toLowerCase());
}

/** Comma-separated tokens of every line of `name`, lower-cased and trimmed, empties dropped. */
export function headerTokens(h: readonly RawHeader[], name: string): string[] {
  const out: string[] = [];
  for (const v of headerValues(h, name)) {
    for (const part of v.split(',')) {
      const t = part.trim().toLowerCase();
      if (t !== '') out.push(t);
    }
  }
  return out;
}

/**
 * Throws when a head built by the proxy itself could break framing on the wire: CR, LF or
 * NUL in a name, value, reason or target (header injection, response splitting), a
 * name that is not a token. Heads the parser produced always pass.
 */
export function assertSendable(headers: readonly RawHeader[], startLinePart: string, what: string): void {
  if (unsafe(startLinePart) || (what === 'request target' && startLinePart.indexOf(' ') >= 0)) {
    throw new TypeError(`invalid ${what} ${JSON.stringify(startLinePart)}: no CR, LF, NUL${what === 'request target' ? ' or space' : ''} allowed`);
  }
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    if (!isToken(h.name)) throw new TypeError(`invalid header name ${JSON.stringify(h.name)}`);
    if (unsafe(h.value)) throw new TypeError(`invalid value for header ${h.name}: no CR, LF or NUL allowed`);
  }
}

function unsafe(s: string): boolean {
  return s.indexOf('\n') >= 0 || s.indexOf('\r') >= 0 || s.indexOf('\0') >= 0;
}

export const STATUS_REASONS: Readonly<Record<number, string>> = {
  100: 'Continue', 101: 'Switching Protocols', 200: 'OK', 201: 'Created', 202: 'Accepted',
  204: 'No Content', 206: 'Partial Content', 301: 'Moved Permanently', 302: 'Found',
  303: 'See Other', 304: 'Not Modified', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 408: 'Request Timeout', 411: 'Length Required',
  413: 'Payload Too Large', 414: 'URI Too Long', 415: 'Unsupported Media Type',
  426: 'Upgrade Required', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway',
  503: 'Service Unavailable', 504: 'Gateway Timeout', 505: 'HTTP Version Not Supported',
};

/** The standard reason phrase for `status`, or '' when it has none here. */
export function reasonPhrase(status: number): string {
  return STATUS_REASONS[status] ?? '';
}
