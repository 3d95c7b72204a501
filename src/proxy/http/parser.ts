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
}

export interface ParsedResponse {
  head: ResponseHead;
  framing: MessageFraming;
}

/**
 * Index just past the empty line ending a head that starts at `start`, or -1 when the
 * head is not complete yet. `from` lets a caller resume a scan (pass the previous buffer
 * length - 3, never less than `start`). Lines end in LF, optionally preceded by CR.
 */
export function findHeadEnd(buf: Buffer, start: number, from: number): number {
  let i = from < start ? start : from;
  const len = buf.length;
  for (;;) {
    const lf = buf.indexOf(LF, i);
    if (lf < 0) return -1;
    const n = lf + 1;
    if (n >= len) return -1;
    const c = buf[n];
    if (c === LF) return n + 1;
    if (c === CR) {
      if (n + 1 >= len) return -1;
      if (buf[n + 1] === LF) return n + 2;
    }
    i = n;
  }
}

// Lower-case ASCII names compared against token bytes with `| 0x20`; safe because names
// are validated as tokens first (no token byte folds onto a letter or '-' by mistake).
const N_HOST = Buffer.from('host');
const N_CONNECTION = Buffer.from('connection');
const N_KEEP_ALIVE = Buffer.from('keep-alive');
const N_CONTENT_LENGTH = Buffer.from('content-length');
const N_TRANSFER_ENCODING = Buffer.from('transfer-encoding');
const N_EXPECT = Buffer.from('expect');

function nameIs(buf: Buffer, s: number, len: number, lit: Buffer): boolean {
  if (len !== lit.length) return false;
  for (let i = 0; i < len; i++) if ((buf[s + i]! | 0x20) !== lit[i]) return false;
  return true;
}

function lowerAscii(buf: Buffer, s: number, e: number): string {
  return buf.toString('latin1', s, e).toLowerCase();
}

interface HeadState {
  framing: MessageFraming;
  hostCount: number;
  clValue: number; // -1 none; -2 invalid; -3 conflicting
  teCount: number; // number of coding elements
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
    keepAliveTimeoutMs: -1,
    keepAliveMax: -1,
    mustClose: false,
  };
}

// Content-Length: 1*DIGIT, possibly a comma list of identical values (RFC 9110 §8.6).
function noteContentLength(st: HeadState, buf: Buffer, s: number, e: number): void {
  let i = s;
  while (i <= e) {
    // one element up to ',' or e
    let j = i;
    while (j < e && buf[j] !== 0x2c) j++;
    let a = i;
    let b = j;
    while (a < b && (buf[a] === SP || buf[a] === HTAB)) a++;
    while (b > a && (buf[b - 1] === SP || buf[b - 1] === HTAB)) b--;
    if (a === b || b - a > 15) {
      st.clValue = -2;
      return;
    }
    let v = 0;
    for (let k = a; k < b; k++) {
      const d = buf[k]! - 0x30;
      if (d < 0 || d > 9) {
        st.clValue = -2;
        return;
      }
      v = v * 10 + d;
    }
    if (st.clValue === -1) st.clValue = v;
    else if (st.clValue >= 0 && st.clValue !== v) st.clValue = -3;
    i = j + 1;
    if (j === e) break;
  }
}

// Transfer-Encoding codings, comma separated; only the last one decides the framing.
function noteTransferEncoding(st: HeadState, buf: Buffer, s: number, e: number): void {
  st.framing.transferEncoding = true;
  let i = s;
  for (;;) {
    let j = i;
    while (j < e && buf[j] !== 0x2c) j++;
    let a = i;
    let b = j;
    while (a < b && (buf[a] === SP || buf[a] === HTAB)) a++;
    while (b > a && (buf[b - 1] === SP || buf[b - 1] === HTAB)) b--;
    if (a < b) {
      st.teCount++;
      const isChunked =
        b - a === 7 &&
        (buf[a]! | 0x20) === 0x63 && (buf[a + 1]! | 0x20) === 0x68 && (buf[a + 2]! | 0x20) === 0x75 &&
        (buf[a + 3]! | 0x20) === 0x6e && (buf[a + 4]! | 0x20) === 0x6b && (buf[a + 5]! | 0x20) === 0x65 &&
        (buf[a + 6]! | 0x20) === 0x64;
      if (isChunked) st.chunkedCount++;
      st.lastChunked = isChunked;
    }
    if (j >= e) break;
    i = j + 1;
  }
}

