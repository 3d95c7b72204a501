// What tracers already carry from hop to hop, read and written by the lanes filter: the trace id
// of a request in every common format (W3C, B3, SkyWalking, Jaeger, Datadog, x-request-id), and
// a lane key in the carriers tracers forward untouched (W3C baggage and tracestate, SkyWalking
// sw8-correlation, Jaeger `uberctx-`, OpenTracing `ot-baggage-` headers).
import { randomFillSync } from 'node:crypto';
import type { RawHeader } from '../../http/index.ts';

/** The lane key in every carrier. */
export const CARRIER_KEY = 'sextant-lane';
const UBER_LANE = `uberctx-${CARRIER_KEY}`;
const OT_LANE = `ot-baggage-${CARRIER_KEY}`;

/** Longest trace id value considered (x-request-id values are free-form). */
const MAX_ID = 128;
/** Longest carrier header parsed for a lane key. */
const MAX_CARRIER = 8192;

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16_OR_32 = /^(?:[0-9a-f]{16}|[0-9a-f]{32})$/;
const ZERO32 = '00000000000000000000000000000000';

/**
 * A 128-bit hex trace id in one namespace (`t:`) whatever carried it: W3C, B3 and Jaeger ids
 * are hex (64-bit ones zero-padded), Datadog's decimal id is its low 64 bits, so a tracer that
 * takes in `traceparent` and sends `b3` (or the reverse) is still followed.
 */
function hexKey(id: string): string | undefined {
  const lower = id.toLowerCase();
  if (!/^[0-9a-f]{1,32}$/.test(lower)) return undefined;
  const padded = lower.length === 32 ? lower : ZERO32.slice(lower.length) + lower;
  return padded === ZERO32 ? undefined : `t:${padded}`;
}

function traceparentKey(v: string): string | undefined {
  // version-traceid-parentid-flags; the trace id alone (the parent part changes every hop)
  if (v.length < 55 || v.charCodeAt(2) !== 45 || v.charCodeAt(35) !== 45) return undefined;
  const id = v.slice(3, 35).toLowerCase();
  return HEX32.test(id) && id !== ZERO32 ? `t:${id}` : undefined;
}

function b3SingleKey(v: string): string | undefined {
  const dash = v.indexOf('-');
  const id = (dash < 0 ? v : v.slice(0, dash)).toLowerCase();
  return HEX16_OR_32.test(id) ? hexKey(id) : undefined;
}

function sw8Key(v: string): string | undefined {
  // sample-traceId(base64)-segmentId(base64)-spanId-…
  const parts = v.split('-', 3);
  if (parts.length < 3 || parts[1] === '' || parts[1]!.length > MAX_ID) return undefined;
  return `sw:${parts[1]}`;
}

function uberKey(v: string): string | undefined {
  const s = v.includes('%') ? safeDecode(v) : v;
  const colon = s.indexOf(':');
  return colon > 0 ? hexKey(s.slice(0, colon)) : undefined;
}

function datadogKey(v: string): string | undefined {
  if (!/^\d{1,20}$/.test(v)) return undefined;
  const n = BigInt(v);
  return n === 0n || n >= 1n << 64n ? undefined : hexKey(n.toString(16));
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Trace-id headers in the order an outbound request's ids are looked up. */
const TRACE_HEADERS: ReadonlyArray<readonly [string, (v: string) => string | undefined]> = [
  ['traceparent', traceparentKey],
  ['x-b3-traceid', hexKeyIfB3],
  ['b3', b3SingleKey],
  ['sw8', sw8Key],
  ['uber-trace-id', uberKey],
  ['x-datadog-trace-id', datadogKey],
  ['x-request-id', (v) => (v.length > 0 && v.length <= MAX_ID ? `rid:${v}` : undefined)],
];

function hexKeyIfB3(v: string): string | undefined {
  return HEX16_OR_32.test(v.toLowerCase()) ? hexKey(v) : undefined;
}

const TRACE_INDEX = new Map(TRACE_HEADERS.map(([n], i) => [n, i]));
const TRACE_FIRST = new Set(TRACE_HEADERS.map(([n]) => n.charCodeAt(0)));

/**
 * The request's trace-id keys, in lookup order (traceparent first, x-request-id last), one per
 * format, duplicates removed (a W3C and a B3 id of the same trace are one key).
 */
export function traceKeys(headers: readonly RawHeader[]): string[] {
  let found: (string | undefined)[] | undefined;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    const n = h.name.length;
    // cheap filters before lower-casing: 2..18 characters, starting with b, s, t, u or x
    if (n < 2 || n > 18 || !TRACE_FIRST.has(h.name.charCodeAt(0) | 0x20)) continue;
    const idx = TRACE_INDEX.get(h.name.toLowerCase());
    if (idx === undefined) continue;
    found ??= [];
    if (found[idx] !== undefined) continue; // the first line of a header counts
    found[idx] = TRACE_HEADERS[idx]![1](h.value.trim()) ?? '';
  }
  if (found === undefined) return [];
  const out: string[] = [];
  for (const k of found) if (k !== undefined && k !== '' && !out.includes(k)) out.push(k);
  return out;
}

/** Whether the request carries a trace id other than x-request-id (a tracer is at work). */
export function hasTracerId(keys: readonly string[]): boolean {
  for (const k of keys) if (!k.startsWith('rid:')) return true;
  return false;
}

/** A new W3C traceparent (sampled), for a laned request that arrives without any trace id. */
export function mintTraceparent(): string {
  const b = randomFillSync(Buffer.allocUnsafe(24));
  return `00-${b.toString('hex', 0, 16)}-${b.toString('hex', 16, 24)}-01`;
}

