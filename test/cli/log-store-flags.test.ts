// `sextant pilot`'s access-log store flags: the store a flag names (or none), the default file
// under the pilot's data directory, retention durations and counts, and the usage errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import pino from 'pino';
import { openPilotLogStore, parseRetention, retentionFromFlags } from '../../src/cli/log-store-flags.ts';

const logger = pino({ level: 'silent' });
const defaults = { logRetentionAge: '7d', logRetentionRows: '1000000', logRollupRetentionAge: '30d' };
const CLI = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

test('retention flags: durations up to days, counts, and what is refused', () => {
  assert.equal(parseRetention('7d', '--f'), 7 * 86_400_000);
  assert.equal(parseRetention('12h', '--f'), 12 * 3_600_000);
  assert.equal(parseRetention('90m', '--f'), 90 * 60_000);
  assert.deepEqual(retentionFromFlags(defaults), { maxAgeMs: 7 * 86_400_000, maxRows: 1_000_000, rollupMaxAgeMs: 30 * 86_400_000 });
  assert.throws(() => parseRetention('a week', '--log-retention-age'), { name: 'UsageError', message: 'invalid --log-retention-age "a week": expected a duration like 30m, 12h or 7d' });
  assert.throws(() => parseRetention('500ms', '--log-retention-age'), /at least 1s/);
  assert.throws(() => retentionFromFlags({ ...defaults, logRetentionRows: '0' }), { message: 'invalid --log-retention-rows "0": expected an integer >= 1' });
});

test('the default store is a node:sqlite file in the data directory; none is none; a bad spec is a usage error', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-data-'));
  const saved = process.env['SEXTANT_DATA_DIR'];
  process.env['SEXTANT_DATA_DIR'] = path.join(dir, 'data');
  try {
    const store = await openPilotLogStore(defaults, logger);
    assert.equal(store?.kind, 'sqlite');
    assert.ok(existsSync(path.join(dir, 'data', 'access-log.db')));
    await store?.close();
    assert.equal(await openPilotLogStore({ ...defaults, logStore: 'none' }, logger), undefined);
    const file = await openPilotLogStore({ ...defaults, logStore: `sqlite:${path.join(dir, 'other.db')}` }, logger);
    assert.equal(file?.kind, 'sqlite');
    await file?.close();
    await assert.rejects(openPilotLogStore({ ...defaults, logStore: 'mysql://u:secret@db/x' }, logger), (err: Error) => {
      assert.equal(err.name, 'UsageError');
      assert.match(err.message, /^--log-store: access-log store: "mysql:\/\/u:\*\*\*@db\/x" is neither sqlite:PATH nor a postgres:\/\/ URL$/);
      return true;
    });
  } finally {
    if (saved === undefined) delete process.env['SEXTANT_DATA_DIR'];
    else process.env['SEXTANT_DATA_DIR'] = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sextant pilot with a bad --log-store exits 2 naming the flag, before anything listens', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-cfg-'));
  try {
    const r = spawnSync(process.execPath, [CLI, 'pilot', '--plaintext-xds', '--config-dir', dir, '--xds-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0', '--log-store', 'redis://x'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^sextant pilot: --log-store: access-log store: "redis:\/\/x" is neither sqlite:PATH nor a postgres:\/\/ URL$/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