function noteConnection(st: HeadState, buf: Buffer, s: number, e: number): void {
  for (const t of buf.toString('latin1', s, e).split(',')) {
    const v = t.trim().toLowerCase();
    if (v === 'close') st.framing.connectionClose = true;
    else if (v === 'keep-alive') st.framing.connectionKeepAlive = true;
  }
}

function noteKeepAlive(st: HeadState, buf: Buffer, s: number, e: number): void {
  for (const t of buf.toString('latin1', s, e).split(',')) {
    const [k, v] = t.split('=');
    if (k === undefined || v === undefined) continue;
    const key = k.trim().toLowerCase();
    const n = Number(v.trim());
    if (!Number.isInteger(n) || n < 0) continue;
    if (key === 'timeout') st.framing.keepAliveTimeoutMs = n * 1000;
    else if (key === 'max') st.framing.keepAliveMax = n;
  }
}

/**
 * Parses header lines in buf[pos, end) (end is just past the terminating empty line)
 * into `out`. `strict` (requests) refuses obs-fold and whitespace before the colon;
 * responses get them repaired as RFC 9112 §5.1-5.2 allow a proxy to.
 */
function parseHeaderLines(
  buf: Buffer,
  pos: number,
  end: number,
  out: RawHeader[],
  maxHeaders: number,
  strict: boolean,
  st: HeadState | null,
  errStatus: number,
): void {
  for (;;) {
    const lf = buf.indexOf(LF, pos);
    if (lf < 0 || lf >= end) throw new HttpParseError(errStatus, 'unterminated header section');
    let lineEnd = lf;
    if (lineEnd > pos && buf[lineEnd - 1] === CR) lineEnd--;
    if (lineEnd === pos) return; // empty line: end of head
    const first = buf[pos];
    if (first === SP || first === HTAB) {
      // obs-fold: a continuation of the previous value
      const prev = out[out.length - 1];
      if (strict || prev === undefined) throw new HttpParseError(errStatus, 'obsolete line folding in header');
      let a = pos;
      let b = lineEnd;
      while (a < b && (buf[a] === SP || buf[a] === HTAB)) a++;
      while (b > a && (buf[b - 1] === SP || buf[b - 1] === HTAB)) b--;
      checkValue(buf, a, b, errStatus);
      if (a < b) prev.value = prev.value + ' ' + buf.toString('latin1', a, b);
      pos = lf + 1;
      continue;
    }
    const colon = buf.indexOf(COLON, pos);
    if (colon < 0 || colon >= lineEnd) throw new HttpParseError(errStatus, 'header line without colon');
    let nameEnd = colon;
    if (!strict) while (nameEnd > pos && (buf[nameEnd - 1] === SP || buf[nameEnd - 1] === HTAB)) nameEnd--;
    if (nameEnd === pos) throw new HttpParseError(errStatus, 'empty header name');
    for (let i = pos; i < nameEnd; i++) {
      if (TOKEN[buf[i]!] !== 1) throw new HttpParseError(errStatus, 'invalid character in header name');
    }
    let a = colon + 1;
    let b = lineEnd;
    while (a < b && (buf[a] === SP || buf[a] === HTAB)) a++;
    while (b > a && (buf[b - 1] === SP || buf[b - 1] === HTAB)) b--;
    checkValue(buf, a, b, errStatus);
    if (out.length >= maxHeaders) throw new HttpParseError(431, `more than ${maxHeaders} headers`);
    const nlen = nameEnd - pos;
    if (st !== null) {
      switch (nlen) {
        case 4:
          if (nameIs(buf, pos, nlen, N_HOST)) st.hostCount++;
          break;
        case 6:
          if (nameIs(buf, pos, nlen, N_EXPECT) && lowerAscii(buf, a, b) === '100-continue') st.framing.expectContinue = true;
          break;
        case 10:
          if (nameIs(buf, pos, nlen, N_CONNECTION)) noteConnection(st, buf, a, b);
          else if (nameIs(buf, pos, nlen, N_KEEP_ALIVE)) noteKeepAlive(st, buf, a, b);
          break;
        case 14:
          if (nameIs(buf, pos, nlen, N_CONTENT_LENGTH)) noteContentLength(st, buf, a, b);
          break;
        case 17:
          if (nameIs(buf, pos, nlen, N_TRANSFER_ENCODING)) noteTransferEncoding(st, buf, a, b);
          break;
      }
    }
    out.push({ name: buf.toString('latin1', pos, nameEnd), value: a === b ? '' : buf.toString('latin1', a, b) });
    pos = lf + 1;
  }
}

