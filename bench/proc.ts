// What the benchmarks read from /proc (Linux) and the summaries they print: the CPU time of
// processes and of the machine, a process's children, medians and percentiles. One copy, so
// every benchmark counts CPU the same way.
import { readFileSync } from 'node:fs';

/** USER_HZ: /proc reports CPU time in clock ticks of 10 ms on Linux. */
export const CLOCK_TICKS_PER_SECOND = 100;

/** The direct children of a process (none when it has exited). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** User and system CPU time (utime, stime) of the processes, in seconds; exited ones count nothing. */
export function cpuTimes(pids: readonly number[]): { user: number; system: number } {
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // after the command in parentheses; utime and stime are fields 14 and 15 (1-based)
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      user += Number(f[11]);
      system += Number(f[12]);
    } catch { /* exited */ }
  }
  return { user: user / CLOCK_TICKS_PER_SECOND, system: system / CLOCK_TICKS_PER_SECOND };
}

/** utime + stime of the processes, in seconds. */
export function cpuSeconds(pids: readonly number[]): number {
  const t = cpuTimes(pids);
  return t.user + t.system;
}

/** utime + stime of one process, in seconds; NaN when it cannot be read (it has exited). */
export function processCpuSeconds(pid: number): number {
  try {
    readFileSync(`/proc/${pid}/stat`);
  } catch {
    return NaN;
  }
  return cpuSeconds([pid]);
}

/** The machine's busy and total CPU time (all CPUs), in seconds, from /proc/stat. */
export function machineCpu(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: (total - idle) / CLOCK_TICKS_PER_SECOND, total: total / CLOCK_TICKS_PER_SECOND };
}

/** The middle value (the upper one of an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
}

/** The nearest-rank `p`th percentile of values sorted ascending; NaN for none. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
