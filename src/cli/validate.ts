// `sextant validate -f PATH…`: checks Istio config files the way `istioctl validate` does.
import type { Command } from 'commander';

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description('validate Istio config files or directories; exit 1 and print one error per line if any is invalid')
    .requiredOption('-f, --filename <path...>', 'file or directory (recursive) to validate')
    .action(async (_opts: { filename: string[] }) => {
      process.stderr.write('validate: not yet available\n');
      process.exitCode = 2;
    });
}
