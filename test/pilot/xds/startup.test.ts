// Start-up (M7): proxies that connect while the config is still loading are accepted and
// answered from the first snapshot once it is built; /ready says 503 until then.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDirectoryStore } from '../../../src/config/file/store.ts';
import type { ConfigStore, ConfigWatch } from '../../../src/config/index.ts';
import { CLUSTER_TYPE } from '../../../src/envoy/index.ts';
import { startPilot } from '../../../src/pilot/index.ts';
import { AdsStream, nodeFor, resourceNames } from './ads-client.ts';
import { quietLogger, serviceEntry, testGenerators } from './fixtures.ts';

test('a proxy that connects before the first snapshot waits for it, then gets everything', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-pilot-start-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const real = await openDirectoryStore({ dir, watchFiles: false, logger: quietLogger });
  for (let i = 0; i < 20; i++) await real.create(serviceEntry(`s${i}`, `s${i}.default.svc.cluster.local`, 8080, [`10.0.0.${i + 1}`]));
  // The real store, with the end of its initial delivery held back until the test says so.
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const store: ConfigStore = Object.create(real, {
    watch: {
      value: (...args: Parameters<ConfigStore['watch']>): ConfigWatch => {
        const w = real.watch(...args);
        return { synced: w.synced.then(async (rev) => (await held, rev)), cancel: () => w.cancel() };
      },
    },
  }) as ConfigStore;

  const pilot = await startPilot({ store, generators: testGenerators, xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', logger: quietLogger });
  t.after(() => pilot.close());
  const s = new AdsStream(pilot.xdsAddress, 'sotw');
  t.after(() => s.close());
  s.send({ node: nodeFor('early-1'), typeUrl: CLUSTER_TYPE });
  const response = s.next();

  assert.equal((await fetch(`http://${pilot.httpAddress}/ready`)).status, 503);
  // Connected and counted while waiting.
  for (let i = 0; i < 500 && pilot.server.connections.size === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(pilot.server.connections.size, 1);
  assert.equal(s.buffered, 0);

  release();
  const cds = await response;
  assert.equal(resourceNames(cds).length, 20);
  await pilot.ready;
  assert.equal((await fetch(`http://${pilot.httpAddress}/ready`)).status, 200);
});
