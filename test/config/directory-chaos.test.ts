// Model check of the directory store: seeded random sequences of edits to its tree (see
// chaos.ts), each applied with sync(); after every step what the store serves, whether it
// holds a deletion, and what it reports as errors must equal what the independent model says.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import pino from 'pino';
import type { ConfigError } from '../../src/api/index.ts';
import { CONFIRM_DELETE_MARKER, deleteGuard, openDirectoryStore, type ConfigStoreStatus, type DirectoryConfigStore } from '../../src/config/index.ts';
import { ChaosWorld, chaosSeed, type OpName } from './chaos.ts';

const STEPS = 150;
const RUNS = 3;
const guard = deleteGuard({ fraction: 0.5, minDeletions: 3 });
const logger = pino({ level: process.env.SEXTANT_TEST_LOG_LEVEL ?? 'silent' });

const WEIGHTS: Partial<Record<OpName, number>> = {
  writeGood: 24, writeBad: 10, revert: 6, delete: 7, rename: 8, stash: 5, unstash: 5,
  loopLink: 4, unloopLink: 2, fileLink: 3, unFileLink: 2, dirLink: 3, unDirLink: 2,
  moveSubAway: 4, moveSubBack: 5, rmSub: 2, massDelete: 1, rootAway: 4, rootReplace: 3, confirm: 4,
};

/**
 * Steps every run takes, whatever the seed, so each run meets the guard and the directory moving;
 * 110-113 empty the directory and create the confirmation file while it is away (the file then
 * confirms nothing: the deletion is held when the directory is back).
 */
const FORCED: Readonly<Record<number, OpName>> = {
  20: 'rootAway', 21: 'rootBack', 40: 'massDelete', 75: 'rootReplace', 100: 'massDelete', 101: 'confirm',
  110: 'rootAway', 111: 'massDelete', 112: 'confirm', 113: 'rootBack', 130: 'loopLink',
};

async function served(store: DirectoryConfigStore): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const r of await store.list('ServiceEntry')) out.set(`ServiceEntry/default/${r.metadata.name}`, (r.spec as { hosts: string[] }).hosts[0]!);
  return out;
}

function sorted(m: ReadonlyMap<string, string>): Array<[string, string]> {
  return [...m].sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

/** How often the interesting states came up in a run (reported as test diagnostics). */
interface Coverage { held: number; duplicates: number; badFiles: number; rootAway: number; loops: number }

async function run(seed: number): Promise<Coverage> {
  const coverage: Coverage = { held: 0, duplicates: 0, badFiles: 0, rootAway: 0, loops: 0 };
  const root = mkdtempSync(path.join(tmpdir(), 'sextant-chaos-'));
  const world = new ChaosWorld(root, seed, guard, { atomic: false, weights: WEIGHTS });
  world.seedFiles(8);
  let store: DirectoryConfigStore | undefined;
  const history: string[] = [];
  try {
    store = await openDirectoryStore({ dir: world.dir, logger, watchFiles: false, resyncIntervalMs: 0, deleteGuard: { fraction: 0.5, minDeletions: 3 } });
    for (let i = 0; i < STEPS; i++) {
      const { what, op } = world.step(FORCED[i]);
      history.push(`${i}: ${what}`);
      await store.sync();
      world.settleModel(op);
      const status: ConfigStoreStatus = store.status();
      if (status.heldChange !== null) coverage.held++;
      if (world.rootIsAway) coverage.rootAway++;
      if (status.warnings.length > 0) coverage.loops++;
      if (world.rootIsAway) {
        assert.deepEqual(status.problems.map((p) => p.code).filter((c) => c === 'root-missing'), ['root-missing']);
      } else {
        assert.equal(status.problems.some((p) => p.code === 'root-missing'), false, 'the directory is back');
        // Whether it confirmed or not, a confirmation file the store found is gone: it cannot confirm a later change.
        assert.equal(existsSync(path.join(world.dir, CONFIRM_DELETE_MARKER)), false, 'the confirmation file is consumed');
        const errors: ConfigError[] = store.errors();
        const duplicates = errors.filter((e) => e.detail.startsWith('duplicate resource: already defined in')).length;
        const badFiles = new Set(errors.filter((e) => !e.detail.startsWith('duplicate resource: already defined in')).map((e) => e.file)).size;
        assert.deepEqual({ badFiles, duplicates }, { badFiles: world.model.badFiles(), duplicates: world.model.shadowed() }, 'errors follow the files');
        if (duplicates > 0) coverage.duplicates++;
        if (badFiles > 0) coverage.badFiles++;
      }
      assert.deepEqual(sorted(await served(store)), sorted(world.model.served), 'served resources');
      assert.equal(status.heldChange !== null, world.model.held, 'a deletion is held');
      assert.equal(status.warnings.every((w) => /symbolic link loop|read already/.test(w)), true);
    }
    return coverage;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`config-directory chaos failed with seed ${seed} (replay: SEXTANT_CHAOS_SEED=${seed}) after:\n  ${history.slice(-12).join('\n  ')}\ntree: ${world.listing()}\n${message}`, { cause: err });
  } finally {
    await store?.close();
    rmSync(root, { recursive: true, force: true });
  }
}

describe('directory store: config-directory chaos against a model', () => {
  const first = chaosSeed();
  for (let r = 0; r < RUNS; r++) {
    const seed = r === 0 ? first : first + r;
    it(`${STEPS} random steps (seed ${seed}) leave the store serving what the model says`, async (t) => {
      const c = await run(seed);
      t.diagnostic(`steps with: a held deletion ${c.held}, duplicates ${c.duplicates}, invalid files ${c.badFiles}, the directory away ${c.rootAway}, link loops ${c.loops}`);
    });
  }
});
