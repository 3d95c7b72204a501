// Runs every test file under test/ with Node's test runner on the pinned Node.
// Files are found here (not by shell globs) so the command is the same everywhere.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname);
const only = process.argv.slice(2);

function collect(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const files = collect(root).filter((f) => only.length === 0 || only.some((o) => f.includes(o)));
if (files.length === 0) {
  // with no files, node --test would fall back to its own discovery and run helpers as tests
  console.error(`no test file under test/ matches ${only.map((o) => JSON.stringify(o)).join(' or ')}`);
  process.exit(1);
}
// Pilots the tests spawn keep their CA root in a data directory of this run, never in ~/.sextant.
const dataDir = process.env['SEXTANT_DATA_DIR'] ? undefined : mkdtempSync(path.join(os.tmpdir(), 'sextant-test-data-'));
const result = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=2', '--test-timeout=600000', '--test-reporter=spec', ...files],
  { stdio: 'inherit', env: dataDir === undefined ? process.env : { ...process.env, SEXTANT_DATA_DIR: dataDir } },
);
if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
process.exit(result.status ?? 1);
