// `sextant demo` (= `npm start`): the local bookinfo mesh on embedded defaults.
import path from 'node:path';
import type { Command } from 'commander';
import { runDemo } from '../demo/index.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run a local mesh: pilot, bookinfo workloads with sidecars on 127.0.1.N, live traffic summary')
    .option('--work-dir <dir>', 'working folder (config store and logs)', path.join(REPO, '.work', 'demo'))
    .option('--reset', 'reseed the config from examples/bookinfo', false)
    .option('--xds-address <host:port>', 'pilot xDS address', '127.0.0.1:15010')
    .option('--http-address <host:port>', 'pilot HTTP address', '127.0.0.1:15014')
    .option('--rate <n>', 'requests per second sent to productpage', '10')
    .option('--duration <seconds>', 'stop after this many seconds (0: until Ctrl-C)', '0')
    .action(async (o: { workDir: string; reset: boolean; xdsAddress: string; httpAddress: string; rate: string; duration: string }) => {
      const rate = Number(o.rate);
      const duration = Number(o.duration);
      if (!(rate > 0 && rate <= 1000)) throw new Error(`--rate must be between 0 and 1000, got ${o.rate}`);
      if (!(duration >= 0)) throw new Error(`--duration must be a number of seconds, got ${o.duration}`);
      process.exitCode = await runDemo({
        workDir: path.resolve(o.workDir),
        examplesDir: path.join(REPO, 'examples', 'bookinfo'),
        reset: o.reset,
        xdsAddress: o.xdsAddress,
        httpAddress: o.httpAddress,
        rate,
        durationSeconds: duration,
        out: process.stdout,
      });
    });
}
