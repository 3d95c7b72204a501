// The directory store when its tree misbehaves: symbolic-link loops, trees past the walk
// limits, the directory moved away, replaced or emptied, mass deletions held for an operator's
// confirmation, and errors that must follow the files as they are now.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino, { type Logger } from 'pino';
import { toYaml } from '../../src/api/index.ts';
import {
  CONFIRM_DELETE_MARKER, SourceUnavailableError, openDirectoryStore, type DirectoryConfigStore, type DirectoryStoreOptions,
} from '../../src/config/index.ts';
import { describeEvent, record, serviceEntry } from './conformance.ts';

const roots: string[] = [];
const stores: DirectoryConfigStore[] = [];
after(async () => {
  for (const s of stores) await s.close();
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

/** A fresh temp folder holding `config/` (the store's directory), and room beside it. */
function tempRoot(): { root: string; dir: string } {
  const root = mkdtempSync(path.join(tmpdir(), 'sextant-dirstore-'));
  roots.push(root);
  const dir = path.join(root, 'config');
  mkdirSync(dir);
  return { root, dir };
}

interface LogLine { level: number; msg: string; [k: string]: unknown }

/** A logger whose lines the test can read (pino JSON, one object per line). */
function capture(): { logger: Logger; lines: LogLine[]; count(msg: string): number } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines, count: (msg) => lines.filter((l) => l.msg === msg).length };
}

async function open(dir: string, logger: Logger, extra: Partial<DirectoryStoreOptions> = {}): Promise<DirectoryConfigStore> {
  const s = await openDirectoryStore({ dir, logger, debounceMs: 20, maxDebounceMs: 200, ...extra });
  stores.push(s);
  return s;
}

function writeSe(file: string, name: string, host?: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, toYaml(serviceEntry(name, host !== undefined ? { host } : {})));
}

