// Incremental HTTP/1.x parsing over Buffers: heads (request and response) and chunked
// bodies. Strict where leniency would open a smuggling hole, lenient only where the
// message is re-framed before it travels on (RFC 9112 §6.3, §7.1).
import { TOKEN, type HttpVersion, type RawHeader, type RequestHead, type ResponseHead } from './headers.ts';

/** A message the codec refuses; `status` is what a server answers (400, 431, 505, …). */
export class HttpParseError extends Error {
  readonly status: number;
  override readonly name = 'HttpParseError';
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const COLON = 58;

/** What the headers say about framing and connection management. */
export interface MessageFraming {
  /** Declared Content-Length, -1 when absent. */
  contentLength: number;
  /** Transfer-Encoding present. */
  transferEncoding: boolean;
  /** The final transfer coding is chunked. */
  chunked: boolean;
  /** Connection: close present. */
  connectionClose: boolean;
  /** Connection: keep-alive present. */
  connectionKeepAlive: boolean;
  /** Expect: 100-continue present. */
  expectContinue: boolean;
  /** Connection lists `upgrade`. */
  connectionUpgrade: boolean;
  /** The first protocol of an Upgrade header, lower-cased ('' when none). */
  upgrade: string;
  /** Keep-Alive: timeout=N from a response, in ms; -1 when absent. */
  keepAliveTimeoutMs: number;
  /** Keep-Alive: max=N from a response; -1 when absent. */
  keepAliveMax: number;
  /** Both Content-Length and Transfer-Encoding on a response: framed by TE, then closed. */
  mustClose: boolean;
}

export interface ParsedRequest {
  head: RequestHead;
  framing: MessageFraming;
  /** Index just past the head in the buffer. */
  end: number;
}

export interface ParsedResponse {
  head: ResponseHead;
  framing: MessageFraming;
  /** Index just past the head in the buffer. */
  end: number;
}

/**
 * A position by which the head starting at `start` is surely complete (the true end, the
 * first empty line, is found by the head parsers and may come earlier), or -1 when no
 * empty line arrived yet. `from` resumes a scan (the previous buffer length - 3, or less).
 */
export function findHeadEnd(buf: Buffer, start: number, from: number): number {
  const i = from < start ? start : from;
  // CRLF CRLF (and LF CRLF) in one native search; LF LF only for LF-only senders
  const a = buf.indexOf(LF_CRLF, i);
  if (a >= 0) return a + 3;
  const b = buf.indexOf(LF_LF, i);
  return b >= 0 ? b + 2 : -1;
}

const LF_CRLF = Buffer.from('\n\r\n', 'latin1');
const LF_LF = Buffer.from('\n\n', 'latin1');

/**
 * Index of a CR in buf[from, to) followed by something other than LF, or -1. A CR as the
 * last byte is not bare yet (its LF may come with the next read). An incomplete head is
 * scanned with it so that a bare CR line ending is refused at once, not after the head
 * timeout: no empty line would ever be found.
 */
export function findBareCr(buf: Buffer, from: number, to: number): number {
  let i = buf.indexOf(CR, from);
  while (i >= 0 && i < to - 1) {
    if (buf[i + 1] !== LF) return i;
    i = buf.indexOf(CR, i + 2);
  }
  return -1;
}

interface HeadState {
  framing: MessageFraming;
  hostCount: number;
  /** A Host value that is not uri-host [":" port] (requests only). */
  hostInvalid: boolean;
  clValue: number; // -1 none; -2 invalid; -3 conflicting
  /** Content-Length values seen (lines, and list members within a line). */
  clCount: number;
  chunkedCount: number;
  lastChunked: boolean;
}

function newFraming(): MessageFraming {
  return {
    contentLength: -1,
    transferEncoding: false,
    chunked: false,
    connectionClose: false,
    connectionKeepAlive: false,
    expectContinue: false,
    connectionUpgrade: false,
    upgrade: '',
    keepAliveTimeoutMs: -1,
    keepAliveMax: -1,
    mustClose: false,
  };
}

function newState(): HeadState {
  return { framing: newFraming(), hostCount: 0, hostInvalid: false, clValue: -1, clCount: 0, chunkedCount: 0, lastChunked: false };
}

// Names are compared as lower-case ASCII with `| 0x20` on their char codes; safe because
// they are validated as tokens first (no token char folds onto a letter or '-' by mistake).
function nameIs(str: string, s: number, lit: string): boolean {
  for (let i = 0; i < lit.length; i++) if ((str.charCodeAt(s + i) | 0x20) !== lit.charCodeAt(i)) return false;
  return true;
}

function isWs(c: number): boolean {
  return c === SP || c === HTAB;
}

// Hex digit values; -1 for any other byte.
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[0x41 + i] = 10 + i;
  HEX[0x61 + i] = 10 + i;
}

