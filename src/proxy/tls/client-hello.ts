// Envoy's tls_inspector: the server name (SNI) and the ALPN values a TLS client offers, read
// from its ClientHello before any handshake, so a filter chain can be chosen by them (and a
// passthrough chain can forward the untouched bytes). Only the first handshake message is read,
// across as many records and reads as it takes, up to a bound.

/** The most bytes read to find a ClientHello (Envoy's tls_inspector reads up to 64 KiB; a real hello is well under 16). */
export const CLIENT_HELLO_MAX_BYTES = 64 * 1024;

export interface ClientHello {
  /** The server_name extension's host name, lower-cased; undefined when none was sent. */
  sni: string | undefined;
  /** The application_layer_protocol_negotiation extension's values, in the client's order. */
  alpn: string[];
}

export type ClientHelloResult = ClientHello | 'incomplete' | 'invalid';

/**
 * Reads the ClientHello from the bytes received so far: `incomplete` when more are needed,
 * `invalid` when they are not a TLS ClientHello (or exceed the bound).
 */
export function parseClientHello(data: Buffer): ClientHelloResult {
  // Handshake bytes may span records: gather the record bodies in order.
  const bodies: Buffer[] = [];
  let total = 0;
  let off = 0;
  let needed = -1;
  while (off + 5 <= data.length) {
    if (data[off] !== 0x16 || data[off + 1] !== 0x03) return 'invalid';
    const len = data.readUInt16BE(off + 3);
    if (len === 0 || len > 16384 + 2048) return 'invalid';
    if (off + 5 + len > data.length) {
      bodies.push(data.subarray(off + 5)); // a partial record: what it holds so far
      break;
    }
    const body = data.subarray(off + 5, off + 5 + len);
    bodies.push(body);
    total += len;
    off += 5 + len;
    if (needed < 0 && total >= 4) needed = handshakeLength(bodies);
    if (needed >= 0 && total >= needed) break;
  }
  if (data.length > CLIENT_HELLO_MAX_BYTES) return 'invalid';
  if (bodies.length === 0) return data.length > 0 && data[0] !== 0x16 ? 'invalid' : 'incomplete';
  const hs = bodies.length === 1 ? bodies[0]! : Buffer.concat(bodies);
  if (hs.length < 4) return 'incomplete';
  if (hs[0] !== 0x01) return 'invalid'; // not a ClientHello
  const msgLen = hs.readUIntBE(1, 3);
  if (msgLen + 4 > CLIENT_HELLO_MAX_BYTES) return 'invalid';
  if (hs.length < 4 + msgLen) return 'incomplete';
  return readHello(hs.subarray(4, 4 + msgLen)) ?? 'invalid';
}

function handshakeLength(bodies: readonly Buffer[]): number {
  const head = Buffer.concat(bodies).subarray(0, 4);
  return 4 + head.readUIntBE(1, 3);
}

function readHello(b: Buffer): ClientHello | undefined {
  let p = 0;
  const need = (n: number): boolean => p + n <= b.length;
  if (!need(2 + 32)) return undefined;
  p += 2 + 32; // legacy_version, random
  if (!need(1)) return undefined;
  p += 1 + b[p]!; // session id
  if (!need(2)) return undefined;
  p += 2 + b.readUInt16BE(p); // cipher suites
  if (!need(1)) return undefined;
  p += 1 + b[p]!; // compression methods
  const out: ClientHello = { sni: undefined, alpn: [] };
  if (p === b.length) return out; // no extensions
  if (!need(2)) return undefined;
  const extEnd = p + 2 + b.readUInt16BE(p);
  p += 2;
  if (extEnd > b.length) return undefined;
  while (p + 4 <= extEnd) {
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    const start = p + 4;
    const end = start + len;
    if (end > extEnd) return undefined;
    if (type === 0x0000) out.sni = readServerName(b.subarray(start, end));
    else if (type === 0x0010) {
      const alpn = readAlpn(b.subarray(start, end));
      if (alpn === undefined) return undefined;
      out.alpn = alpn;
    }
    p = end;
  }
  return out;
}

function readServerName(e: Buffer): string | undefined {
  if (e.length < 2) return undefined;
  const listEnd = Math.min(e.length, 2 + e.readUInt16BE(0));
  let p = 2;
  while (p + 3 <= listEnd) {
    const type = e[p]!;
    const len = e.readUInt16BE(p + 1);
    if (p + 3 + len > listEnd) return undefined;
    if (type === 0) return e.toString('latin1', p + 3, p + 3 + len).toLowerCase();
    p += 3 + len;
  }
  return undefined;
}

function readAlpn(e: Buffer): string[] | undefined {
  if (e.length < 2) return undefined;
  const end = 2 + e.readUInt16BE(0);
  if (end > e.length) return undefined;
  const out: string[] = [];
  let p = 2;
  while (p < end) {
    const len = e[p]!;
    if (len === 0 || p + 1 + len > end) return undefined;
    out.push(e.toString('latin1', p + 1, p + 1 + len));
    p += 1 + len;
  }
  return out;
}

/**
 * Envoy's server_names match of a filter chain: exact names first, then the longest wildcard
 * suffix (`*.example.com` matches `a.example.com`, not `example.com`). Returns the match's
 * rank (higher is more specific), -1 when the chain's names do not match, 0 when it has none.
 */
export function serverNameRank(names: readonly string[], sni: string | undefined): number {
  if (names.length === 0) return 0;
  if (sni === undefined || sni === '') return -1;
  let best = -1;
  for (const n of names) {
    const name = n.toLowerCase();
    if (name === sni) return 1_000_000;
    if (name.startsWith('*.') && sni.length > name.length - 1 && sni.endsWith(name.slice(1))) best = Math.max(best, name.length);
  }
  return best;
}