async function names(s: DirectoryConfigStore): Promise<string[]> {
  return (await s.list('ServiceEntry')).map((r) => r.metadata.name);
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

describe('directory store: symbolic links', () => {
  it('follows links but not loops; warns once per loop, reads nothing twice, and watches a bounded number of directories', async () => {
    const { root, dir } = tempRoot();
    writeSe(path.join(dir, 'a.yaml'), 'a');
    writeSe(path.join(dir, 'sub', 'b.yaml'), 'b');
    writeSe(path.join(root, 'outside', 'c.yaml'), 'c');
    writeSe(path.join(root, 'outside-dir', 'd.yaml'), 'd');
    symlinkSync('..', path.join(dir, 'sub', 'up')); // back up to the root
    symlinkSync('../config', path.join(dir, 'self')); // to the root itself
    symlinkSync('l2', path.join(dir, 'l1')); // a link whose resolution loops
    symlinkSync('l1', path.join(dir, 'l2'));
    symlinkSync('../outside/c.yaml', path.join(dir, 'c-link.yaml')); // a file outside the tree
    symlinkSync('../outside-dir', path.join(dir, 'ext')); // a folder outside the tree
    const log = capture();
    const s = await open(dir, log.logger);

    assert.deepEqual(await names(s), ['a', 'b', 'c', 'd']);
    assert.deepEqual(s.errors(), []); // nothing read twice, so no duplicates
    assert.equal(s.watchedDirectories, 3); // config, config/sub, config/ext
    const status = s.status();
    assert.equal(status.healthy, true);
    assert.deepEqual(status.warnings, [
      `${path.join(dir, 'l1')}: symbolic link loop; not followed`,
      `${path.join(dir, 'l2')}: symbolic link loop; not followed`,
      `${path.join(dir, 'self')}: symbolic link loop (leads back to ${dir}); not followed`,
      `${path.join(dir, 'sub', 'up')}: symbolic link loop (leads back to ${dir}); not followed`,
    ]);
    for (let i = 0; i < 3; i++) await s.sync();
    const warned = log.lines.filter((l) => l.msg === 'symbolic link loop in the config directory; not followed').map((l) => l['link']);
    assert.deepEqual(warned.sort(), ['l1', 'l2', 'self', path.join('sub', 'up')].map((p) => path.join(dir, p)));

    // A loop made while the store runs is seen by the watcher, warned about once, and costs nothing.
    const w = record(s, await s.revision());
    await w.synced;
    symlinkSync('.', path.join(dir, 'sub', 'up2')); // to its own folder
    writeSe(path.join(dir, 'sub', 'e.yaml'), 'e');
    await w.waitFor(1);
    await until('the new loop is reported', () => s.status().warnings.some((l) => l.startsWith(path.join(dir, 'sub', 'up2'))));
    assert.deepEqual(await names(s), ['a', 'b', 'c', 'd', 'e']);
    assert.equal(s.watchedDirectories, 3);
    await s.sync();
    assert.equal(log.count('symbolic link loop in the config directory; not followed'), 5);
    w.cancel();
    assert.deepEqual(w.events.map(describeEvent), ['ADDED ServiceEntry/default/e']);
  });

  it('reads a folder reached by two links once, under the first path', async () => {
    const { root, dir } = tempRoot();
    writeSe(path.join(root, 'shared', 'x.yaml'), 'x');
    symlinkSync('../shared', path.join(dir, 'a'));
    symlinkSync('../shared', path.join(dir, 'b'));
    const log = capture();
    const s = await open(dir, log.logger);
    assert.deepEqual(await names(s), ['x']);
    assert.deepEqual(s.errors(), []);
    assert.deepEqual(s.originOf('ServiceEntry', 'default', 'x'), { file: path.join(dir, 'a', 'x.yaml'), index: 0 });
    assert.deepEqual(s.status().warnings, [`${path.join(dir, 'b')}: leads to ${path.join(dir, 'a')}, which is read already; not followed`]);
  });
});

describe('directory store: walk limits', () => {
  it('stops at the limits, reports it, and removes nothing it did not reach', async () => {
    const { dir } = tempRoot();
    writeSe(path.join(dir, 'd1', 'one.yaml'), 'one');
    writeSe(path.join(dir, 'd2', 'two.yaml'), 'two');
    const log = capture();
    const s = await open(dir, log.logger, { watchFiles: false, limits: { maxDirectories: 3 } });
    assert.deepEqual(await names(s), ['one', 'two']);
    assert.equal(s.status().healthy, true);

    // A fourth folder sorted first: the walk reaches d0 and d1, then stops before d2.
    writeSe(path.join(dir, 'd0', 'zero.yaml'), 'zero');
    await s.sync();
    assert.deepEqual(await names(s), ['one', 'two', 'zero']); // 'two' is not reached, and not removed
    const status = s.status();
    assert.equal(status.healthy, false);
    assert.deepEqual(status.problems.map((p) => p.code), ['walk-limit']);
    assert.match(status.problems[0]!.message, /more than 3 directories/);
    await s.sync();
    assert.equal(log.count('config directory exceeds the walk limits; the rest of the tree is not read and nothing is removed'), 1);

    rmSync(path.join(dir, 'd0'), { recursive: true });
    await s.sync();
    assert.equal(s.status().healthy, true);
    assert.deepEqual(await names(s), ['one', 'two']);
  });

  it('bounds the depth and the number of files the same way', async () => {
    const { dir } = tempRoot();
    writeSe(path.join(dir, 'd1', 'x', 'one.yaml'), 'one');
    writeSe(path.join(dir, 'two.yaml'), 'two');
    const s = await open(dir, capture().logger, { watchFiles: false, limits: { maxDepth: 2, maxFiles: 2 } });
    assert.deepEqual(await names(s), ['one', 'two']);
    writeSe(path.join(dir, 'd1', 'x', 'y', 'deep.yaml'), 'deep'); // three levels down
    await s.sync();
    assert.match(s.status().problems[0]?.message ?? '', /more than 2 levels of directories/);
    assert.deepEqual(await names(s), ['one', 'two']);
    rmSync(path.join(dir, 'd1', 'x', 'y'), { recursive: true });
    writeSe(path.join(dir, 'three.yaml'), 'three');
    await s.sync();
    assert.match(s.status().problems[0]?.message ?? '', /more than 2 config files/);
    assert.deepEqual(await names(s), ['one', 'three', 'two']); // two.yaml is not reached this time, and kept
  });
});

describe('directory store: the directory itself', () => {
  it('keeps the last good state while the directory is moved away, refuses writes, and reads it again when it is back', async () => {
    const { root, dir } = tempRoot();
    for (const n of ['a', 'b', 'c', 'd']) writeSe(path.join(dir, n === 'd' ? 'sub' : '', `${n}.yaml`), n);
    const log = capture();
    const s = await open(dir, log.logger, { resyncIntervalMs: 50, rootPollMs: 20 });
    const w = record(s, await s.revision());
    await w.synced;
    const gone = path.join(root, 'config.gone');

    renameSync(dir, gone);
    await until('the store notices', () => !s.status().healthy);
    await sleep(300); // several periodic rescans
    assert.deepEqual(w.events, []);
    assert.deepEqual(await names(s), ['a', 'b', 'c', 'd']);
    const status = s.status();
    assert.deepEqual(status.problems.map((p) => p.code), ['root-missing']);
    assert.equal(status.problems[0]!.message, `config directory ${dir} is missing (moved or deleted); serving the last good state (4 resources) until it is back`);
    assert.equal(log.count('config directory is missing; keeping the last good state (no resource is deleted) until it is back'), 1);
    assert.equal(log.count('config file removed'), 0);
    await assert.rejects(s.create(serviceEntry('new')), SourceUnavailableError);
    assert.equal(existsSync(dir), false); // a write never recreates it

    // Edited while away, then moved back: the edit applies, nothing else changes.
    writeSe(path.join(gone, 'b.yaml'), 'b', 'b.v2.example.com');
    renameSync(gone, dir);
    await until('the store is healthy again', () => s.status().healthy);
    await w.waitFor(1);
    await sleep(200);
    assert.deepEqual(w.events.map(describeEvent), ['MODIFIED ServiceEntry/default/b']);
    assert.deepEqual(await names(s), ['a', 'b', 'c', 'd']);

    // Watched again: a new file is picked up without a sync.
    writeSe(path.join(dir, 'sub', 'e.yaml'), 'e');
    await w.waitFor(2);
    w.cancel();
    assert.equal(describeEvent(w.events[1]!), 'ADDED ServiceEntry/default/e');
  });

  it('reads a replaced directory whole; one replaced by an empty folder is held as a mass deletion until confirmed', async () => {
    const { root, dir } = tempRoot();
    for (const n of ['a', 'b', 'c', 'd']) writeSe(path.join(dir, `${n}.yaml`), n);
    const log = capture();
    const s = await open(dir, log.logger, { resyncIntervalMs: 50, rootPollMs: 20, deleteGuard: { minDeletions: 2 } });
    const w = record(s, await s.revision());
    await w.synced;

    // Replaced (a new folder under the same name, as a deploy tool swaps releases): a small change applies.
    const next = path.join(root, 'next');
    for (const n of ['a', 'b', 'c']) writeSe(path.join(next, `${n}.yaml`), n);
    writeSe(path.join(next, 'e.yaml'), 'e');
    renameSync(dir, path.join(root, 'old'));
    renameSync(next, dir);
    await w.waitFor(2);
    await sleep(200);
    assert.deepEqual(w.events.map(describeEvent), ['DELETED ServiceEntry/default/d', 'ADDED ServiceEntry/default/e']);
    assert.equal(log.count('config directory was replaced (its device and inode changed); reading the new one, subject to the mass-deletion guard'), 1);
    assert.equal(s.status().healthy, true);

    // Replaced by an empty folder: all four deletions are held.
    renameSync(dir, path.join(root, 'old2'));
    mkdirSync(dir);
    await until('the deletion is held', () => s.status().heldChange !== null);
    await sleep(200);
    assert.equal(w.events.length, 2);
    const held = s.status();
    assert.equal(held.healthy, false);
    assert.deepEqual(held.problems.map((p) => p.code), ['deletion-held']);
    assert.deepEqual({ ...held.heldChange, since: '' }, {
      since: '', deletions: 4, total: 4, additions: 0, modifications: 0,
      sample: ['ServiceEntry/default/a', 'ServiceEntry/default/b', 'ServiceEntry/default/c', 'ServiceEntry/default/e'],
      confirm: `to apply it, create ${path.join(dir, CONFIRM_DELETE_MARKER)} (touch it); to withdraw it, restore the files`,
    });
    assert.deepEqual(await names(s), ['a', 'b', 'c', 'e']);

    writeFileSync(path.join(dir, CONFIRM_DELETE_MARKER), '');
    await w.waitFor(6);
    await until('the confirmation file is consumed', () => !existsSync(path.join(dir, CONFIRM_DELETE_MARKER)));
    w.cancel();
    assert.deepEqual(w.events.slice(2).map(describeEvent).sort(), ['a', 'b', 'c', 'e'].map((n) => `DELETED ServiceEntry/default/${n}`));
    assert.deepEqual(await names(s), []);
    assert.equal(s.status().healthy, true);
  });
});

describe('directory store: mass-deletion guard', () => {
  const fill = (dir: string, folder: string, n: number): void => {
    for (let i = 0; i < n; i++) writeSe(path.join(dir, folder, `${folder}-${i}.yaml`), `${folder}-${String(i).padStart(2, '0')}`);
  };

  it('holds a change deleting most of the mesh, reports it, and applies it when the marker file appears', async () => {
    const { root, dir } = tempRoot();
    fill(dir, 'bulk', 30);
    fill(dir, 'keep', 10);
    const log = capture();
    const s = await open(dir, log.logger);
    const w = record(s, await s.revision());
    await w.synced;

    renameSync(path.join(dir, 'bulk'), path.join(root, 'bulk.away'));
    await until('the deletion is held', () => s.status().heldChange !== null);
    writeSe(path.join(dir, 'keep', 'new.yaml'), 'new'); // held with it
    await until('the addition joins the held change', () => s.status().heldChange?.additions === 1);
    await s.sync();
    await sleep(100);
    assert.equal(w.events.length, 0);
    assert.equal((await names(s)).length, 40);
    const status = s.status();
    assert.equal(status.healthy, false);
    assert.equal(status.heldChange?.deletions, 30);
    assert.equal(status.heldChange?.total, 40);
    assert.equal(status.heldChange?.sample.length, 20);
    const heldLogs = log.lines.filter((l) => l.msg === 'mass deletion held: the change would delete most of the mesh; serving the last good state until it is confirmed');
    assert.deepEqual(heldLogs.map((l) => [l.level, l['deletions'], l['additions']]), [[50, 30, 0], [50, 30, 1]]);
    await assert.rejects(s.create(serviceEntry('during')), (e: unknown) => e instanceof SourceUnavailableError && /is held for confirmation/.test(e.message));

    writeFileSync(path.join(dir, CONFIRM_DELETE_MARKER), 'kind: NotConfig\n'); // hidden: never parsed
    await w.waitFor(31);
    await until('the marker is consumed', () => !existsSync(path.join(dir, CONFIRM_DELETE_MARKER)));
    w.cancel();
    assert.equal(w.events.filter((e) => e.type === 'DELETED').length, 30);
    assert.deepEqual(w.events.filter((e) => e.type !== 'DELETED').map(describeEvent), ['ADDED ServiceEntry/default/new']);
    assert.equal(log.count('mass deletion confirmed; applied'), 1);
    assert.equal(s.status().healthy, true);
    assert.deepEqual(s.errors(), []);
  });

  it('withdraws a held deletion when most files come back, applying what remains', async () => {
    const { dir } = tempRoot();
    fill(dir, 'bulk', 30);
    const log = capture();
    const s = await open(dir, log.logger, { watchFiles: false });
    const w = record(s, await s.revision());
    await w.synced;
    rmSync(path.join(dir, 'bulk'), { recursive: true });
    await s.sync();
    assert.equal(s.status().heldChange?.deletions, 30);
    fill(dir, 'bulk', 25); // bulk-25 … bulk-29 stay deleted: 5, at most the minimum of 10
    await s.sync();
    await sleep(50);
    w.cancel();
    assert.deepEqual(w.events.map(describeEvent), [25, 26, 27, 28, 29].map((i) => `DELETED ServiceEntry/default/bulk-${i}`));
    assert.equal(s.status().healthy, true);
    assert.equal(log.count('held change withdrawn (the files were restored); applied what remains'), 1);
  });

  it('removes a confirmation file that finds nothing held, so it cannot confirm a later deletion', async () => {
    const { dir } = tempRoot();
    fill(dir, 'bulk', 30);
    const log = capture();
    const s = await open(dir, log.logger, { watchFiles: false });
    writeFileSync(path.join(dir, CONFIRM_DELETE_MARKER), '');
    await s.sync();
    assert.equal(existsSync(path.join(dir, CONFIRM_DELETE_MARKER)), false);
    assert.equal(log.count('confirmation file found but no change is held; removed it (create it again after a change is held)'), 1);
    rmSync(path.join(dir, 'bulk'), { recursive: true });
    await s.sync();
    assert.equal(s.status().heldChange?.deletions, 30);
  });

  it('lets a confirmation that cannot be removed confirm once, not every later deletion', async () => {
    const { dir } = tempRoot();
    fill(dir, 'bulk', 30);
    const log = capture();
    const s = await open(dir, log.logger, { watchFiles: false });
    rmSync(path.join(dir, 'bulk'), { recursive: true });
    await s.sync();
    assert.equal(s.status().heldChange?.deletions, 30);
    mkdirSync(path.join(dir, CONFIRM_DELETE_MARKER)); // unlink() fails on it, as on a read-only volume
    await s.sync();
    assert.equal(s.status().heldChange, null);
    assert.equal(log.count('cannot remove the confirmation file; it confirms nothing more until it is changed or removed'), 1);
    fill(dir, 'again', 30);
    await s.sync();
    rmSync(path.join(dir, 'again'), { recursive: true });
    await s.sync();
    assert.equal(s.status().heldChange?.deletions, 30); // not confirmed by the stale marker
    rmSync(path.join(dir, CONFIRM_DELETE_MARKER), { recursive: true });
    writeFileSync(path.join(dir, CONFIRM_DELETE_MARKER), '');
    await s.sync();
    assert.equal(s.status().heldChange, null);
  });

  it('confirms only a change held before the confirmation file is found, and only while it deletes nothing more', async () => {
    const { dir } = tempRoot();
    fill(dir, 'bulk', 30);
    fill(dir, 'more', 10);
    fill(dir, 'keep', 5);
    const marker = path.join(dir, CONFIRM_DELETE_MARKER);
    const log = capture();
    const s = await open(dir, log.logger, { watchFiles: false });

    // The file arrives with the deletion (or was there before it): it may predate it, so it confirms nothing.
    rmSync(path.join(dir, 'bulk'), { recursive: true });
    writeFileSync(marker, '');
    await s.sync();
    assert.equal(s.status().heldChange?.deletions, 30);
    assert.equal(existsSync(marker), false);
    assert.equal(log.count('confirmation file found with a change not held before; it may predate the change, so it confirms nothing; removed it (create it again now that the change is held)'), 1);

    // The held change grows in the batch that finds the file: it confirms nothing.
    rmSync(path.join(dir, 'more'), { recursive: true });
    writeFileSync(marker, '');
    await s.sync();
    assert.equal(s.status().heldChange?.deletions, 40);
    assert.equal(existsSync(marker), false);
    assert.equal(log.count('confirmation file found, but the held change now deletes more than when it was reported; it confirms nothing; removed it (create it again to apply the change as it is now)'), 1);

    // Created while the change is held, and nothing else changed: confirmed. So is a change that shrank meanwhile.
    fill(dir, 'more', 2);
    writeFileSync(marker, '');
    await s.sync();
    assert.equal(s.status().heldChange, null);
    assert.equal(log.count('mass deletion confirmed; applied'), 1);
    assert.deepEqual((await names(s)).sort(), ['keep-00', 'keep-01', 'keep-02', 'keep-03', 'keep-04', 'more-00', 'more-01']);
    assert.equal(existsSync(marker), false);
  });

  it('lets no confirmation file found in a directory that was away or replaced confirm anything', async () => {
    const { root, dir } = tempRoot();
    fill(dir, 'bulk', 30);
    const marker = path.join(dir, CONFIRM_DELETE_MARKER);
    const outOfSight = 'confirmation file found in a directory that was away or replaced; it may predate the change, so it confirms nothing; removed it (create it again once the change is reported held)';
    const log = capture();
    const s = await open(dir, log.logger, { watchFiles: false });

    // Moved away, emptied and "confirmed" there, moved back: held, the file removed.
    renameSync(dir, path.join(root, 'away'));
    await s.sync();
    assert.equal(s.status().problems.some((p) => p.code === 'root-missing'), true);
    rmSync(path.join(root, 'away', 'bulk'), { recursive: true });
    writeFileSync(path.join(root, 'away', CONFIRM_DELETE_MARKER), '');
    renameSync(path.join(root, 'away'), dir);
    await s.sync();
    assert.equal(s.status().heldChange?.deletions, 30);
    assert.equal((await names(s)).length, 30);
    assert.equal(existsSync(marker), false);
    assert.equal(log.count(outOfSight), 1);

    // Held before it went away, the file created while it was away: still held.
    renameSync(dir, path.join(root, 'away'));
    await s.sync();
    writeFileSync(path.join(root, 'away', CONFIRM_DELETE_MARKER), '');
    renameSync(path.join(root, 'away'), dir);
    await s.sync();
    assert.equal(s.status().heldChange?.deletions, 30);
    assert.equal(existsSync(marker), false);
    assert.equal(log.count(outOfSight), 2);

    // Replaced by a folder that brings its own file (a release with the file committed): still held.
    const next = path.join(root, 'next');
    mkdirSync(next);
    writeFileSync(path.join(next, CONFIRM_DELETE_MARKER), '');
    renameSync(dir, path.join(root, 'old'));
    renameSync(next, dir);
    await s.sync();
    assert.equal(s.status().heldChange?.deletions, 30);
    assert.equal(existsSync(marker), false);
    assert.equal(log.count(outOfSight), 3);

    // Created now, with the change held and the directory in place: confirmed.
    writeFileSync(marker, '');
    await s.sync();
    assert.equal(s.status().heldChange, null);
    assert.deepEqual(await names(s), []);
    assert.equal(log.count('mass deletion confirmed; applied'), 1);
  });

  it('never holds a write made through the store, however much of the mesh it deletes', async () => {
    const { dir } = tempRoot();
    writeSe(path.join(dir, 'only.yaml'), 'only');
    const s = await open(dir, capture().logger, { watchFiles: false, deleteGuard: { fraction: 0.5, minDeletions: 0 } });
    await s.delete('ServiceEntry', 'default', 'only');
    assert.deepEqual(await names(s), []);
    assert.equal(s.status().healthy, true);
  });

  it('applies any deletion when the guard is off (fraction 0)', async () => {
    const { dir } = tempRoot();
    fill(dir, 'bulk', 30);
    const s = await open(dir, capture().logger, { watchFiles: false, deleteGuard: { fraction: 0 } });
    rmSync(path.join(dir, 'bulk'), { recursive: true });
    await s.sync();
    assert.deepEqual(await names(s), []);
    assert.equal(s.status().healthy, true);
  });
});

describe('directory store: errors follow the files as they are now', () => {
  it('clears the error of a bad edit reverted to the exact last good bytes', async () => {
    const { dir } = tempRoot();
    const file = path.join(dir, 'svc.yaml');
    const good = [toYaml(serviceEntry('one')), toYaml(serviceEntry('two'))].join('---\n');
    writeFileSync(file, good);
    const log = capture();
    const s = await open(dir, log.logger);
    const w = record(s, await s.revision());
    await w.synced;

    writeFileSync(file, good.slice(0, good.lastIndexOf('kind: Serv') + 10)); // truncated mid-word: refused
    await until('the error is reported', () => s.errors().length > 0);
    writeFileSync(file, good); // reverted
    await until('the error clears', () => s.errors().length === 0);
    assert.equal(log.count('config file restored to its last good content'), 1);

    // The same through sync(), and a write through the store works again.
    writeFileSync(file, 'not: [valid');
    await s.sync();
    assert.equal(s.errors().length, 1);
    writeFileSync(file, good);
    await s.sync();
    assert.deepEqual(s.errors(), []);
    const one = (await s.get('ServiceEntry', 'default', 'one'))!;
    await s.update({ ...one, metadata: { ...one.metadata, labels: { v: '2' } } });
    await w.waitFor(1);
    w.cancel();
    assert.deepEqual(w.events.map(describeEvent), ['MODIFIED ServiceEntry/default/one']);
  });

  it('logs each duplicate definition once, naming the file, the document and the one served', async () => {
    const { dir } = tempRoot();
    writeSe(path.join(dir, 'a.yaml'), 'dup');
    writeFileSync(path.join(dir, 'b.yaml'), [toYaml(serviceEntry('other')), toYaml(serviceEntry('dup', { host: 'b.example.com' }))].join('---\n'));
    const log = capture();
    const s = await open(dir, log.logger);
    await s.sync();
    await s.sync();
    const dups = log.lines.filter((l) => l.msg === 'duplicate resource: an earlier file (in path order) defines it; this definition is not served');
    assert.deepEqual(dups.map((l) => [l.level, l['resource'], l['file'], l['index'], l['servedFrom']]), [
      [40, 'ServiceEntry/default/dup', path.join(dir, 'b.yaml'), 1, `${path.join(dir, 'a.yaml')}:0`],
    ]);
    assert.equal(s.status().errors, 1);
    assert.equal(s.status().healthy, true); // served as before: an error to fix, not an outage
    unlinkSync(path.join(dir, 'a.yaml'));
    await s.sync();
    assert.deepEqual(s.errors(), []);
  });
});
