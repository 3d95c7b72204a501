// Flag values shared by the subcommands: durations like `100ms`, `5s`, `1m`.

/** Parses `100ms`, `10s`, `1.5s`, `2m` into milliseconds; throws naming the flag. */
export function parseDurationFlag(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(value.trim());
  if (m === null) throw new Error(`invalid ${flag} "${value}": expected a duration like 100ms, 10s or 1m`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}