// Field values: visible bytes, SP, HTAB, obs-text; never NUL, bare CR, LF or DEL.
function checkValue(buf: Buffer, a: number, b: number, errStatus: number): void {
  for (let i = a; i < b; i++) {
    const c = buf[i]!;
    if ((c < 0x20 && c !== HTAB) || c === 0x7f) throw new HttpParseError(errStatus, 'invalid character in header value');
  }
}

function lineEndAt(buf: Buffer, pos: number, end: number, errStatus: number): [number, number] {
  const lf = buf.indexOf(LF, pos);
  if (lf < 0 || lf >= end) throw new HttpParseError(errStatus, 'unterminated start line');
  let e = lf;
  if (e > pos && buf[e - 1] === CR) e--;
  return [e, lf + 1];
}

function newState(): HeadState {
  return { framing: newFraming(), hostCount: 0, clValue: -1, teCount: 0, chunkedCount: 0, lastChunked: false };
}

const V10 = 0x30;
const V11 = 0x31;

// "HTTP/1.1" or "HTTP/1.0" at buf[s, s+8); returns the version, null for HTTP/x.y
// (answered 505), and throws for anything that is not an HTTP version at all.
function parseVersion(buf: Buffer, s: number, e: number, errStatus: number): HttpVersion | null {
  if (
    e - s === 8 &&
    buf[s] === 0x48 && buf[s + 1] === 0x54 && buf[s + 2] === 0x54 && buf[s + 3] === 0x50 && buf[s + 4] === 0x2f &&
    buf[s + 6] === 0x2e
  ) {
    const maj = buf[s + 5]!;
    const min = buf[s + 7]!;
    if (maj === 0x31 && min === V11) return '1.1';
    if (maj === 0x31 && min === V10) return '1.0';
    if (maj >= 0x30 && maj <= 0x39 && min >= 0x30 && min <= 0x39) return null;
  }
  throw new HttpParseError(errStatus, 'invalid HTTP version');
}

/** Parses a complete request head in buf[start, end). Throws HttpParseError (400/431/505/501). */
export function parseRequestHead(buf: Buffer, start: number, end: number, maxHeaders: number): ParsedRequest {
  const [lineEnd, next] = lineEndAt(buf, start, end, 400);
  const sp1 = buf.indexOf(SP, start);
  if (sp1 <= start || sp1 >= lineEnd) throw new HttpParseError(400, 'malformed request line');
  for (let i = start; i < sp1; i++) if (TOKEN[buf[i]!] !== 1) throw new HttpParseError(400, 'invalid method');
  const sp2 = buf.indexOf(SP, sp1 + 1);
  if (sp2 <= sp1 + 1 || sp2 >= lineEnd) throw new HttpParseError(400, 'malformed request line');
  for (let i = sp1 + 1; i < sp2; i++) {
    const c = buf[i]!;
    if (c < 0x21 || c === 0x7f) throw new HttpParseError(400, 'invalid character in request target');
  }
  const version = parseVersion(buf, sp2 + 1, lineEnd, 400);
  if (version === null) throw new HttpParseError(505, 'HTTP version not supported');
  const headers: RawHeader[] = [];
  const st = newState();
  parseHeaderLines(buf, next, end, headers, maxHeaders, true, st, 400);
  const f = st.framing;
  if (st.clValue === -2) throw new HttpParseError(400, 'invalid Content-Length');
  if (st.clValue === -3) throw new HttpParseError(400, 'conflicting Content-Length values');
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
  const method = buf.toString('latin1', start, sp1);
  if (method === 'CONNECT') throw new HttpParseError(501, 'CONNECT is not supported');
  return { head: { method, target: buf.toString('latin1', sp1 + 1, sp2), version, headers }, framing: f };
}

