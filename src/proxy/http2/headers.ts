// HTTP/1.1 ↔ HTTP/2 header translation, as Envoy's codecs do it: pseudo-headers carry the
// method, target, authority and status; the headers that describe one HTTP/1 connection
// (Connection and what it names, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade)
// never cross into HTTP/2, where they are malformed (RFC 9113 §8.2.2).
import type { RawHeader, RequestHead, ResponseHead } from '../http/index.ts';
import { reasonPhrase } from '../http/index.ts';
import { allowedInTrailers } from '../http/headers.ts';

// Connection-specific header names, by length then name (one compare for most headers).
function hopByHop(lower: string): boolean {
  switch (lower.length) {
    case 2: return lower === 'te';
    case 4: return lower === 'host';
    case 7: return lower === 'upgrade';
    case 10: return lower === 'connection' || lower === 'keep-alive';
    case 13: return lower === 'http2-settings';
    case 16: return lower === 'proxy-connection';
    case 17: return lower === 'transfer-encoding';
    default: return false;
  }
}

/** Lower-cased header names a Connection header nominates as hop-by-hop, or null. */
function nominated(headers: readonly RawHeader[]): Set<string> | null {
  let out: Set<string> | null = null;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    if (h.name.length !== 10 || h.name.toLowerCase() !== 'connection') continue;
    for (const part of h.value.split(',')) {
      const t = part.trim().toLowerCase();
      if (t !== '' && t !== 'close' && t !== 'keep-alive') (out ??= new Set()).add(t);
    }
  }
  return out;
}

/**
 * A downstream HTTP/2 request's header block (Node's raw form: name, value, …) as the head
 * the router reads: `:authority` becomes `Host` (first), `:path` the target; cookies split
 * across fields are joined with "; " (RFC 9113 §8.2.3) so an HTTP/1 upstream gets one line.
 */
export function requestHeadFromH2(raw: readonly string[]): RequestHead {
  let method = 'GET';
  let target = '';
  let authority: string | undefined;
  const headers: RawHeader[] = [];
  let cookie: RawHeader | undefined;
  let host = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':method') method = value;
      else if (name === ':path') target = value;
      else if (name === ':authority') authority = value;
      continue;
    }
    if (name === 'cookie') {
      if (cookie === undefined) headers.push((cookie = { name, value }));
      else cookie.value += '; ' + value;
      continue;
    }
    if (name === 'host') host = true;
    headers.push({ name, value });
  }
  // :authority wins over a host field (RFC 9113 §8.3.1)
  if (authority !== undefined) {
    if (host) {
      for (let i = 0; i < headers.length; i++) if (headers[i]!.name === 'host') headers.splice(i--, 1);
    }
    headers.unshift({ name: 'host', value: authority });
  }
  if (target === '' && method === 'OPTIONS') target = '*';
  return { method, target, version: '1.1', headers };
}

/**
 * The header block of an upstream HTTP/2 request (raw form) for `head`: pseudo-headers
 * first, then every other field lower-cased, in order, without the connection-specific
 * ones (`te` only as `trailers`). `authority` is used when the head has no Host.
 */
export function h2RequestHeaders(head: RequestHead, authority: string): string[] {
  const hs = head.headers;
  const nom = nominated(hs);
  let host = authority;
  const rest: string[] = [];
  for (let i = 0; i < hs.length; i++) {
    const h = hs[i]!;
    const lower = h.name.toLowerCase();
    if (hopByHop(lower)) {
      if (lower === 'host') host = h.value;
      else if (lower === 'te' && h.value.trim().toLowerCase() === 'trailers') rest.push('te', 'trailers');
      continue;
    }
    if (nom !== null && nom.has(lower)) continue;
    rest.push(lower, h.value);
  }
  const out = [':method', head.method, ':scheme', 'http', ':authority', host, ':path', head.target];
  for (let i = 0; i < rest.length; i++) out.push(rest[i]!);
  return out;
}

/** An upstream HTTP/2 response's header block (raw form) as a response head. */
export function responseHeadFromH2(raw: readonly string[]): ResponseHead {
  let status = 0;
  const headers: RawHeader[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (name === ':status') {
      status = Number(raw[i + 1]);
      continue;
    }
    if (name.charCodeAt(0) === 58) continue;
    headers.push({ name, value: raw[i + 1]! });
  }
  return { status, reason: reasonPhrase(status), version: '1.1', headers };
}

/**
 * A response head as a downstream HTTP/2 header block (raw form): `:status`, then the
 * fields lower-cased without the connection-specific ones.
 */
export function h2ResponseHeaders(head: ResponseHead): string[] {
  const hs = head.headers;
  const nom = nominated(hs);
  const out = [':status', String(head.status)];
  for (let i = 0; i < hs.length; i++) {
    const h = hs[i]!;
    const lower = h.name.toLowerCase();
    if (hopByHop(lower) || (nom !== null && nom.has(lower))) continue;
    out.push(lower, h.value);
  }
  return out;
}

/** Node's raw header list as RawHeaders (trailers: pseudo-headers never appear there). */
export function rawToHeaders(raw: readonly string[]): RawHeader[] {
  const out: RawHeader[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push({ name: raw[i]!, value: raw[i + 1]! });
  return out;
}

/**
 * Trailers as Node's sendTrailers() takes them (an object; repeated names as arrays),
 * without the fields a trailer section may not carry (RFC 9110 §6.5.1).
 */
export function h2Trailers(trailers: readonly RawHeader[] | null): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  if (trailers === null) return out;
  for (const t of trailers) {
    const name = t.name.toLowerCase();
    if (name.charCodeAt(0) === 58 || hopByHop(name) || !allowedInTrailers(name)) continue;
    const prev = out[name];
    if (prev === undefined) out[name] = t.value;
    else if (Array.isArray(prev)) prev.push(t.value);
    else out[name] = [prev, t.value];
  }
  return out;
}
