// Reading the pilot's monitoring API (/api/v1) from the CLI (`sextant logs`, `sextant peers`):
// the pilot's address, the token from a file (as `sextant register` takes it), and each failure
// one sentence naming the URL; the API's own `{error}` is quoted, it says what to fix.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { UsageError } from './flags.ts';
import { exchangeJson, isRecord, RemoteError } from './remote-json.ts';

export interface MonitoringApiFlags {
  pilot: string;
  tokenFile?: string;
  timeout: string;
  output: string;
}

/** The flags every monitoring command takes. */
export function monitoringApiFlags(cmd: Command): Command {
  return cmd
    .option('--pilot <url>', "the pilot's HTTP address", 'http://127.0.0.1:15014')
    .option('--token-file <file>', "file holding a token of the pilot's --api-tokens file (its first word); default: the one a pilot on this host generated ($SEXTANT_DATA_DIR or ~/.sextant/api-token), when there")
    .option('-o, --output <format>', 'table or json', 'table')
    .option('--timeout <seconds>', 'give up on the pilot after this long', '10');
}

export function checkOutput(f: MonitoringApiFlags): void {
  if (f.output !== 'table' && f.output !== 'json') throw new UsageError(`invalid --output "${f.output}": expected table or json`);
}

/** The token: the first word of the first line of the file that is not blank or a comment. */
export function readApiToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--token-file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const line = text.split('\n').map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#'));
  if (line === undefined) throw new UsageError(`--token-file ${file}: holds no token`);
  return line.split(/\s+/)[0]!;
}

/**
 * The token to send the pilot: from `--token-file`, else the one a pilot on this host generated
 * (DATA_DIR/api-token) when that file is there, else none.
 */
export function pilotToken(tokenFile: string | undefined): string | undefined {
  if (tokenFile !== undefined) return readApiToken(tokenFile);
  const generated = path.join(process.env['SEXTANT_DATA_DIR'] || path.join(homedir(), '.sextant'), 'api-token');
  return existsSync(generated) ? readApiToken(generated) : undefined;
}

export function apiUrl(f: MonitoringApiFlags, path: string, params: Record<string, string | undefined>): URL {
  let url: URL;
  try {
    url = new URL(`/api/v1/${path}`, /^[a-z][a-z0-9+.-]*:\/\//i.test(f.pilot) ? f.pilot : `http://${f.pilot}`);
  } catch {
    throw new UsageError(`invalid --pilot "${f.pilot}": expected the pilot's HTTP address, e.g. http://127.0.0.1:15014`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`invalid --pilot "${f.pilot}": expected an http:// or https:// address`);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.set(k, v);
  return url;
}

/**
 * GETs an /api/v1 path; a RemoteError when the pilot cannot be reached or refuses, a UsageError
 * when it names a parameter that came from one of `flags` (API parameter → the flag it came from).
 */
export async function getApi(
  f: MonitoringApiFlags, path: string, params: Record<string, string | undefined>, flags: Readonly<Record<string, string>> = {},
): Promise<Record<string, unknown>> {
  const url = apiUrl(f, path, params);
  const timeout = Number(f.timeout);
  if (!(timeout > 0)) throw new UsageError(`invalid --timeout "${f.timeout}": expected a number of seconds above 0`);
  const timeoutMs = timeout * 1000;
  const headers: Record<string, string> = { accept: 'application/json' };
  const token = pilotToken(f.tokenFile);
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
  const { status, headers: answered, body } = await exchangeJson(url, { headers }, timeoutMs, 'the pilot');
  if (!isRecord(body)) throw new RemoteError(`${url.href} answered ${status} ${answered.get('content-type') ?? 'with no content type'}: not a Sextant pilot's monitoring API`);
  if (status !== 200) {
    const error = typeof body['error'] === 'string' ? body['error'] : JSON.stringify(body);
    // The pilot names the parameter at fault: that is the flag the user gave wrongly.
    const flag = status === 400 && typeof body['parameter'] === 'string' ? flags[body['parameter']] : undefined;
    if (flag !== undefined) throw new UsageError(`invalid ${flag}: ${error.replace(/^\w+: /, '')}`);
    const hint = status === 401 && f.tokenFile === undefined ? ' (give --token-file FILE)' : '';
    throw new RemoteError(`${url.href} answered ${status}: ${error}${hint}`);
  }
  return body;
}

/** Wraps an action: a RemoteError is one line on stderr and exit code 1 (UsageErrors go on to runProgram: exit 2). */
export function reportRemote<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (err) {
      if (!(err instanceof RemoteError)) throw err;
      process.stderr.write(`error: ${err.message}\n`);
      process.exitCode = 1;
    }
  };
}

/** `--since 7d` or `--from`/`--to` as the API's parameters (the pilot checks them and names the one at fault). */
export function rangeParams(f: { since?: string; from?: string; to?: string }): Record<string, string | undefined> {
  if (f.since !== undefined && f.from !== undefined) throw new UsageError('give either --since or --from, not both');
  return { since: f.since, from: f.from, to: f.to };
}

export function time(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : '-';
}