// ---------------------------------------------------------------- carriers

function listMember(list: string, key: string, sep: '=' | ':'): string | undefined {
  if (list.length > MAX_CARRIER) return undefined;
  let start = 0;
  while (start <= list.length) {
    let end = list.indexOf(',', start);
    if (end < 0) end = list.length;
    const member = list.slice(start, end);
    const eq = member.indexOf(sep);
    if (eq > 0 && member.slice(0, eq).trim() === key) {
      let value = member.slice(eq + 1);
      const semi = value.indexOf(';'); // baggage member properties
      if (semi >= 0) value = value.slice(0, semi);
      return value.trim();
    }
    start = end + 1;
  }
  return undefined;
}

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

const CARRIER_KEY_B64 = b64(CARRIER_KEY);

/** The lane a carrier names, in order: baggage, tracestate, sw8-correlation, uberctx-, ot-baggage-. */
export function carrierLane(headers: readonly RawHeader[]): string | undefined {
  let baggage: string | undefined;
  let tracestate: string | undefined;
  let sw8c: string | undefined;
  let uber: string | undefined;
  let ot: string | undefined;
  for (const h of headers) {
    const n = h.name.length;
    if (n !== 7 && n !== 10 && n !== 15 && n !== UBER_LANE.length && n !== OT_LANE.length) continue;
    const lower = h.name.toLowerCase();
    if (lower === 'baggage') baggage ??= listMember(h.value, CARRIER_KEY, '=');
    else if (lower === 'tracestate') tracestate ??= listMember(h.value, CARRIER_KEY, '=');
    else if (lower === 'sw8-correlation') {
      const v = listMember(h.value, CARRIER_KEY_B64, ':');
      if (v !== undefined) sw8c ??= Buffer.from(v, 'base64').toString('utf8');
    } else if (lower === UBER_LANE) uber ??= h.value.trim();
    else if (lower === OT_LANE) ot ??= h.value.trim();
  }
  const v = baggage ?? tracestate ?? sw8c ?? uber ?? ot;
  return v === undefined || v === '' ? undefined : safeDecode(v);
}

function withoutMember(list: string, key: string, sep: '=' | ':'): string {
  return list.split(',').filter((m) => {
    const eq = m.indexOf(sep);
    return !(eq > 0 && m.slice(0, eq).trim() === key);
  }).join(',');
}

// Header lines are replaced, never edited: the line objects may be shared with the request as received.
function setListHeader(headers: RawHeader[], name: string, member: string, key: string, sep: '=' | ':', first: boolean): void {
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    if (h.name.length !== name.length || h.name.toLowerCase() !== name) continue;
    const rest = withoutMember(h.value, key, sep).trim();
    headers[i] = { name: h.name, value: rest === '' ? member : first ? `${member},${rest}` : `${rest},${member}` };
    return;
  }
  headers.push({ name, value: member });
}

/**
 * Writes the lane into the carriers handed to the app (the list is the router's own copy; its
 * lines are replaced, not edited). Baggage always (OpenTelemetry forwards it); tracestate next to a traceparent,
 * sw8-correlation next to sw8, uberctx- next to uber-trace-id, ot-baggage- next to an
 * OpenTracing or Datadog id: whatever the app's tracer forwards carries the lane on.
 */
export function writeCarriers(headers: RawHeader[], lane: string): void {
  let w3c = false;
  let sw8 = false;
  let jaeger = false;
  let ot = false;
  for (const h of headers) {
    const lower = h.name.toLowerCase();
    if (lower === 'traceparent') w3c = true;
    else if (lower === 'sw8') sw8 = true;
    else if (lower === 'uber-trace-id') jaeger = true;
    else if (lower.startsWith('ot-tracer-') || lower === 'x-datadog-trace-id') ot = true;
  }
  const value = encodeURIComponent(lane);
  setListHeader(headers, 'baggage', `${CARRIER_KEY}=${value}`, CARRIER_KEY, '=', false);
  if (w3c) setListHeader(headers, 'tracestate', `${CARRIER_KEY}=${lane}`, CARRIER_KEY, '=', true);
  if (sw8) setListHeader(headers, 'sw8-correlation', `${CARRIER_KEY_B64}:${b64(lane)}`, CARRIER_KEY_B64, ':', false);
  if (jaeger) setSingle(headers, UBER_LANE, value);
  if (ot) setSingle(headers, OT_LANE, value);
}

function setSingle(headers: RawHeader[], name: string, value: string): void {
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    if (h.name.length === name.length && h.name.toLowerCase() === name) {
      headers[i] = { name: h.name, value };
      return;
    }
  }
  headers.push({ name, value });
}

/** Removes the lane from every carrier (a caller outside the mesh may not pick lanes). */
export function stripCarriers(headers: RawHeader[]): RawHeader[] {
  const out: RawHeader[] = [];
  for (const h of headers) {
    const lower = h.name.toLowerCase();
    if (lower === UBER_LANE || lower === OT_LANE) continue;
    if (lower === 'baggage' || lower === 'tracestate' || lower === 'sw8-correlation') {
      const key = lower === 'sw8-correlation' ? CARRIER_KEY_B64 : CARRIER_KEY;
      const rest = withoutMember(h.value, key, lower === 'sw8-correlation' ? ':' : '=').trim();
      if (rest !== '') out.push(rest === h.value ? h : { name: h.name, value: rest });
      continue;
    }
    out.push(h);
  }
  return out;
}