/** Parses a complete response head in buf[start, end). Throws HttpParseError (status 502). */
export function parseResponseHead(buf: Buffer, start: number, end: number, maxHeaders: number): ParsedResponse {
  const [lineEnd, next] = lineEndAt(buf, start, end, 502);
  const sp1 = buf.indexOf(SP, start);
  if (sp1 < 0 || sp1 >= lineEnd) throw new HttpParseError(502, 'malformed status line');
  const version = parseVersion(buf, start, sp1, 502);
  if (version === null) throw new HttpParseError(502, 'unsupported HTTP version in response');
  // "HTTP/1.1 200 OK", "HTTP/1.1 200 " and "HTTP/1.1 200" are all seen in the wild
  const s = sp1 + 1;
  if (lineEnd - s < 3) throw new HttpParseError(502, 'malformed status code');
  let status = 0;
  for (let i = s; i < s + 3; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) throw new HttpParseError(502, 'malformed status code');
    status = status * 10 + d;
  }
  if (status < 100) throw new HttpParseError(502, 'malformed status code');
  let reason = '';
  if (lineEnd > s + 3) {
    if (buf[s + 3] !== SP) throw new HttpParseError(502, 'malformed status line');
    checkValue(buf, s + 4, lineEnd, 502);
    reason = buf.toString('latin1', s + 4, lineEnd);
  }
  const headers: RawHeader[] = [];
  const st = newState();
  parseHeaderLines(buf, next, end, headers, maxHeaders, false, st, 502);
  const f = st.framing;
  if (f.transferEncoding) {
    // A repeated "chunked" (two lines, or "chunked, chunked") is one chunked framing
    // (M14); a TE not ending in chunked is read until close (RFC 9112 §6.3).
    f.chunked = st.lastChunked;
    if (st.clValue !== -1) f.mustClose = true;
    if (!f.chunked) f.mustClose = true;
  } else {
    if (st.clValue === -2) throw new HttpParseError(502, 'invalid Content-Length in response');
    if (st.clValue === -3) throw new HttpParseError(502, 'conflicting Content-Length values in response');
    f.contentLength = st.clValue;
  }
  return { head: { status, reason, version, headers }, framing: f };
}

/** Parses trailer lines (a head without start line) in buf[start, end). */
export function parseTrailers(buf: Buffer, start: number, end: number, maxHeaders: number, errStatus: number): RawHeader[] {
  const out: RawHeader[] = [];
  parseHeaderLines(buf, start, end, out, maxHeaders, errStatus === 400, null, errStatus);
  return out;
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

const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[0x41 + i] = 10 + i;
  HEX[0x61 + i] = 10 + i;
}

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
    let end: number;
    if (all[0] === LF) end = 1;
    else if (all[0] === CR && all.length >= 2 && all[1] === LF) end = 2;
    else if (all[0] === CR && all.length < 2) end = -1;
    else end = findHeadEnd(all, 0, 0);
    if (end < 0) {
      if (this.trailerBytes > this.maxTrailerBytes) throw new HttpParseError(this.errStatus === 400 ? 431 : 502, 'trailers too large');
      this.trailerParts = [all];
      return buf.length;
    }
    if (end > this.maxTrailerBytes) throw new HttpParseError(this.errStatus === 400 ? 431 : 502, 'trailers too large');
    if (end > 2) this.trailers = parseTrailers(all, 0, end, this.maxHeaders, this.errStatus);
    this.state = S_DONE;
    this.trailerParts = null;
    // bytes of `all` past `end` are still in `buf` at the same distance from its end
    return buf.length - (all.length - end);
  }
}