// RFC 3986 reg-name bytes: unreserved and sub-delims (1), '%' of pct-encoded (2, its two
// hex digits checked apart). ',' is left out although it is a sub-delim: it separates list
// values, and a server that reads `Host: a,b` as two values would route differently.
const REG_NAME = new Uint8Array(256);
for (const c of "-._~!$&'()*+;=") REG_NAME[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) REG_NAME[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) REG_NAME[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) REG_NAME[c] = 1;
REG_NAME[0x25] = 2;
// inside an IP-literal's brackets: IPv6 (hex, ':', '.') and IPvFuture, and a "%25" zone id
const IP_LITERAL = REG_NAME.slice();
IP_LITERAL[COLON] = 1;
IP_LITERAL[0x25] = 1;

/**
 * True when str[a, b) is `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a
 * reg-name, IPv4 address or IP-literal, then optional digits. No userinfo ('@'), path
 * ('/'), whitespace, controls or an empty value.
 */
function isHostValue(str: string, a: number, b: number): boolean {
  let i = a;
  if (i >= b) return false;
  if (str.charCodeAt(i) === 0x5b) {
    i++;
    while (i < b && IP_LITERAL[str.charCodeAt(i)] === 1) i++;
    if (i === a + 1 || i >= b || str.charCodeAt(i) !== 0x5d) return false;
    i++;
  } else {
    for (; i < b; i++) {
      const t = REG_NAME[str.charCodeAt(i)];
      if (t === 1) continue;
      if (t !== 2) break;
      if (!(i + 2 < b && HEX[str.charCodeAt(i + 1)]! >= 0 && HEX[str.charCodeAt(i + 2)]! >= 0)) return false;
    }
    if (i === a) return false;
  }
  if (i === b) return true;
  if (str.charCodeAt(i) !== COLON) return false;
  for (i++; i < b; i++) {
    const c = str.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

// Content-Length: 1*DIGIT, possibly a comma list of identical values (RFC 9110 §8.6).
function noteContentLength(st: HeadState, str: string, s: number, e: number): void {
  let i = s;
  for (;;) {
    let j = i;
    while (j < e && str.charCodeAt(j) !== 0x2c) j++;
    let a = i;
    let b = j;
    while (a < b && isWs(str.charCodeAt(a))) a++;
    while (b > a && isWs(str.charCodeAt(b - 1))) b--;
    if (a === b || b - a > 15) {
      st.clValue = -2;
      return;
    }
    let v = 0;
    for (let k = a; k < b; k++) {
      const d = str.charCodeAt(k) - 0x30;
      if (d < 0 || d > 9) {
        st.clValue = -2;
        return;
      }
      v = v * 10 + d;
    }
    st.clCount++;
    if (st.clValue === -1) st.clValue = v;
    else if (st.clValue >= 0 && st.clValue !== v) st.clValue = -3;
    if (j >= e) return;
    i = j + 1;
  }
}

// Transfer-Encoding codings, comma separated; only the last one decides the framing.
function noteTransferEncoding(st: HeadState, str: string, s: number, e: number): void {
  st.framing.transferEncoding = true;
  let i = s;
  for (;;) {
    let j = i;
    while (j < e && str.charCodeAt(j) !== 0x2c) j++;
    let a = i;
    let b = j;
    while (a < b && isWs(str.charCodeAt(a))) a++;
    while (b > a && isWs(str.charCodeAt(b - 1))) b--;
    if (a < b) {
      const isChunked = b - a === 7 && nameIs(str, a, 'chunked');
      if (isChunked) st.chunkedCount++;
      st.lastChunked = isChunked;
    }
    if (j >= e) return;
    i = j + 1;
  }
}

function noteConnection(st: HeadState, value: string): void {
  const v = value.toLowerCase();
  if (v === 'keep-alive') {
    st.framing.connectionKeepAlive = true;
    return;
  }
  if (v === 'close') {
    st.framing.connectionClose = true;
    return;
  }
  for (const t of v.split(',')) {
    const x = t.trim();
    if (x === 'close') st.framing.connectionClose = true;
    else if (x === 'keep-alive') st.framing.connectionKeepAlive = true;
    else if (x === 'upgrade') st.framing.connectionUpgrade = true;
  }
}

function noteKeepAlive(st: HeadState, value: string): void {
  for (const t of value.split(',')) {
    const eq = t.indexOf('=');
    if (eq < 0) continue;
    const key = t.slice(0, eq).trim().toLowerCase();
    const n = Number(t.slice(eq + 1).trim());
    if (!Number.isInteger(n) || n < 0) continue;
    if (key === 'timeout') st.framing.keepAliveTimeoutMs = n * 1000;
    else if (key === 'max') st.framing.keepAliveMax = n;
  }
}

/**
 * Parses header lines of `str` from `pos` up to and including the first empty line into
 * `out`; returns the index just past that empty line. `strict` (requests) refuses
 * obs-fold and whitespace before the colon; responses get them repaired as RFC 9112
 * §5.1-5.2 allow a proxy to. Lines end in LF, optionally preceded by CR.
 */
function parseHeaderLines(
  str: string,
  pos: number,
  out: RawHeader[],
  maxHeaders: number,
  strict: boolean,
  st: HeadState | null,
  errStatus: number,
): number {
  const len = str.length;
  for (;;) {
    if (pos >= len) throw new HttpParseError(errStatus, 'unterminated header section');
    const first = str.charCodeAt(pos);
    if (first === LF) return pos + 1;
    if (first === CR) {
      if (pos + 1 < len && str.charCodeAt(pos + 1) === LF) return pos + 2;
      throw new HttpParseError(errStatus, 'bare CR in header section');
    }
    if (first === SP || first === HTAB) {
      // obs-fold: a continuation of the previous value
      const prev = out[out.length - 1];
      if (strict || prev === undefined) throw new HttpParseError(errStatus, 'obsolete line folding in header');
      let a = pos;
      while (a < len && isWs(str.charCodeAt(a))) a++;
      const [b, next] = valueEnd(str, a, errStatus);
      if (a < b) prev.value = prev.value + ' ' + str.slice(a, b);
      pos = next;
      continue;
    }
    // name: token chars up to ':'
    let i = pos;
    let c = 0;
    while (i < len && TOKEN[(c = str.charCodeAt(i))] === 1) i++;
    const nameEnd = i;
    if (!strict) while (i < len && isWs((c = str.charCodeAt(i)))) i++;
    if (i >= len || c !== COLON) {
      throw new HttpParseError(errStatus, c === LF || c === CR ? 'header line without colon' : 'invalid character in header name');
    }
    if (nameEnd === pos) throw new HttpParseError(errStatus, 'empty header name');
    let a = i + 1;
    while (a < len && isWs(str.charCodeAt(a))) a++;
    const [b, next] = valueEnd(str, a, errStatus);
    if (out.length >= maxHeaders) throw new HttpParseError(431, `more than ${maxHeaders} headers`);
    const nlen = nameEnd - pos;
    if (st !== null) {
      switch (nlen) {
        case 4:
          if (nameIs(str, pos, 'host')) {
            st.hostCount++;
            if (strict && !isHostValue(str, a, b)) st.hostInvalid = true;
          }
          break;
        case 7:
          if (nameIs(str, pos, 'upgrade') && st.framing.upgrade === '') st.framing.upgrade = (str.slice(a, b).split(',')[0] ?? '').trim().toLowerCase();
          break;
        case 6:
          if (nameIs(str, pos, 'expect') && str.slice(a, b).toLowerCase() === '100-continue') st.framing.expectContinue = true;
          break;
        case 10:
          if (nameIs(str, pos, 'connection')) noteConnection(st, str.slice(a, b));
          else if (nameIs(str, pos, 'keep-alive')) noteKeepAlive(st, str.slice(a, b));
          break;
        case 14:
          if (nameIs(str, pos, 'content-length')) noteContentLength(st, str, a, b);
          break;
        case 17:
          if (nameIs(str, pos, 'transfer-encoding')) noteTransferEncoding(st, str, a, b);
          break;
      }
    }
    out.push({ name: str.slice(pos, nameEnd), value: a === b ? '' : str.slice(a, b) });
    pos = next;
  }
}

// Scans a field value from `a`: visible chars, SP, HTAB and obs-text; never NUL, bare CR
// or DEL. Returns [end of the value without trailing whitespace, start of the next line].
function valueEnd(str: string, a: number, errStatus: number): [number, number] {
  const len = str.length;
  let i = a;
  for (;;) {
    if (i >= len) throw new HttpParseError(errStatus, 'unterminated header line');
    const c = str.charCodeAt(i);
    if (c >= 0x20 && c !== 0x7f) {
      i++;
      continue;
    }
    if (c === HTAB) {
      i++;
      continue;
    }
    let next: number;
    if (c === LF) next = i + 1;
    else if (c === CR && i + 1 < len && str.charCodeAt(i + 1) === LF) next = i + 2;
    else throw new HttpParseError(errStatus, 'invalid character in header value');
    let b = i;
    while (b > a && isWs(str.charCodeAt(b - 1))) b--;
    return [b, next];
  }
}

/** Index of the end of the start line of `str` (before CR LF or LF) and of the next line. */
function startLine(str: string, errStatus: number): [number, number] {
  const lf = str.indexOf('\n');
  if (lf < 0) throw new HttpParseError(errStatus, 'unterminated start line');
  return lf > 0 && str.charCodeAt(lf - 1) === CR ? [lf - 1, lf + 1] : [lf, lf + 1];
}

// "HTTP/1.1" or "HTTP/1.0" at str[s, e); returns the version, null for another HTTP/x.y
// (answered 505), and throws for anything that is not an HTTP version at all.
function parseVersion(str: string, s: number, e: number, errStatus: number): HttpVersion | null {
  if (e - s === 8 && str.startsWith('HTTP/', s) && str.charCodeAt(s + 6) === 0x2e) {
    const maj = str.charCodeAt(s + 5);
    const min = str.charCodeAt(s + 7);
    if (maj === 0x31 && min === 0x31) return '1.1';
    if (maj === 0x31 && min === 0x30) return '1.0';
    if (maj >= 0x30 && maj <= 0x39 && min >= 0x30 && min <= 0x39) return null;
  }
  throw new HttpParseError(errStatus, 'invalid HTTP version');
}

// Method bytes: tchar without lower-case letters. Methods are case-sensitive (RFC 9110
// §9.1) and every registered one is upper-case; `get` is refused by Node's parser and
// nginx, and an app that upper-cases methods would read `post` as POST where a route or
// an authorization policy matching "POST" did not.
const METHOD = TOKEN.slice();
METHOD.fill(0, 0x61, 0x7b);

// `method SP request-target SP HTTP-version` at str[0, lineEnd): the two spaces and the
// version. The method is an upper-case token, the target has no whitespace or controls.
function parseRequestLine(str: string, lineEnd: number): [number, number, HttpVersion] {
  let i = 0;
  while (i < lineEnd && METHOD[str.charCodeAt(i)] === 1) i++;
  if (i === 0 || i >= lineEnd || str.charCodeAt(i) !== SP) throw new HttpParseError(400, i === 0 || str.charCodeAt(i) !== SP ? 'invalid method' : 'malformed request line');
  const sp1 = i;
  i++;
  for (; i < lineEnd; i++) {
    const c = str.charCodeAt(i);
    if (c === SP) break;
    if (c < 0x21 || c === 0x7f) throw new HttpParseError(400, 'invalid character in request target');
  }
  const sp2 = i;
  if (sp2 === sp1 + 1 || sp2 >= lineEnd) throw new HttpParseError(400, 'malformed request line');
  const version = parseVersion(str, sp2 + 1, lineEnd, 400);
  if (version === null) throw new HttpParseError(505, 'HTTP version not supported');
  return [sp1, sp2, version];
}

/**
 * Checks the request line of a head still arriving, once its line ending is in
 * buf[start, end): a line that is not `method SP target SP HTTP/x.y` (an HTTP/0.9 request,
 * another protocol) is refused at once rather than after the head timeout, as its empty
 * line may never come. False when the line has not ended yet; throws HttpParseError.
 */
export function checkRequestLine(buf: Buffer, start: number, end: number): boolean {
  const lf = buf.indexOf(LF, start);
  if (lf < 0 || lf >= end) return false;
  const str = buf.toString('latin1', start, lf + 1);
  parseRequestLine(str, startLine(str, 400)[0]);
  return true;
}

/**
 * Parses a request head from buf[start, end) (`end` from findHeadEnd); `parsed.end` is the
 * index just past the head. Throws HttpParseError (400/431/501/505).
 */
export function parseRequestHead(buf: Buffer, start: number, end: number, maxHeaders: number): ParsedRequest {
  const str = buf.toString('latin1', start, end);
  const [lineEnd, next] = startLine(str, 400);
  const [sp1, sp2, version] = parseRequestLine(str, lineEnd);
  const headers: RawHeader[] = [];
  const st = newState();
  const used = parseHeaderLines(str, next, headers, maxHeaders, true, st, 400);
  const f = st.framing;
  if (st.clValue === -2) throw new HttpParseError(400, 'invalid Content-Length');
  if (st.clValue === -3) throw new HttpParseError(400, 'conflicting Content-Length values');
  // RFC 9110 §8.6 lets a recipient take identical repeated values as one; Node's parser
  // and nginx refuse them, and a request that one hop takes and another refuses is the
  // start of a desync, so the sidecar refuses them too (responses stay lenient)
  if (st.clCount > 1) throw new HttpParseError(400, 'more than one Content-Length');
  if (f.transferEncoding) {
    if (st.clValue !== -1) throw new HttpParseError(400, 'both Content-Length and Transfer-Encoding');
    if (version === '1.0') throw new HttpParseError(400, 'Transfer-Encoding in an HTTP/1.0 request');
    if (!st.lastChunked || st.chunkedCount !== 1) {
      throw new HttpParseError(400, 'Transfer-Encoding must end in a single chunked');
    }
    f.chunked = true;
  } else f.contentLength = st.clValue;
  if (st.hostCount > 1) throw new HttpParseError(400, 'more than one Host header');
  if (st.hostCount === 0 && version === '1.1') throw new HttpParseError(400, 'missing Host header');
  if (st.hostInvalid) throw new HttpParseError(400, 'invalid Host header');
  const method = str.slice(0, sp1);
  if (method === 'CONNECT') throw new HttpParseError(501, 'CONNECT is not supported');
  return { head: { method, target: str.slice(sp1 + 1, sp2), version, headers }, framing: f, end: start + used };
}

/**
 * Parses a response head from buf[start, end) (`end` from findHeadEnd); `parsed.end` is
 * the index just past the head. Throws HttpParseError (status 502).
 */
export function parseResponseHead(buf: Buffer, start: number, end: number, maxHeaders: number): ParsedResponse {
  const str = buf.toString('latin1', start, end);
  const [lineEnd, next] = startLine(str, 502);
  const sp1 = str.indexOf(' ');
  if (sp1 < 0 || sp1 >= lineEnd) throw new HttpParseError(502, 'malformed status line');
  const version = parseVersion(str, 0, sp1, 502);
  if (version === null) throw new HttpParseError(502, 'unsupported HTTP version in response');
  // "HTTP/1.1 200 OK", "HTTP/1.1 200 " and "HTTP/1.1 200" are all seen in the wild
  const s = sp1 + 1;
  if (lineEnd - s < 3) throw new HttpParseError(502, 'malformed status code');
  let status = 0;
  for (let i = s; i < s + 3; i++) {
    const d = str.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) throw new HttpParseError(502, 'malformed status code');
    status = status * 10 + d;
  }
  if (status < 100) throw new HttpParseError(502, 'malformed status code');
  let reason = '';
  if (lineEnd > s + 3) {
    if (str.charCodeAt(s + 3) !== SP) throw new HttpParseError(502, 'malformed status line');
    for (let i = s + 4; i < lineEnd; i++) {
      const c = str.charCodeAt(i);
      if ((c < 0x20 && c !== HTAB) || c === 0x7f) throw new HttpParseError(502, 'invalid character in reason phrase');
    }
    reason = str.slice(s + 4, lineEnd);
  }
  const headers: RawHeader[] = [];
  const st = newState();
  const used = parseHeaderLines(str, next, headers, maxHeaders, false, st, 502);
  const f = st.framing;
  if (f.transferEncoding) {
    // A repeated "chunked" (two lines, or "chunked, chunked") is one chunked framing
    // (M14); a TE not ending in chunked is read until close (RFC 9112 §6.3).
    f.chunked = st.lastChunked;
    if (st.clValue !== -1 || !f.chunked) f.mustClose = true;
  } else {
    if (st.clValue === -2) throw new HttpParseError(502, 'invalid Content-Length in response');
    if (st.clValue === -3) throw new HttpParseError(502, 'conflicting Content-Length values in response');
    f.contentLength = st.clValue;
  }
  return { head: { status, reason, version, headers }, framing: f, end: start + used };
}

/**
 * Parses a trailer section (header lines and the empty line) at buf[start, end); returns
 * the trailers and the index just past the section.
 */
export function parseTrailers(buf: Buffer, start: number, end: number, maxHeaders: number, errStatus: number): [RawHeader[], number] {
  const out: RawHeader[] = [];
  const used = parseHeaderLines(buf.toString('latin1', start, end), 0, out, maxHeaders, errStatus === 400, null, errStatus);
  return [out, start + used];
}

// Chunked decoder states
const S_SIZE = 0;
const S_SIZE_WS = 1;
const S_EXT = 2;
const S_SIZE_LF = 3;
const S_DATA = 4;
const S_DATA_CR = 5;
const S_DATA_LF = 6;
const S_TRAILER = 7;
const S_DONE = 8;

const MAX_CHUNK_LINE = 4096;

/**
 * Decodes a chunked body incrementally. `feed` consumes bytes and hands each data slice
 * (a view, not a copy) to `onData`; `done` turns true after the last-chunk and trailers.
 * Chunk sizes must be hex with CRLF after the size line and after the data: anything
 * else is an error (a bad chunk size is the classic smuggling vector).
 */
export class ChunkedDecoder {
  private state = S_SIZE;
  private size = 0;
  private digits = 0;
  private lineBytes = 0;
  private trailerParts: Buffer[] | null = null;
  private trailerBytes = 0;
  private readonly maxTrailerBytes: number;
  private readonly maxHeaders: number;
  private readonly errStatus: number;
  trailers: RawHeader[] | null = null;

  constructor(maxTrailerBytes: number, maxHeaders: number, errStatus: number) {
    this.maxTrailerBytes = maxTrailerBytes;
    this.maxHeaders = maxHeaders;
    this.errStatus = errStatus;
  }

  get done(): boolean {
    return this.state === S_DONE;
  }

  /** Inside a chunk-size line: some of it read, its line ending not yet. */
  get inSizeLine(): boolean {
    const st = this.state;
    return (st === S_SIZE && this.lineBytes > 0) || st === S_SIZE_WS || st === S_EXT || st === S_SIZE_LF;
  }

  /** Consumes from buf[off..]; returns the index after the last byte consumed. */
  feed(buf: Buffer, off: number, onData: (b: Buffer) => void): number {
    let i = off;
    const len = buf.length;
    while (i < len) {
      switch (this.state) {
        case S_SIZE: {
          const c = buf[i]!;
          const h = HEX[c]!;
          if (h >= 0) {
            if (++this.digits > 13) throw new HttpParseError(this.errStatus, 'chunk size too large');
            this.size = this.size * 16 + h;
          } else if (this.digits === 0) {
            throw new HttpParseError(this.errStatus, 'invalid chunk size');
          } else if (c === CR) this.state = S_SIZE_LF;
          else if (c === 0x3b) this.state = S_EXT;
          else if (c === SP || c === HTAB) this.state = S_SIZE_WS;
          else throw new HttpParseError(this.errStatus, 'invalid chunk size');
          i++;
          if (++this.lineBytes > MAX_CHUNK_LINE) throw new HttpParseError(this.errStatus, 'chunk size line too long');
          break;
        }
        case S_SIZE_WS: {
          const c = buf[i]!;
          if (c === 0x3b) this.state = S_EXT;
          else if (c === CR) this.state = S_SIZE_LF;
          else if (c !== SP && c !== HTAB) throw new HttpParseError(this.errStatus, 'invalid chunk size');
          i++;
          if (++this.lineBytes > MAX_CHUNK_LINE) throw new HttpParseError(this.errStatus, 'chunk size line too long');
          break;
        }
        case S_EXT: {
          const c = buf[i]!;
          if (c === CR) this.state = S_SIZE_LF;
          else if ((c < 0x20 && c !== HTAB) || c === 0x7f) throw new HttpParseError(this.errStatus, 'invalid chunk extension');
          i++;
          if (++this.lineBytes > MAX_CHUNK_LINE) throw new HttpParseError(this.errStatus, 'chunk extension too long');
          break;
        }
        case S_SIZE_LF: {
          if (buf[i] !== LF) throw new HttpParseError(this.errStatus, 'invalid chunk size line ending');
          i++;
          this.lineBytes = 0;
          this.digits = 0;
          if (this.size === 0) {
            this.state = S_TRAILER;
            this.trailerParts = [];
            this.trailerBytes = 0;
          } else this.state = S_DATA;
          break;
        }
        case S_DATA: {
          const n = Math.min(this.size, len - i);
          onData(buf.subarray(i, i + n));
          i += n;
          this.size -= n;
          if (this.size === 0) this.state = S_DATA_CR;
          break;
        }
        case S_DATA_CR:
          if (buf[i] !== CR) throw new HttpParseError(this.errStatus, 'chunk data longer than its size');
          i++;
          this.state = S_DATA_LF;
          break;
        case S_DATA_LF:
          if (buf[i] !== LF) throw new HttpParseError(this.errStatus, 'invalid chunk data ending');
          i++;
          this.state = S_SIZE;
          break;
        case S_TRAILER:
          i = this.feedTrailer(buf, i);
          break;
        case S_DONE:
          return i;
      }
    }
    return i;
  }

  // Trailer section: header lines until an empty line, bounded like a head.
  private feedTrailer(buf: Buffer, i: number): number {
    const parts = this.trailerParts!;
    // fast path: "\r\n" right after the last-chunk line, no trailers
    if (parts.length === 0 && this.trailerBytes === 0 && buf.length - i >= 2 && buf[i] === CR && buf[i + 1] === LF) {
      this.state = S_DONE;
      this.trailerParts = null;
      return i + 2;
    }
    parts.push(buf.subarray(i));
    this.trailerBytes += buf.length - i;
    const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    const bound = findHeadEnd(all, 0, 0);
    let end = -1;
    if (all[0] === LF) end = 1;
    else if (all[0] === CR && all.length >= 2 && all[1] === LF) end = 2;
    else if (bound >= 0) {
      const [trailers, e] = parseTrailers(all, 0, Math.min(bound, this.maxTrailerBytes), this.maxHeaders, this.errStatus);
      this.trailers = trailers;
      end = e;
    }
    if (end < 0) {
      if (this.trailerBytes > this.maxTrailerBytes) throw new HttpParseError(this.errStatus === 400 ? 431 : 502, 'trailers too large');
      // the section can never end: refuse now rather than wait for more
      if (findBareCr(all, 0, all.length) >= 0) throw new HttpParseError(this.errStatus, 'bare CR in trailer section');
      // kept across reads: a copy, as `buf` may be a reused read buffer
      this.trailerParts = [parts.length === 1 ? Buffer.from(all) : all];
      return buf.length;
    }
    this.state = S_DONE;
    this.trailerParts = null;
    // bytes of `all` past `end` are still in `buf` at the same distance from its end
    return buf.length - (all.length - end);
  }
}
