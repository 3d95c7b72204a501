// The installed entry point: on the pinned Node it runs the CLI; on an older Node (the
// system's, when someone runs bin/sextant.mjs directly) it says what to do instead of
// failing on TypeScript it cannot load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');
const ENTRY = path.join(ROOT, 'bin', 'sextant.mjs');

test('on the pinned Node the entry runs the CLI', () => {
  const r = spawnSync(process.execPath, [ENTRY, '--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), '0.1.0');
});

test('a bad flag value ends the command with one line naming the flag, exit 2 (a usage error)', () => {
  const r = spawnSync(process.execPath, [ENTRY, 'proxy', '--xds', '127.0.0.1:1', '--id', 'sidecar~127.0.0.1~a-1.default~default.svc.cluster.local', '--drain-duration', '5'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'error: invalid --drain-duration "5": expected a duration like 100ms, 10s or 1m\n');
});

const SYSTEM_NODE = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => {
  if (!existsSync(p)) return false;
  const v = spawnSync(p, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim();
  return Number(v.split('.')[0]) < 24;
});

test('on a Node older than 24 the entry exits 1 and names the way to run it', { skip: SYSTEM_NODE === undefined ? 'no Node older than 24 on this machine' : false }, () => {
  const r = spawnSync(SYSTEM_NODE!, [ENTRY, 'proxy', '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^sextant needs Node 24 or later \(this is Node \d+\.\d+\.\d+\); the project pins it: run `npx sextant …`/);
  assert.equal(r.stdout, '');
});
