// Writes HTTP/1.x heads: every header line as given (name case, order, duplicates), except
// the ones the codec owns: framing (Content-Length, Transfer-Encoding) is made to match the
// body actually sent, and hop-by-hop connection headers are replaced by the codec's own.
import type { Writable } from 'node:stream';
import { allowedInTrailers, type RawHeader, type RequestHead } from './headers.ts';

/** How the body that follows a head is delimited. */
export type BodyFraming =
  | { kind: 'length'; length: number }
  | { kind: 'chunked' }
  /** Close-delimited (HTTP/1.0 peer, unknown length): no framing header. */
  | { kind: 'close' }
  /** No body and no framing header (204, 1xx, bodiless requests). */
  | { kind: 'none' }
  /** No body follows, framing headers kept as given (HEAD and 304 responses describe another message). */
  | { kind: 'keep' };

export const FRAMING_NONE: BodyFraming = Object.freeze({ kind: 'none' });
export const FRAMING_CHUNKED: BodyFraming = Object.freeze({ kind: 'chunked' });
export const FRAMING_CLOSE: BodyFraming = Object.freeze({ kind: 'close' });
export const FRAMING_KEEP: BodyFraming = Object.freeze({ kind: 'keep' });

const H_CONNECTION = 'connection';
const H_KEEP_ALIVE = 'keep-alive';
const H_PROXY_CONNECTION = 'proxy-connection';
const H_CONTENT_LENGTH = 'content-length';
const H_TRANSFER_ENCODING = 'transfer-encoding';

// Headers a Connection token may not remove: they carry framing or routing.
const PROTECTED = new Set(['host', 'content-length', 'transfer-encoding', 'connection']);

// Lower-cases only names whose length matches one of the owned headers: the common
// header costs a length compare, not an allocation.
function ownedKind(name: string): number {
  switch (name.length) {
    case 10: {
      const l = name.toLowerCase();
      return l === H_CONNECTION || l === H_KEEP_ALIVE ? 1 : 0;
    }
    case 14:
      return name.toLowerCase() === H_CONTENT_LENGTH ? 2 : 0;
    case 16:
      return name.toLowerCase() === H_PROXY_CONNECTION ? 1 : 0;
    case 17:
      return name.toLowerCase() === H_TRANSFER_ENCODING ? 3 : 0;
    default:
      return 0;
  }
}

/** Lower-cased header names listed in Connection (hop-by-hop by declaration), or null. */
function connectionNominated(headers: readonly RawHeader[]): Set<string> | null {
  let out: Set<string> | null = null;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    if (h.name.length !== 10 || h.name.toLowerCase() !== H_CONNECTION) continue;
    for (const part of h.value.split(',')) {
      const t = part.trim().toLowerCase();
      if (t === '' || t === 'close' || t === 'keep-alive' || PROTECTED.has(t)) continue;
      (out ??= new Set()).add(t);
    }
  }
  return out;
}

// The Transfer-Encoding value to send for a chunked body: the codings as given, with
// "chunked" once and last (a repeated chunked, M14, goes out as one).
function chunkedCodings(headers: readonly RawHeader[]): string {
  let single: string | null = null;
  const codings: string[] = [];
  let lines = 0;
  for (const h of headers) {
    if (h.name.length !== 17 || h.name.toLowerCase() !== H_TRANSFER_ENCODING) continue;
    lines++;
    single = h.value;
    for (const part of h.value.split(',')) {
      const t = part.trim();
      if (t !== '' && t.toLowerCase() !== 'chunked') codings.push(t);
    }
  }
  if (lines === 1 && single !== null && single.toLowerCase() === 'chunked') return single;
  codings.push('chunked');
  return codings.join(', ');
}

/**
 * Appends header lines (and the final empty line) to `out`. `connection` is the
 * Connection value the codec sends for this hop ('' for none).
 */
export function serializeHeaders(out: string, headers: readonly RawHeader[], framing: BodyFraming, connection: string): string {
  const nominated = connectionNominated(headers);
  let clDone = false;
  let teDone = false;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    const kind = ownedKind(h.name);
    if (kind === 0) {
      if (nominated !== null && nominated.has(h.name.toLowerCase())) continue;
      out += h.name + ': ' + h.value + '\r\n';
      continue;
    }
    if (kind === 1) continue; // Connection, Keep-Alive, Proxy-Connection: this hop's own
    if (framing.kind === 'keep') {
      out += h.name + ': ' + h.value + '\r\n';
      continue;
    }
    if (kind === 2) {
      if (framing.kind === 'length' && !clDone) {
        out += h.name + ': ' + framing.length + '\r\n';
        clDone = true;
      }
      continue;
    }
    // Transfer-Encoding
    if (framing.kind === 'chunked' && !teDone) {
      out += h.name + ': ' + chunkedCodings(headers) + '\r\n';
      teDone = true;
    }
  }
  if (framing.kind === 'length' && !clDone) out += 'Content-Length: ' + framing.length + '\r\n';
  else if (framing.kind === 'chunked' && !teDone) out += 'Transfer-Encoding: chunked\r\n';
  if (connection !== '') out += 'Connection: ' + connection + '\r\n';
  return out + '\r\n';
}

/** A response head as text (latin1: one byte per character); the status line carries `version` (the downstream's). */
export function responseHeadString(
  version: '1.0' | '1.1',
  status: number,
  reason: string,
  headers: readonly RawHeader[],
  framing: BodyFraming,
  connection: string,
): string {
  const line = (version === '1.1' ? 'HTTP/1.1 ' : 'HTTP/1.0 ') + status + ' ' + reason + '\r\n';
  return serializeHeaders(line, headers, framing, connection);
}

