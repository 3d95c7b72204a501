// Field readers shared by the compilers: durations, percentages, typed errors naming the
// resource and field at fault.

/** An invalid xDS resource; the message (resource, field, what is expected) is the NACK reason. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A proto3 JSON duration ("1.5s") in milliseconds; undefined when absent. */
export function durationMs(v: unknown, at: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object' && v !== null && ('seconds' in v || 'nanos' in v)) {
    const o = v as { seconds?: number; nanos?: number };
    return Number(o.seconds ?? 0) * 1000 + Number(o.nanos ?? 0) / 1e6;
  }
  const m = typeof v === 'string' ? /^(-?\d+(?:\.\d+)?)s$/.exec(v) : null;
  if (!m) throw new ConfigError(`${at}: expected a duration such as "1.5s", got ${JSON.stringify(v)}`);
  const ms = Number(m[1]) * 1000;
  if (ms < 0) throw new ConfigError(`${at}: a duration must not be negative`);
  return ms;
}

/**
 * An Envoy FractionalPercent ({numerator, denominator: HUNDRED|TEN_THOUSAND|MILLION}) or a
 * RuntimeFractionalPercent's default value, as a probability in 0..1.
 */
export function fraction(v: unknown, absent = 1): number {
  if (v === undefined || v === null) return absent;
  const o = v as { numerator?: number; denominator?: string; defaultValue?: unknown };
  if (o.defaultValue !== undefined) return fraction(o.defaultValue, absent);
  const d = o.denominator === 'MILLION' ? 1_000_000 : o.denominator === 'TEN_THOUSAND' ? 10_000 : 100;
  return Math.min(1, Number(o.numerator ?? 0) / d);
}
