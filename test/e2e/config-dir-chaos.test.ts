// Config-directory chaos with a real pilot and a real sidecar: seeded random edits of the
// watched directory (see test/config/chaos.ts: writes, partial writes, reverts, renames,
// deletes, files moved away and back, link loops and links, duplicates, a sub-folder and the
// directory itself moved away and back, confirmations) while traffic flows through the sidecar.
// After each step settles, the store, the pilot's /debug/configz and the sidecar's clusters
// equal what the model of "last good state" says, and no request through the sidecar fails.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { toYaml, type Resource } from '../../src/api/index.ts';
import { deleteGuard, openDirectoryStore, type DirectoryConfigStore } from '../../src/config/index.ts';
import { startPilot, type Pilot } from '../../src/pilot/index.ts';
import { startProxy, type Proxy } from '../../src/proxy/index.ts';
import { CHAOS_PORT, ChaosWorld, chaosSeed, type Doc, type OpName } from '../config/chaos.ts';
import { send, silent, startBackend, type Backend } from '../proxy/helpers/fixtures.ts';

const STEPS = 40;
const BIND = '127.0.77.1';
const BACKEND_HOST = 'backend.default.svc.cluster.local';
const logger = pino({ level: process.env.SEXTANT_TEST_LOG_LEVEL ?? 'silent' });
// At most 3 resources per file, so a single-file step is never held; most files under sub/, so
// moving sub/ away usually is.
const GUARD = { fraction: 0.5, minDeletions: 3 };
const PATHS = ['f0.yaml', 'f1.yaml', 'sub/f2.yaml', 'sub/f3.yaml', 'sub/f4.yaml', 'sub/f5.yaml', 'sub/deep/f6.yaml', 'sub/deep/f7.yaml', 'sub/deep/f8.yaml'];
const guard = deleteGuard(GUARD);

// Only atomic changes (each reaches the store as one batch): single files written aside and
// renamed into place, renames, and folders moved whole. While a deletion is held, the next step
// confirms it or brings the folder back.
const WEIGHTS: Partial<Record<OpName, number>> = {
  writeGood: 22, writeBad: 9, revert: 6, delete: 6, rename: 6, stash: 4, unstash: 4,
  loopLink: 4, unloopLink: 2, fileLink: 3, unFileLink: 2, dirLink: 3, unDirLink: 2,
  moveSubAway: 5, moveSubBack: 5, rootAway: 4, confirm: 2,
};
const FORCED: Readonly<Record<number, OpName>> = { 2: 'loopLink', 5: 'rootAway', 7: 'rootBack', 12: 'moveSubAway', 20: 'dirLink', 27: 'rootAway', 28: 'rootBack', 33: 'fileLink' };

function meshFile(backendPort: number): { rel: string; text: string; docs: Doc[] } {
  const backend: Resource = {
    apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'backend', namespace: 'default' },
    spec: {
      hosts: [BACKEND_HOST], location: 'MESH_INTERNAL', resolution: 'STATIC',
      ports: [{ number: CHAOS_PORT, name: 'http', protocol: 'HTTP' }],
      endpoints: [{ address: '127.0.0.1', ports: { http: backendPort } }],
    },
  };
  const sidecar: Resource = {
    apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'client', namespace: 'default' },
    spec: {
      workloadSelector: { labels: { app: 'client' } },
      egress: [{ port: { number: CHAOS_PORT, protocol: 'HTTP', name: 'http' }, bind: BIND, captureMode: 'NONE', hosts: ['./*'] }],
    },
  };
  return {
    // Sorted before every chaos file, and never touched by a step: the traffic's config.
    rel: '00-mesh.yaml',
    text: [toYaml(backend), toYaml(sidecar)].join('---\n'),
    docs: [{ key: 'ServiceEntry/default/backend', sig: BACKEND_HOST }, { key: 'Sidecar/default/client', sig: 'sidecar' }],
  };
}