/** A response head as bytes; the status line carries `version` (the downstream's). */
export function serializeResponseHead(
  version: '1.0' | '1.1',
  status: number,
  reason: string,
  headers: readonly RawHeader[],
  framing: BodyFraming,
  connection: string,
): Buffer {
  return Buffer.from(responseHeadString(version, status, reason, headers, framing, connection), 'latin1');
}

/** A request head as text, always HTTP/1.1 upstream; `host` is added when the head has none. */
export function requestHeadString(head: RequestHead, framing: BodyFraming, connection: string, host: string): string {
  let s = head.method + ' ' + head.target + ' HTTP/1.1\r\n';
  let hasHost = false;
  for (let i = 0; i < head.headers.length; i++) {
    const n = head.headers[i]!.name;
    if (n.length === 4 && n.toLowerCase() === 'host') {
      hasHost = true;
      break;
    }
  }
  if (!hasHost) s += 'Host: ' + host + '\r\n';
  return serializeHeaders(s, head.headers, framing, connection);
}

/** A request head as bytes, always HTTP/1.1 upstream; `host` is added when the head has none. */
export function serializeRequestHead(head: RequestHead, framing: BodyFraming, connection: string, host: string): Buffer {
  return Buffer.from(requestHeadString(head, framing, connection, host), 'latin1');
}

/**
 * Below this many bytes, a head and the body bytes that go with it are copied into one
 * Buffer and written once: one plain write costs far less in Node than a corked writev of
 * several small buffers, and the copy is cheap at this size. Larger bodies go out corked.
 */
export const COALESCE_MAX_BYTES = 16 * 1024;

/** A body whose chunks that have arrived can be taken without waiting. */
export interface QueuedBody {
  /** The next chunk if it is here already: a Buffer, null at the end, undefined when not yet. */
  tryRead(): Buffer | null | undefined;
}

/**
 * Collects what leaves in one write: a head (text, latin1) and the body bytes (with their
 * chunk framing) available with it, then writes them as one Buffer when small, or corked.
 */
export class WriteBatch {
  head = '';
  readonly parts: Buffer[] = [];
  bytes = 0;

  add(b: Buffer): void {
    this.parts.push(b);
    this.bytes += b.length;
  }

  /** A body chunk, framed as a chunk when `chunked`. */
  addChunk(b: Buffer, chunked: boolean): void {
    if (!chunked) {
      this.add(b);
      return;
    }
    this.add(chunkHeader(b.length));
    this.add(b);
    this.add(CRLF);
  }

  /**
   * Adds every chunk `body` has queued already (framed when `chunked`), each passed to
   * `count` first; true when the body ended (the caller then adds its last chunk).
   */
  addQueued(body: QueuedBody, chunked: boolean, count: (b: Buffer) => void): boolean {
    for (;;) {
      const b = body.tryRead();
      if (b === undefined) return false;
      if (b === null) return true;
      if (b.length === 0) continue;
      count(b);
      this.addChunk(b, chunked);
    }
  }

  /** Writes everything collected; the socket's write() result (false: wait for 'drain'). */
  flush(s: Writable): boolean {
    const head = this.head;
    const parts = this.parts;
    if (parts.length === 0) return s.write(head, 'latin1');
    if (this.bytes <= COALESCE_MAX_BYTES) {
      // latin1: the head's byte length is its character count
      const out = Buffer.allocUnsafe(head.length + this.bytes);
      let off = out.write(head, 0, 'latin1');
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]!;
        out.set(p, off);
        off += p.length;
      }
      return s.write(out);
    }
    s.cork();
    let ok = head === '' ? true : s.write(head, 'latin1');
    for (let i = 0; i < parts.length; i++) ok = s.write(parts[i]!);
    s.uncork();
    return ok;
  }
}

/** One chunk of a chunked body as one Buffer ("<hex>\r\n" + bytes + "\r\n") when small. */
export function writeChunk(s: Writable, b: Buffer): boolean {
  if (b.length > COALESCE_MAX_BYTES) {
    s.cork();
    s.write(chunkHeader(b.length));
    s.write(b);
    const ok = s.write(CRLF);
    s.uncork();
    return ok;
  }
  const size = b.length.toString(16) + '\r\n';
  const out = Buffer.allocUnsafe(size.length + b.length + 2);
  let off = out.write(size, 0, 'latin1');
  out.set(b, off);
  off += b.length;
  out[off] = 13;
  out[off + 1] = 10;
  return s.write(out);
}

/**
 * Trailer section after the last chunk: "0\r\n", trailer lines, "\r\n". Fields not allowed
 * in trailers (Content-Length, Host, Authorization, …, see allowedInTrailers) are dropped
 * here, at the hop, in both directions; the others go as they came, in their order.
 */
export function serializeLastChunk(trailers: readonly RawHeader[] | null): Buffer {
  if (trailers === null || trailers.length === 0) return LAST_CHUNK;
  let s = '0\r\n';
  for (const t of trailers) if (allowedInTrailers(t.name)) s += t.name + ': ' + t.value + '\r\n';
  return s.length === 3 ? LAST_CHUNK : Buffer.from(s + '\r\n', 'latin1');
}

export const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');
export const CRLF = Buffer.from('\r\n', 'latin1');

/** "<hex size>\r\n" for a chunk of `n` bytes. */
export function chunkHeader(n: number): Buffer {
  return Buffer.from(n.toString(16) + '\r\n', 'latin1');
}
