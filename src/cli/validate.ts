// `sextant validate -f PATH…`: checks Istio config files the way `istioctl validate` does:
// exit 0 when every document is valid, else exit 1 with one error per line on stderr.
import { text } from 'node:stream/consumers';
import type { Command } from 'commander';
import { loadPaths, parseDocuments, validateResource, type ConfigError, type LoadResult } from '../api/index.ts';

/** Name errors use for documents read from standard input (`-f -`). */
const STDIN_NAME = '<stdin>';

/**
 * Loads and validates every document under paths ("-" reads standard input); returns the
 * number of resources and all errors in file and document order.
 */
export async function validatePaths(paths: string[], stdin: NodeJS.ReadableStream = process.stdin): Promise<{ documents: number; errors: ConfigError[] }> {
  const files = paths.filter((p) => p !== '-');
  const loaded: LoadResult = await loadPaths(files);
  if (files.length !== paths.length) {
    const fromStdin = parseDocuments(await text(stdin), STDIN_NAME);
    loaded.documents.push(...fromStdin.documents);
    loaded.errors.push(...fromStdin.errors);
  }
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
    .requiredOption('-f, --filename <path...>', 'file or directory (recursive) to validate; "-" reads standard input')
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
