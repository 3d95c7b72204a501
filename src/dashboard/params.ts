// The monitoring API's query parameters, checked once at the boundary: each mistake is a 400
// whose message and `parameter` name the parameter and say what is expected.
import type { Origin, Reporter } from '../telemetry/index.ts';

/** An answer other than 200, with the JSON body `{error, parameter?}`. */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  /** The query parameter at fault, when there is one. */
  readonly parameter: string | undefined;
  readonly headers: Readonly<Record<string, string>>;

  constructor(status: number, message: string, options: { parameter?: string | undefined; headers?: Record<string, string> } = {}) {
    super(message);
    this.status = status;
    this.parameter = options.parameter;
    this.headers = options.headers ?? {};
  }

  body(): { error: string; parameter?: string } {
    return this.parameter === undefined ? { error: this.message } : { error: this.message, parameter: this.parameter };
  }
}

export function badParameter(parameter: string, message: string): ApiError {
  return new ApiError(400, `${parameter}: ${message}`, { parameter });
}

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };
/** The longest window or look-back the API accepts (a year; the stores keep far less). */
export const MAX_SPAN_MS = 366 * 86_400_000;
/** Longest value of any parameter: every value is short, a long one is a mistake or an attack. */
const MAX_VALUE_LENGTH = 2048;

/** `30s`, `5m`, `1h30m`, `7d` → ms. */
export function parseDuration(value: string, parameter: string): number {
  const v = value.trim();
  if (!/^(?:\d+(?:ms|s|m|h|d|w))+$/.test(v)) throw badParameter(parameter, `"${clip(value)}" is not a duration; expected e.g. 30s, 5m, 1h or 7d`);
  let ms = 0;
  for (const m of v.matchAll(/(\d+)(ms|s|m|h|d|w)/g)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  if (ms <= 0) throw badParameter(parameter, `"${value}" must be longer than 0`);
  if (ms > MAX_SPAN_MS) throw badParameter(parameter, `"${value}" is longer than the 366 days the API looks back at most`);
  return ms;
}

/** A time: ms since the epoch (digits) or RFC 3339 (`2026-01-02T03:04:05Z`). */
export function parseTime(value: string, parameter: string): number {
  const v = value.trim();
  if (/^\d{1,15}$/.test(v)) return Number(v);
  if (/^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i.test(v)) {
    const t = Date.parse(v);
    if (Number.isFinite(t)) return t;
  }
  throw badParameter(parameter, `"${clip(value)}" is not a time; expected RFC 3339 (2026-01-02T15:04:05Z) or milliseconds since the epoch`);
}

function clip(v: string): string {
  return v.length > 80 ? `${v.slice(0, 80)}…` : v;
}

/** A request's query parameters: each read at most once, unknown and repeated ones refused. */
export class Params {
  private readonly values = new Map<string, string>();

  constructor(search: URLSearchParams, allowed: readonly string[]) {
    const known = new Set(allowed);
    for (const [k, v] of search) {
      if (!known.has(k)) throw badParameter(k, `unknown parameter; this endpoint takes ${allowed.length === 0 ? 'none' : allowed.join(', ')}`);
      if (this.values.has(k)) throw badParameter(k, 'given more than once');
      if (v.length > MAX_VALUE_LENGTH) throw badParameter(k, `longer than ${MAX_VALUE_LENGTH} characters`);
      this.values.set(k, v);
    }
  }

  /** The value, undefined when absent; an empty value is absent too (`?service=` from a form). */
  string(name: string): string | undefined {
    const v = this.values.get(name);
    return v === undefined || v === '' ? undefined : v;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(v)) throw badParameter(name, `"${clip(v)}" is not one of ${allowed.join(', ')}`);
    return v as T;
  }

  integer(name: string, min: number, max: number): number | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    if (!/^\d{1,9}$/.test(v) || Number(v) < min || Number(v) > max) throw badParameter(name, `"${clip(v)}" must be a whole number from ${min} to ${max}`);
    return Number(v);
  }

  duration(name: string): number | undefined {
    const v = this.string(name);
    return v === undefined ? undefined : parseDuration(v, name);
  }

  time(name: string): number | undefined {
    const v = this.string(name);
    return v === undefined ? undefined : parseTime(v, name);
  }

  /** `window=5m` ending now (default `dflt`). */
  window(now: number, dflt: number): { from: number; to: number } {
    const ms = this.duration('window') ?? dflt;
    return { from: now - ms, to: now };
  }

  /**
   * `from`/`to` (times) or `since` (a look-back from now); at most one of from and since; `to`
   * defaults to now, the start to `to` minus `dflt`.
   */
  range(now: number, dflt: number): { from: number; to: number } {
    const since = this.duration('since');
    const from = this.time('from');
    if (since !== undefined && from !== undefined) throw badParameter('since', 'give either since or from, not both');
    const to = this.time('to') ?? now;
    const start = from ?? (since !== undefined ? now - since : to - dflt);
    if (start >= to) throw badParameter(from !== undefined ? 'from' : 'since', `the window must start before it ends (${new Date(to).toISOString()})`);
    if (to - start > MAX_SPAN_MS) throw badParameter(from !== undefined ? 'from' : 'since', 'the window is longer than the 366 days the API looks back at most');
    return { from: start, to };
  }
}

export const ORIGINS: readonly Origin[] = ['app', 'proxy', 'client'];
export const REPORTERS: readonly Reporter[] = ['source', 'destination', 'gateway'];
export const CODE_CLASSES = ['2xx', '3xx', '4xx', '5xx'] as const;
