// The overload benchmark (the protocol of the adaptive-limits brief, section 4), in one
// invocation: every arm (no limiter, static limits tuned and stale, Envoy's gradient
// controller at p50 and p90, Sextant, Sextant with its pilot killed, a Slime-style 30 s switch)
// against the same M/M/c upstream, seed and schedule in virtual time (bench/overload/sim-arms.ts),
// each over several seeds (median, min–max); then one short run of Sextant with real processes
// (bench/overload/real.ts). Writes bench/results/overload.json and prints the tables.
//
//   node bench/overload/run.ts [--quick] [--repeats 3] [--phase-s 40] [--real-phase-s 12] [--no-real] [--out overload.json]
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { arms, runArm, MU, SEXTANT_RULE, SEXTANT_PERCENTILE, WORKERS, MEAN_SERVICE_MS, THRASH, DEADLINE_MS, schedule, type ArmRun, type PhaseMetrics } from './sim-arms.ts';
import { runReal, type RealResult } from './real.ts';

const argv = process.argv.slice(2);
const has = (k: string): boolean => argv.includes(`--${k}`);
const val = (k: string, d: number): number => {
  const i = argv.indexOf(`--${k}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const QUICK = has('quick');
const REPEATS = val('repeats', 3);
const PHASE_S = val('phase-s', QUICK ? 15 : 40);
const REAL_PHASE_S = val('real-phase-s', QUICK ? 8 : 12);
const outIdx = argv.indexOf('--out');
const OUT = outIdx >= 0 ? argv[outIdx + 1]! : 'overload.json';

interface Stat { median: number | null; min: number | null; max: number | null }

function stat(xs: (number | null)[]): Stat {
  const a = xs.filter((x): x is number => x !== null && Number.isFinite(x)).sort((x, y) => x - y);
  if (a.length === 0) return { median: null, min: null, max: null };
  const m = a.length % 2 === 1 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2;
  return { median: Math.round(m * 1000) / 1000, min: a[0]!, max: a[a.length - 1]! };
}

type PhaseStats = { phase: string } & { [K in Exclude<keyof PhaseMetrics, 'phase'>]: Stat };

function aggregate(runs: ArmRun[]): { phases: PhaseStats[]; falseShedding: Stat; unloadedP99Ms: Stat; limitCv: Stat; limitReversalsPerMin: Stat; pushesPerMin: Stat; lapseAfterKillS: Stat; simulatedRequests: number } {
  const phases = runs[0]!.phases.map((p, i) => {
    const of = (k: Exclude<keyof PhaseMetrics, 'phase'>): Stat => stat(runs.map((r) => r.phases[i]![k]));
    return {
      phase: p.phase, goodputRatio: of('goodputRatio'), admittedP99Ms: of('admittedP99Ms'), shedFraction: of('shedFraction'),
      tier0Success: of('tier0Success'), convergeS: of('convergeS'), recoverS: of('recoverS'), overshoot: of('overshoot'),
    };
  });
  return {
    phases,
    falseShedding: stat(runs.map((r) => r.falseShedding)),
    unloadedP99Ms: stat(runs.map((r) => r.unloadedP99Ms)),
    limitCv: stat(runs.map((r) => r.limitCv)),
    limitReversalsPerMin: stat(runs.map((r) => r.limitReversalsPerMin)),
    pushesPerMin: stat(runs.map((r) => r.pushesPerMin)),
    lapseAfterKillS: stat(runs.map((r) => r.lapseAfterKillS)),
    simulatedRequests: runs.reduce((a, r) => a + r.simulatedRequests, 0),
  };
}

const fmt = (s: Stat, digits = 2): string => (s.median === null ? '—' : s.median >= 10_000 ? '>10 s' : s.median.toFixed(digits));

async function main(): Promise<void> {
  const started = Date.now();
  const results: Record<string, ReturnType<typeof aggregate>> = {};
  for (const arm of arms()) {
    const t0 = performance.now();
    const runs: ArmRun[] = [];
    for (let seed = 1; seed <= REPEATS; seed++) runs.push(runArm(arm, seed, PHASE_S * 1000));
    results[arm.name] = aggregate(runs);
    process.stderr.write(`${arm.name}: ${REPEATS} runs in ${Math.round(performance.now() - t0)} ms\n`);
  }
  let real: RealResult | { error: string } | undefined;
  if (!has('no-real')) {
    try {
      real = await runReal(REAL_PHASE_S);
    } catch (err) {
      real = { error: err instanceof Error ? err.message : String(err) };
    }
  }

  // the goals of the issue, for Sextant (A3) against the anchors
  const a3 = results['A3 sextant']!;
  const a2 = results['A2 gradient p50']!;
  const ph = (r: ReturnType<typeof aggregate>, name: string): PhaseStats => r.phases.find((p) => p.phase === name)!;
  const unloaded = a3.unloadedP99Ms.median ?? NaN;
  const gr2 = ph(a3, '2μ').goodputRatio.median ?? 0;
  const gr5 = ph(a3, '5μ').goodputRatio.median ?? 0;
  const p99at5 = ph(a3, '5μ').admittedP99Ms.median ?? Infinity;
  const a2p99at5 = ph(a2, '5μ').admittedP99Ms.median ?? Infinity;
  const tc = Math.max(ph(a3, '2μ').convergeS.median ?? Infinity, ph(a3, '5μ').convergeS.median ?? Infinity);
  const goals = [
    { goal: 'goodput ratio ≥ 0.90 at 2μ', value: gr2, met: gr2 >= 0.9 },
    { goal: 'goodput ratio ≥ 0.90 at 5μ', value: gr5, met: gr5 >= 0.9 },
    { goal: 'goodput ratio at 2μ and 5μ ≥ the gradient limiter\'s', value: [ph(a2, '2μ').goodputRatio.median, ph(a2, '5μ').goodputRatio.median], met: gr2 >= (ph(a2, '2μ').goodputRatio.median ?? 0) && gr5 >= (ph(a2, '5μ').goodputRatio.median ?? 0) },
    { goal: 'admitted p99 at 5μ ≤ 2 × unloaded p99', value: { p99: p99at5, unloaded }, met: p99at5 <= 2 * unloaded },
    { goal: 'admitted p99 at 5μ ≤ 0.7 × the gradient limiter\'s', value: { p99: p99at5, gradient: a2p99at5 }, met: p99at5 <= 0.7 * a2p99at5 },
    { goal: 'converges within 3 s of an up-step (2μ, 5μ)', value: tc, met: tc <= 3 },
    { goal: 'zero false shedding at half load', value: a3.falseShedding.median, met: a3.falseShedding.median === 0 },
    { goal: 'tier-0 success ≥ 99% at 5μ', value: ph(a3, '5μ').tier0Success.median, met: (ph(a3, '5μ').tier0Success.median ?? 0) >= 0.99 },
    { goal: 'limit CV ≤ 0.10 in steady 5μ', value: a3.limitCv.median, met: (a3.limitCv.median ?? Infinity) <= 0.1 },
    { goal: 'goodput ≥ 0.9 of the new capacity after c 8→4', value: ph(a3, '0.8μ, c 8→4').goodputRatio.median, met: (ph(a3, '0.8μ, c 8→4').goodputRatio.median ?? 0) >= 0.9 },
  ];

  const result = {
    benchmark: 'overload',
    generatedAt: new Date().toISOString(),
    host: { cpus: cpus().length, loadavg: loadavg().map((x) => Math.round(x * 100) / 100) },
    wallSeconds: 0,
    sim: {
      plant: { workers: WORKERS, meanServiceMs: MEAN_SERVICE_MS, thrash: THRASH, mu: MU, deadlineMs: DEADLINE_MS, tier0Fraction: 0.1 },
      schedule: schedule(PHASE_S * 1000).map((p) => ({ phase: p.name, from: p.from, to: p.to, seconds: p.ms / 1000, workers: p.workers })),
      sextantRule: { ...SEXTANT_RULE, percentile: SEXTANT_PERCENTILE, queue: { size: 8, timeoutMs: 50 }, leaseMs: 3000, failSafe: 'unlimited' },
      repeats: REPEATS,
      arms: results,
    },
    real: real ?? null,
    goals,
  };
  result.wallSeconds = Math.round((Date.now() - started) / 1000);
  const file = path.join(import.meta.dirname, '..', 'results', OUT);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);

  // tables
  const names = Object.keys(results);
  const phaseNames = results[names[0]!]!.phases.map((p) => p.phase);
  console.log(`\nGoodput ratio per phase (median of ${REPEATS}; first quarter of each ${PHASE_S} s phase excluded)`);
  console.log(['arm'.padEnd(28), ...phaseNames.map((p) => ` ${p.replace('0.5μ after ', 'after ').replace('0.8μ, c ', 'c ')}`.padStart(13))].join(''));
  for (const n of names) console.log([n.padEnd(28), ...results[n]!.phases.map((p) => fmt(p.goodputRatio).padStart(13))].join(''));
  console.log('\nAdmitted p99 (ms) per phase');
  console.log(['arm'.padEnd(28), ...phaseNames.map((p) => ` ${p.replace('0.5μ after ', 'after ').replace('0.8μ, c ', 'c ')}`.padStart(13))].join(''));
  for (const n of names) console.log([n.padEnd(28), ...results[n]!.phases.map((p) => fmt(p.admittedP99Ms, 0).padStart(13))].join(''));
  console.log('\narm                          t_c 2μ  t_c 5μ  t_r     false-shed  tier0@5μ  CV(L)  rev/min  pushes/min  lapse');
  for (const n of names) {
    const r = results[n]!;
    const p = (x: string): PhaseStats => r.phases.find((q) => q.phase === x)!;
    console.log([n.padEnd(28), fmt(p('2μ').convergeS, 0).padStart(7), fmt(p('5μ').convergeS, 0).padStart(8), fmt(p('0.5μ after 5μ').recoverS, 0).padStart(6), fmt(r.falseShedding, 4).padStart(12), fmt(p('5μ').tier0Success, 3).padStart(10), fmt(r.limitCv, 3).padStart(7), fmt(r.limitReversalsPerMin, 1).padStart(9), fmt(r.pushesPerMin, 1).padStart(12), fmt(r.lapseAfterKillS, 1).padStart(7)].join(''));
  }
  if (real !== undefined) console.log('\nReal processes (Sextant):', JSON.stringify(real, null, 1));
  console.log('\nGoals:');
  for (const g of goals) console.log(`  ${g.met ? 'met    ' : 'NOT met'}  ${g.goal}: ${JSON.stringify(g.value)}`);
  console.log(`\nwrote ${path.relative(process.cwd(), file)} in ${result.wallSeconds} s`);
}

await main();
