// Prometheus durations (`30s`, `5m`, `1h30m`, `1d`) read from flags and written into rules:
// read once at the boundary into milliseconds, written back in the largest exact units.

/** A duration that Prometheus would not accept; the message names the option. */
export class DurationError extends Error {
  override name = 'DurationError';
}

const UNITS: ReadonlyArray<readonly [string, number]> = [
  ['w', 7 * 86_400_000], ['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1],
];
const UNIT_MS: ReadonlyMap<string, number> = new Map(UNITS);
const DURATION = /^(?:\d+(?:ms|s|m|h|d|w))+$/;

/** Parses `1h30m`, `10s`, `1d` (Prometheus's syntax, units ms s m h d w) into milliseconds. */
export function parsePromDuration(value: string, option: string): number {
  const v = value.trim();
  if (!DURATION.test(v)) throw new DurationError(`${option}: "${value}" is not a duration; expected e.g. 30s, 5m, 1h30m or 1d`);
  let ms = 0;
  for (const m of v.matchAll(/(\d+)(ms|s|m|h|d|w)/g)) ms += Number(m[1]) * UNIT_MS.get(m[2]!)!;
  if (ms <= 0) throw new DurationError(`${option}: "${value}" must be longer than 0`);
  return ms;
}

/** Milliseconds as a Prometheus duration in the largest exact units: 90000 → `1m30s`. */
export function formatPromDuration(ms: number): string {
  if (!Number.isInteger(ms) || ms <= 0) throw new DurationError(`cannot write ${ms} ms as a Prometheus duration`);
  let rest = ms;
  let out = '';
  for (const [unit, size] of UNITS) {
    if (rest < size) continue;
    out += `${Math.floor(rest / size)}${unit}`;
    rest %= size;
  }
  return out;
}
