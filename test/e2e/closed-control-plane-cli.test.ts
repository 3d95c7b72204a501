// `sextant pilot` serves a closed control plane by default: a `sextant proxy` given the
// pilot's root and the generated bootstrap token gets its certificate and its config; one
// without them gets nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, spawnPilot, waitFor } from '../helpers/pilot-process.ts';
import { freePort } from '../helpers/ports.ts';

test('the pilot CLI is closed by default: a proxy with the root and the bootstrap token is served over mTLS, a plaintext one is not, /debug needs the generated token', async () => {
  assert.ok(process.env['SEXTANT_DATA_DIR'], 'the test runner gives every run a data directory of its own');
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-closed-cli-'));
  const caDir = path.join(dir, 'ca');
  mkdirSync(path.join(dir, 'config'));
  const pilot = await spawnPilot({ configDir: path.join(dir, 'config'), plaintext: false, args: ['--ca-dir', caDir] });
  const kids: ReturnType<typeof spawn>[] = [];
  const proxy = async (extra: string[], name: string): Promise<string> => {
    const admin = `127.0.0.1:${await freePort()}`;
    const child = spawn(process.execPath, [CLI, 'proxy', '--xds', pilot.xds, '--id', `sidecar~127.0.0.1~${name}-1.default~default.svc.cluster.local`, '--admin-address', admin, '--log-level', 'warn', '--drain-duration', '100ms', ...extra], { stdio: ['ignore', 'ignore', 'ignore'], detached: true });
    kids.push(child);
    return admin;
  };
  try {
    const tokenFile = path.join(caDir, 'bootstrap-token');
    assert.equal(statSync(tokenFile).mode & 0o777, 0o600, 'the generated token is readable by its owner only');
    assert.match(readFileSync(tokenFile, 'utf8'), /^[A-Za-z0-9_-]{43}\n$/);
    const closed = await proxy(['--xds-root-cert', path.join(caDir, 'root-cert.pem'), '--ca-token-file', tokenFile, '--service-account', 'reviews'], 'reviews');
    const open = await proxy([], 'ratings');
    await waitFor('the mTLS proxy is ready', async () => (await fetch(`http://${closed}/ready`).catch(() => undefined))?.status === 200, 30_000);
    // /debug is closed too: the token the pilot generated for this host opens it
    const refused = await fetch(`${pilot.url}/debug/syncz`);
    assert.equal(refused.status, 401);
    assert.match(((await refused.json()) as { error: string }).error, /a token is required/);
    const apiToken = readFileSync(path.join(process.env['SEXTANT_DATA_DIR'] ?? '', 'api-token'), 'utf8').trim();
    const syncz = await waitFor('the pilot lists the proxy', async () => {
      const list = await (await fetch(`${pilot.url}/debug/syncz`, { headers: { authorization: `Bearer ${apiToken}` } })).json() as { proxy?: string; id?: string }[];
      return list.length > 0 ? list : undefined;
    });
    assert.deepEqual(syncz.map((p) => p.proxy ?? p.id), ['sidecar~127.0.0.1~reviews-1.default~default.svc.cluster.local']);
    // the plaintext proxy had as long as the other: still no config
    await sleep(1000);
    assert.notEqual((await fetch(`http://${open}/ready`)).status, 200);
  } finally {
    for (const c of kids) {
      if (c.pid === undefined || c.exitCode !== null) continue;
      const exited = new Promise((r) => c.once('exit', r));
      try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
      await exited;
    }
    await pilot.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
