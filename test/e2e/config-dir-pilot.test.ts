// `sextant pilot` and its config directory, as an operator sees them: a missing directory is
// refused at start (exit 2, nothing created); a directory moved away, or a change deleting most
// of the mesh, keeps the served config, and shows in /debug/configz and /metrics until it is
// back or confirmed; /ready stays 200 throughout (proxies keep getting config).
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { toYaml } from '../../src/api/index.ts';
import { CONFIRM_DELETE_MARKER, type ConfigStoreStatus } from '../../src/config/index.ts';
import { serviceEntry } from '../config/conformance.ts';
import { freePort } from '../helpers/ports.ts';

const cli = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const root = mkdtempSync(path.join(tmpdir(), 'sextant-config-dir-pilot-'));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(root, { recursive: true, force: true });
});

describe('sextant pilot: start-up checks', () => {
  it('refuses a --config-dir that does not exist, with exit code 2, and creates nothing', () => {
    const dir = path.join(root, 'no-such', 'config');
    const r = spawnSync(process.execPath, [cli, 'pilot', '--plaintext-xds', '--config-dir', dir, '--xds-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr, `sextant pilot: --config-dir ${dir}: no such directory\n`);
    assert.equal(existsSync(path.join(root, 'no-such')), false);
  });

  it('refuses a file as --config-dir, and guard values that are not a fraction or a count', () => {
    const file = path.join(root, 'a-file');
    writeFileSync(file, '');
    const run = (...args: string[]): { status: number | null; stderr: string } =>
      spawnSync(process.execPath, [cli, 'pilot', '--plaintext-xds', '--xds-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0', ...args], { encoding: 'utf8', timeout: 30_000 });
    let r = run('--config-dir', file);
    assert.equal(r.status, 2);
    assert.equal(r.stderr, `sextant pilot: --config-dir ${file}: not a directory\n`);
    r = run('--config-dir', root, '--config-delete-guard', '1.5');
    assert.equal(r.status, 2);
    assert.equal(r.stderr, 'sextant pilot: invalid --config-delete-guard "1.5": expected a fraction from 0 to 1 (0 or 1 turns the guard off)\n');
    r = run('--config-dir', root, '--config-delete-guard-min', '-3');
    assert.equal(r.status, 2);
    assert.equal(r.stderr, 'sextant pilot: invalid --config-delete-guard-min "-3": expected an integer >= 0\n');
  });
});

describe('sextant pilot: config store status', () => {
  it('reports a missing directory and a held mass deletion in /debug/configz and /metrics, and keeps serving', async () => {
    const dir = path.join(root, 'config');
    for (let i = 0; i < 12; i++) {
      mkdirSync(path.join(dir, 'bulk'), { recursive: true });
      writeFileSync(path.join(dir, 'bulk', `b${i}.yaml`), toYaml(serviceEntry(`bulk-${i}`)));
    }
    for (let i = 0; i < 3; i++) {
      mkdirSync(path.join(dir, 'keep'), { recursive: true });
      writeFileSync(path.join(dir, 'keep', `k${i}.yaml`), toYaml(serviceEntry(`keep-${i}`)));
    }
    const http = `127.0.0.1:${await freePort()}`;
    const pilot = spawn(process.execPath, [cli, 'pilot', '--plaintext-xds', '--config-dir', dir, '--xds-address', `127.0.0.1:${await freePort()}`, '--http-address', http, '--config-delete-guard-min', '5', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
    children.push(pilot);

    const get = async (p: string): Promise<{ status: number; body: string }> => {
      try {
        const res = await fetch(`http://${http}${p}`);
        return { status: res.status, body: await res.text() };
      } catch {
        return { status: 0, body: '' };
      }
    };
    const configz = async (): Promise<{ resources: unknown[]; store: ConfigStoreStatus }> => JSON.parse((await get('/debug/configz')).body) as { resources: unknown[]; store: ConfigStoreStatus };
    const metric = async (name: string): Promise<number> => {
      const m = new RegExp(`^${name} (\\S+)$`, 'm').exec((await get('/metrics')).body);
      return m === null ? NaN : Number(m[1]);
    };
    const until = async (what: string, check: () => Promise<boolean>): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (!(await check())) {
        assert.ok(Date.now() < deadline, `timed out waiting until ${what}`);
        await sleep(50);
      }
    };

    await until('the pilot is ready', async () => (await get('/ready')).status === 200);
    let c = await configz();
    assert.equal(c.resources.length, 15);
    assert.deepEqual({ healthy: c.store.healthy, problems: c.store.problems, heldChange: c.store.heldChange, resources: c.store.resources }, { healthy: true, problems: [], heldChange: null, resources: 15 });
    assert.equal(await metric('sextant_config_store_healthy'), 1);

    // The directory moved away: an error, not an empty mesh.
    renameSync(dir, `${dir}.gone`);
    await until('the store reports the missing directory', async () => !(await configz()).store.healthy);
    c = await configz();
    assert.deepEqual(c.store.problems.map((p) => p.code), ['root-missing']);
    assert.equal(c.resources.length, 15);
    assert.equal((await get('/ready')).status, 200);
    assert.equal(await metric('sextant_config_store_healthy'), 0);
    renameSync(`${dir}.gone`, dir);
    await until('the store is healthy again', async () => (await configz()).store.healthy);
    assert.equal(await metric('sextant_config_store_healthy'), 1);

    // Most of the mesh deleted at once: held until the operator confirms.
    renameSync(path.join(dir, 'bulk'), path.join(root, 'bulk.away'));
    await until('the deletion is held', async () => (await configz()).store.heldChange !== null);
    c = await configz();
    assert.equal(c.store.heldChange?.deletions, 12);
    assert.equal(c.resources.length, 15);
    assert.equal(await metric('sextant_config_store_held_deletions'), 12);
    assert.equal(await metric('sextant_config_store_healthy'), 0);
    assert.equal((await get('/ready')).status, 200);
    writeFileSync(path.join(dir, CONFIRM_DELETE_MARKER), '');
    await until('the deletion applies', async () => (await configz()).resources.length === 3);
    assert.equal(await metric('sextant_config_store_held_deletions'), 0);
    assert.equal(await metric('sextant_config_store_healthy'), 1);
    assert.equal(existsSync(path.join(dir, CONFIRM_DELETE_MARKER)), false);
  });
});
