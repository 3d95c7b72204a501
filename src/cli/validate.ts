// `sextant validate -f PATH…`: checks Istio config files the way `istioctl validate` does:
// exit 0 when every document is valid, else exit 1 with one error per line on stderr.
import type { Command } from 'commander';
import { loadPaths, validateResource, type ConfigError } from '../api/index.ts';

/** Loads and validates every document under paths; returns all errors in file order. */
export async function validatePaths(paths: string[]): Promise<{ documents: number; errors: ConfigError[] }> {
  const loaded = await loadPaths(paths);
  const errors: ConfigError[] = [...loaded.errors];
  for (const d of loaded.documents) {
    for (const e of validateResource(d.resource, d.origin)) errors.push(e);
  }
  errors.sort((a, b) => (a.file ?? '').localeCompare(b.file ?? '') || (a.index ?? -1) - (b.index ?? -1));
  return { documents: loaded.documents.length, errors };
}

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description('validate Istio config files or directories; exit 1 and print one error per line if any is invalid')
    .requiredOption('-f, --filename <path...>', 'file or directory (recursive) to validate')
    .action(async (opts: { filename: string[] }) => {
      const { documents, errors } = await validatePaths(opts.filename);
      if (errors.length > 0) {
        process.stderr.write(errors.map((e) => e.toString()).join('\n') + '\n');
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`validated ${documents} resource${documents === 1 ? '' : 's'}: all valid\n`);
    });
}