/** Kind/namespace/name → host (ServiceEntry) or 'sidecar', as the model writes it. */
function signatures(resources: readonly Resource[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const r of resources) {
    if (r.kind === 'ServiceEntry') out.push([`ServiceEntry/${r.metadata.namespace}/${r.metadata.name}`, (r.spec as { hosts: string[] }).hosts[0]!]);
    else if (r.kind === 'Sidecar') out.push([`Sidecar/${r.metadata.namespace}/${r.metadata.name}`, 'sidecar']);
  }
  return out.sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

function expected(world: ChaosWorld): Array<[string, string]> {
  return [...world.model.served].sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

function expectedClusters(world: ChaosWorld): string[] {
  return [...world.model.served].filter(([k]) => k.startsWith('ServiceEntry/')).map(([, host]) => `outbound|${CHAOS_PORT}||${host}`).sort();
}

function sidecarClusters(proxy: Proxy): string[] {
  return [...proxy.config.clusters.keys()].filter((n) => n.startsWith(`outbound|${CHAOS_PORT}||`)).sort();
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(25);
  }
}

describe('config-directory chaos: pilot and sidecar', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it(`${STEPS} random steps keep the pushed config equal to the last good state, and traffic flowing`, { timeout: 120_000 }, async (t) => {
    const seed = chaosSeed();
    const root = mkdtempSync(path.join(tmpdir(), 'sextant-chaos-e2e-'));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    const backend: Backend = await startBackend('backend');
    cleanups.push(() => backend.close());
    const world = new ChaosWorld(root, seed, guard, { atomic: true, weights: WEIGHTS, protectedDocs: meshFile(backend.port), paths: PATHS });
    world.seedFiles(8);

    const store: DirectoryConfigStore = await openDirectoryStore({
      dir: world.dir, logger, debounceMs: 20, maxDebounceMs: 200, resyncIntervalMs: 300, rootPollMs: 50, deleteGuard: GUARD,
    });
    const pilot: Pilot = await startPilot({ store, xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', debounceAfterMs: 20, debounceMaxMs: 500, logger });
    cleanups.push(() => pilot.close());
    await pilot.ready;
    const proxy = await startProxy({
      xds: pilot.xdsAddress, id: `sidecar~${BIND}~client-chaos.default~default.svc.cluster.local`, labels: { app: 'client' },
      adminAddress: '127.0.0.1:0', logger: silent, drainMs: 200,
    });
    cleanups.push(() => proxy.drain(100));
    await proxy.whenReady();

    // Traffic through the sidecar's egress listener, all along.
    let step = -1;
    let requests = 0;
    const failures: string[] = [];
    let trafficOn = true;
    const traffic = (async () => {
      while (trafficOn) {
        const at = step;
        try {
          const r = await send(CHAOS_PORT, '/chaos', { Host: `${BACKEND_HOST}:${CHAOS_PORT}` }, { host: BIND });
          if (r.status !== 200) failures.push(`step ${at}: HTTP ${r.status} ${r.body.slice(0, 100)}`);
        } catch (err) {
          failures.push(`step ${at}: ${err instanceof Error ? err.message : String(err)}`);
        }
        requests++;
        await sleep(20);
      }
    })();

    const configz = async (): Promise<Resource[]> => {
      const res = await fetch(`http://${pilot.httpAddress}/debug/configz`);
      return ((await res.json()) as { resources: Resource[] }).resources;
    };
    const history: string[] = [];
    let held = 0;
    let away = 0;
    try {
      const started = Date.now();
      for (step = 0; step < STEPS; step++) {
        let forced = FORCED[step];
        if (world.model.held) forced = world.rand() < 0.5 ? 'confirm' : 'moveSubBack';
        const { what, op } = world.step(forced);
        history.push(`${step}: ${what}`);
        world.settleModel(op);
        if (world.model.held) held++;
        await sleep(100);
        if (world.rootIsAway) {
          away++;
          await until('the store reports the directory missing', () => store.status().problems.some((p) => p.code === 'root-missing'));
          await sleep(400); // past a periodic rescan: nothing may be deleted meanwhile
        }
        await until('the store serves the model', async () => JSON.stringify(signatures([...(await store.list('ServiceEntry')), ...(await store.list('Sidecar'))])) === JSON.stringify(expected(world)));
        assert.equal(store.status().heldChange !== null, world.model.held, 'a deletion is held');
        await until('the pilot serves the model', async () => JSON.stringify(signatures(await configz())) === JSON.stringify(expected(world)));
        await until('the sidecar has the clusters the model implies', () => JSON.stringify(sidecarClusters(proxy)) === JSON.stringify(expectedClusters(world)));
        assert.deepEqual(failures, [], 'no request through the sidecar fails');
      }
      t.diagnostic(`seed ${seed}: ${STEPS} steps in ${Date.now() - started} ms, ${requests} requests, ${held} steps with a held deletion, ${away} with the directory away`);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`config-directory chaos failed with seed ${seed} (replay: SEXTANT_CHAOS_SEED=${seed}) after:\n  ${history.slice(-10).join('\n  ')}\ntree: ${world.listing()}\nmodel: ${JSON.stringify(expected(world))}\nsidecar: ${JSON.stringify(sidecarClusters(proxy))}\n${message}`, { cause: err });
    } finally {
      trafficOn = false;
      await traffic;
      await store.close();
    }
    assert.deepEqual(failures, []);
    assert.ok(requests > STEPS, `traffic flowed (${requests} requests)`);
  });
});
