// The ConfigStore conformance suite: the same cases, asserting the same outcomes, for every
// backend. Cases that only make sense for one backend (etcd restarts, files edited by hand)
// are part of the suite and skip, saying why, where the harness cannot perform them.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseDocuments, toYaml, type Resource } from '../../src/api/index.ts';
import {
  AlreadyExistsError,
  ConflictError,
  InvalidSelectorError,
  NotFoundError,
  RevisionCompactedError,
  ValidationFailedError,
  type ConfigStore,
  type WatchEvent,
} from '../../src/config/index.ts';

export interface Harness {
  /** A new, empty store (each call may wipe what the previous one held). */
  open(): Promise<ConfigStore>;
  /** A second store on the same data, as another replica would open it. */
  openPeer(): Promise<ConfigStore>;
  /** Whether two stores on the same data may write concurrently (etcd); the directory store serializes writes in one process. */
  multiWriter: boolean;
  /** Bulk-loads resources the fastest way the backend allows (files written directly, parallel puts). */
  seed(resources: Resource[]): Promise<void>;
  /** Applies outside edits now (directory store); no-op elsewhere. */
  settle(store: ConfigStore): Promise<void>;
  cleanup(): Promise<void>;
  /** etcd: stops and restarts the server process. */
  restartBackend?: () => Promise<void>;
  /** etcd: a store whose connection to the backend the test can cut and heal, and a compaction. */
  partitioned?: () => Promise<{ store: ConfigStore; cut(): void; heal(): void; close(): Promise<void> }>;
  compact?: () => Promise<void>;
  /** etcd: writes a raw value under the store's prefix, as another tool could. */
  putRaw?: (keySuffix: string, value: string) => Promise<void>;
  /** directory: the config directory, to edit files by hand. */
  dir?: string;
}

export function serviceEntry(name: string, opts: { namespace?: string; labels?: Record<string, string>; host?: string; port?: number } = {}): Resource {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name, namespace: opts.namespace ?? 'default', ...(opts.labels !== undefined ? { labels: opts.labels } : {}) },
    spec: {
      hosts: [opts.host ?? `${name}.example.com`],
      ports: [{ number: opts.port ?? 80, name: 'http', protocol: 'HTTP' }],
      resolution: 'DNS',
      location: 'MESH_EXTERNAL',
    },
  };
}

export function workloadEntry(name: string, namespace: string, address: string, labels: Record<string, string>): Resource {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'WorkloadEntry',
    metadata: { name, namespace, labels },
    spec: { address, labels, ports: { http: 8080 } },
  };
}

/** Collects a watch's events; waitFor polls (no timing assertions) until a condition holds. */
export function record(store: ConfigStore, from: number | undefined): { events: WatchEvent[]; cancel(): void; synced: Promise<number>; waitFor(n: number): Promise<void> } {
  const events: WatchEvent[] = [];
  const w = store.watch(from, (e) => events.push(e));
  return {
    events,
    synced: w.synced,
    cancel: () => w.cancel(),
    async waitFor(n: number) {
      const deadline = Date.now() + 60_000;
      while (events.length < n) {
        if (Date.now() > deadline) assert.fail(`expected ${n} events, got ${events.length}: ${events.slice(-5).map(describeEvent).join(', ')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

export function describeEvent(e: WatchEvent): string {
  return `${e.type} ${e.resource.kind}/${e.resource.metadata.namespace}/${e.resource.metadata.name}`;
}

function hosts(r: Resource | undefined): unknown {
  return (r?.spec as { hosts?: unknown } | undefined)?.hosts;
}

/** Retries an operation while the backend is coming back (not for typed store errors). */
async function whileRecovering<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ConflictError || err instanceof NotFoundError || err instanceof AlreadyExistsError || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export function conformanceSuite(name: string, makeHarness: () => Promise<Harness>): void {
  describe(`ConfigStore conformance: ${name}`, () => {
    let h: Harness;
    let store: ConfigStore;
    before(async () => {
      h = await makeHarness();
    });
    after(async () => {
      await store?.close();
      await h?.cleanup();
    });
    const fresh = async (): Promise<ConfigStore> => {
      await store?.close();
      store = await h.open();
      return store;
    };

    it('creates, reads, updates and deletes with resourceVersion checks', async () => {
      const s = await fresh();
      const created = await s.create(serviceEntry('reviews', { labels: { app: 'reviews' } }));
      assert.match(created.metadata.resourceVersion ?? '', /^[0-9]+$/);
      assert.equal(created.metadata.generation, 1);
      assert.ok(!Number.isNaN(Date.parse(created.metadata.creationTimestamp ?? '')));
      assert.deepEqual(await s.get('ServiceEntry', 'default', 'reviews'), created);
      assert.equal(await s.revision(), Number(created.metadata.resourceVersion));

      await assert.rejects(s.create(serviceEntry('reviews')), AlreadyExistsError);

      const updated = await s.update({ ...created, spec: { ...(created.spec as object), hosts: ['reviews.new.example.com'] } });
      assert.ok(Number(updated.metadata.resourceVersion) > Number(created.metadata.resourceVersion));
      assert.equal(updated.metadata.generation, 2);
      assert.equal(updated.metadata.creationTimestamp, created.metadata.creationTimestamp);
      assert.deepEqual(hosts(await s.get('ServiceEntry', 'default', 'reviews')), ['reviews.new.example.com']);

      // A label change is a new version but not a new generation (the spec did not change).
      const relabeled = await s.update({ ...updated, metadata: { ...updated.metadata, labels: { app: 'reviews', tier: 'web' } } });
      assert.equal(relabeled.metadata.generation, 2);
      assert.ok(Number(relabeled.metadata.resourceVersion) > Number(updated.metadata.resourceVersion));

      const stale = await s.update({ ...created, spec: { ...(created.spec as object), hosts: ['stale.example.com'] } }).catch((e: unknown) => e);
      assert.ok(stale instanceof ConflictError);
      assert.equal(stale.expected, created.metadata.resourceVersion);
      assert.equal(stale.actual, relabeled.metadata.resourceVersion);
      const { resourceVersion: _rv, ...noVersion } = relabeled.metadata;
      const missing = await s.update({ ...relabeled, metadata: noVersion }).catch((e: unknown) => e);
      assert.ok(missing instanceof ConflictError);
      assert.equal(missing.expected, undefined);
      await assert.rejects(s.update(serviceEntry('absent')), NotFoundError);
      assert.deepEqual(hosts(await s.get('ServiceEntry', 'default', 'reviews')), ['reviews.new.example.com']);

      await assert.rejects(s.delete('ServiceEntry', 'default', 'reviews', { resourceVersion: created.metadata.resourceVersion! }), ConflictError);
      const deleted = await s.delete('ServiceEntry', 'default', 'reviews', { resourceVersion: relabeled.metadata.resourceVersion! });
      assert.deepEqual(deleted.spec, relabeled.spec);
      assert.ok(Number(deleted.metadata.resourceVersion) > Number(relabeled.metadata.resourceVersion));
      assert.equal(await s.get('ServiceEntry', 'default', 'reviews'), undefined);
      await assert.rejects(s.delete('ServiceEntry', 'default', 'reviews'), NotFoundError);
      assert.deepEqual(await s.list('ServiceEntry'), []);
    });

    it('lists by kind and namespace, sorted by namespace then name', async () => {
      const s = await fresh();
      await s.create(serviceEntry('b', { namespace: 'prod' }));
      await s.create(serviceEntry('a', { namespace: 'prod' }));
      await s.create(serviceEntry('z', { namespace: 'dev' }));
      await s.create(workloadEntry('vm-1', 'prod', '10.0.0.1', { app: 'ratings' }));
      const all = await s.list('ServiceEntry');
      assert.deepEqual(all.map((r) => `${r.metadata.namespace}/${r.metadata.name}`), ['dev/z', 'prod/a', 'prod/b']);
      assert.deepEqual((await s.list('ServiceEntry', { namespace: 'prod' })).map((r) => r.metadata.name), ['a', 'b']);
      assert.deepEqual((await s.list('WorkloadEntry')).map((r) => r.metadata.name), ['vm-1']);
      assert.deepEqual(await s.list('ServiceEntry', { namespace: 'staging' }), []);
      assert.deepEqual(await s.list('Gateway'), []);
    });

    it('filters by Kubernetes label selectors', async () => {
      const s = await fresh();
      const labels: Record<string, Record<string, string>> = {
        r1: { app: 'reviews', version: 'v1', tier: 'web' },
        r2: { app: 'reviews', version: 'v2', tier: 'api', canary: 'true' },
        r3: { app: 'reviews', version: 'v3' },
        p1: { app: 'productpage', tier: 'web' },
        d1: { app: 'details', tier: 'db' },
        n1: {},
      };
      for (const [n, l] of Object.entries(labels)) await s.create(serviceEntry(n, { labels: l }));
      const names = async (sel: string | Record<string, string>): Promise<string[]> => (await s.list('ServiceEntry', { labelSelector: sel })).map((r) => r.metadata.name);
      assert.deepEqual(await names('app=reviews'), ['r1', 'r2', 'r3']);
      assert.deepEqual(await names('app==reviews,version!=v1'), ['r2', 'r3']);
      assert.deepEqual(await names('version!=v1'), ['d1', 'n1', 'p1', 'r2', 'r3']); // absent label matches !=
      assert.deepEqual(await names('tier in (web, api)'), ['p1', 'r1', 'r2']);
      assert.deepEqual(await names('tier notin (web)'), ['d1', 'n1', 'r2', 'r3']);
      assert.deepEqual(await names('canary'), ['r2']);
      assert.deepEqual(await names('!canary,app=reviews'), ['r1', 'r3']);
      assert.deepEqual(await names('app=reviews,tier,!canary'), ['r1']);
      assert.deepEqual(await names(''), ['d1', 'n1', 'p1', 'r1', 'r2', 'r3']);
      assert.deepEqual(await names({ app: 'reviews', version: 'v2' }), ['r2']);
      const bad = await s.list('ServiceEntry', { labelSelector: 'app in (a,b' }).catch((e: unknown) => e);
      assert.ok(bad instanceof InvalidSelectorError);
      assert.equal(bad.message, 'invalid label selector "app in (a,b" at position 11: expected \',\' or \')\'');
      await assert.rejects(s.list('ServiceEntry', { labelSelector: 'app=reviews version=v1' }), InvalidSelectorError);
    });

    it('lets exactly one of concurrent updates of one resource win', async () => {
      const s = await fresh();
      const peer = h.multiWriter ? await h.openPeer() : s;
      try {
        const created = await s.create(serviceEntry('ratings'));
        const writers = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? s : peer));
        const results = await Promise.allSettled(
          writers.map((w, i) => w.update({ ...created, spec: { ...(created.spec as object), hosts: [`ratings-${i}.example.com`] } })),
        );
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r) => r.status === 'rejected');
        assert.equal(won.length, 1);
        assert.equal(lost.length, 7);
        for (const r of lost) assert.ok(r.reason instanceof ConflictError, String(r.reason));
        const winner = (won[0] as PromiseFulfilledResult<Resource>).value;
        assert.deepEqual(hosts(await s.get('ServiceEntry', 'default', 'ratings')), hosts(winner));
      } finally {
        if (peer !== s) await peer.close();
      }
    });

    it('refuses an invalid write whole, with every error', async () => {
      const s = await fresh();
      const before = await s.revision();
      const invalid: Resource = {
        ...serviceEntry('broken'),
        spec: { hosts: ['ok.example.com', '*'], ports: [{ number: 70000, name: 'http', protocol: 'HTTP' }], resolution: 'DNS' },
      };
      const err = await s.create(invalid).catch((e: unknown) => e);
      assert.ok(err instanceof ValidationFailedError, String(err));
      const lines = err.errors.map(String);
      assert.ok(lines.some((l) => l.includes('ServiceEntry/default/broken') && l.includes('spec.ports[0].number')), lines.join('\n'));
      assert.ok(lines.length >= 1);
      assert.equal(await s.get('ServiceEntry', 'default', 'broken'), undefined);
      assert.equal(await s.revision(), before);

      const good = await s.create(serviceEntry('fine'));
      await assert.rejects(s.update({ ...good, spec: { ...(good.spec as object), ports: [{ number: 0, name: 'http', protocol: 'HTTP' }] } }), ValidationFailedError);
      assert.deepEqual(await s.get('ServiceEntry', 'default', 'fine'), good);
      await assert.rejects(s.create({ apiVersion: 'networking.istio.io/v1', kind: 'Unicorn', metadata: { name: 'x', namespace: 'default' }, spec: {} }), ValidationFailedError);
    });

    it('watches from the current state, then every change in order', async () => {
      const s = await fresh();
      await s.create(serviceEntry('b'));
      await s.create(serviceEntry('a'));
      await s.create(workloadEntry('vm', 'default', '10.1.0.1', { app: 'a' }));
      const w = record(s, undefined);
      const syncedAt = await w.synced;
      assert.deepEqual(w.events.map(describeEvent), ['ADDED ServiceEntry/default/a', 'ADDED ServiceEntry/default/b', 'ADDED WorkloadEntry/default/vm']);
      assert.equal(syncedAt, await s.revision());
      const a = (await s.get('ServiceEntry', 'default', 'a'))!;
      const c = await s.create(serviceEntry('c'));
      const a2 = await s.update({ ...a, spec: { ...(a.spec as object), hosts: ['a2.example.com'] } });
      const gone = await s.delete('ServiceEntry', 'default', 'b');
      await w.waitFor(6);
      w.cancel();
      const live = w.events.slice(3);
      assert.deepEqual(live.map(describeEvent), ['ADDED ServiceEntry/default/c', 'MODIFIED ServiceEntry/default/a', 'DELETED ServiceEntry/default/b']);
      assert.deepEqual(live.map((e) => e.revision), [c, a2, gone].map((r) => Number(r.metadata.resourceVersion)));
      for (const e of w.events) assert.equal(e.resource.metadata.resourceVersion, String(e.revision));
      assert.deepEqual(hosts(live[1]!.resource), ['a2.example.com']);
      // No event after cancel.
      await s.create(serviceEntry('d'));
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(w.events.length, 6);
    });

    it('watches from a revision: only later changes, without repeats', async () => {
      const s = await fresh();
      await s.create(serviceEntry('old'));
      const from = await s.revision();
      const x = await s.create(serviceEntry('x'));
      await s.update({ ...x, metadata: { ...x.metadata, labels: { v: '2' } } });
      await s.delete('ServiceEntry', 'default', 'old');
      const w = record(s, from);
      await w.synced;
      await w.waitFor(3);
      assert.deepEqual(w.events.map(describeEvent), ['ADDED ServiceEntry/default/x', 'MODIFIED ServiceEntry/default/x', 'DELETED ServiceEntry/default/old']);
      const last = w.events[2]!.revision;
      // Resuming from the last revision seen delivers nothing old, then new changes.
      w.cancel();
      const resumed = record(s, last);
      await resumed.synced;
      await s.create(serviceEntry('y'));
      await resumed.waitFor(1);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(resumed.events.map(describeEvent), ['ADDED ServiceEntry/default/y']);
      resumed.cancel();
    });

    it('reports a revision it no longer has as RevisionCompactedError', async (t) => {
      const s = await fresh();
      await s.create(serviceEntry('a'));
      const old = await s.revision();
      await s.create(serviceEntry('b'));
      if (h.compact !== undefined) await h.compact();
      else if (h.dir !== undefined) {
        // The directory store keeps history since it opened: a revision before that is gone.
      } else return t.skip('backend cannot compact');
      const probe = h.compact !== undefined ? old : 1;
      let onError: Error | undefined;
      const w = s.watch(probe, () => assert.fail('no event expected'), { onError: (e) => (onError = e) });
      await assert.rejects(w.synced, RevisionCompactedError);
      await new Promise((r) => setTimeout(r, 50));
      assert.ok(onError instanceof RevisionCompactedError);
    });

    it('resumes a watch across a restart of etcd without losing or repeating events', async (t) => {
      if (h.restartBackend === undefined) return t.skip('only etcd has a server process to restart');
      const s = await fresh();
      const writer = await h.openPeer();
      try {
        for (let i = 0; i < 5; i++) await s.create(serviceEntry(`pre-${i}`));
        const w = record(s, undefined);
        await w.synced;
        await h.restartBackend();
        const written: string[] = [];
        for (let i = 0; i < 20; i++) {
          const r = await whileRecovering(() => writer.create(serviceEntry(`post-${i}`)));
          written.push(r.metadata.resourceVersion!);
        }
        const victim = (await whileRecovering(() => writer.get('ServiceEntry', 'default', 'pre-0')))!;
        const del = await whileRecovering(() => writer.delete('ServiceEntry', 'default', 'pre-0', { resourceVersion: victim.metadata.resourceVersion! }));
        await w.waitFor(26);
        await new Promise((r) => setTimeout(r, 300));
        w.cancel();
        assert.equal(w.events.length, 26);
        const after = w.events.slice(5);
        assert.deepEqual(after.map((e) => e.resource.metadata.resourceVersion), [...written, del.metadata.resourceVersion]);
        assert.deepEqual(after.slice(0, 20).map(describeEvent), written.map((_, i) => `ADDED ServiceEntry/default/post-${i}`));
        assert.equal(describeEvent(after[20]!), 'DELETED ServiceEntry/default/pre-0');
      } finally {
        await writer.close();
      }
    });

    it('resumes after a lost connection, and relists with exact differences when its revision was compacted', async (t) => {
      if (h.partitioned === undefined || h.compact === undefined) return t.skip('only etcd has connections to lose and a history to compact');
      const s = await fresh();
      for (const n of ['keep', 'change', 'remove']) await s.create(serviceEntry(n));
      const p = await h.partitioned();
      try {
        const w = record(p.store, undefined);
        await w.synced;
        assert.equal(w.events.length, 3);

        // 1. Connection lost, no compaction: resumes from the last revision + 1.
        p.cut();
        const during = await s.create(serviceEntry('during-cut'));
        p.heal();
        await w.waitFor(4);
        assert.equal(describeEvent(w.events[3]!), 'ADDED ServiceEntry/default/during-cut');
        assert.equal(w.events[3]!.revision, Number(during.metadata.resourceVersion));

        // 2. Connection lost while history is compacted: relist, emit only what differs.
        p.cut();
        const change = (await s.get('ServiceEntry', 'default', 'change'))!;
        const changed = await s.update({ ...change, spec: { ...(change.spec as object), hosts: ['changed.example.com'] } });
        await s.delete('ServiceEntry', 'default', 'remove');
        const added = await s.create(serviceEntry('added'));
        await h.compact();
        p.heal();
        await w.waitFor(7);
        await new Promise((r) => setTimeout(r, 300));
        w.cancel();
        const relist = w.events.slice(4);
        assert.deepEqual(relist.map(describeEvent), ['MODIFIED ServiceEntry/default/change', 'ADDED ServiceEntry/default/added', 'DELETED ServiceEntry/default/remove']);
        assert.equal(relist[0]!.revision, Number(changed.metadata.resourceVersion));
        assert.equal(relist[1]!.revision, Number(added.metadata.resourceVersion));
        assert.deepEqual(hosts(relist[0]!.resource), ['changed.example.com']);
        // The consumer's view equals the store's.
        const view = new Map<string, string>();
        for (const e of w.events) {
          if (e.type === 'DELETED') view.delete(e.resource.metadata.name);
          else view.set(e.resource.metadata.name, e.resource.metadata.resourceVersion!);
        }
        const actual = new Map((await s.list('ServiceEntry')).map((r) => [r.metadata.name, r.metadata.resourceVersion!]));
        assert.deepEqual(view, actual);
      } finally {
        await p.close();
      }
    });

    it('picks up files edited outside the store, including rename-into-place and new folders', async (t) => {
      if (h.dir === undefined) return t.skip('only the directory store has files to edit by hand');
      const dir = h.dir;
      const s = await fresh();
      const w = record(s, undefined);
      await w.synced;
      const file = path.join(dir, 'mesh.yaml');
      await writeFile(file, [toYaml(serviceEntry('one')), toYaml(serviceEntry('two'))].join('---\n'));
      await w.waitFor(2);
      assert.deepEqual(w.events.map(describeEvent), ['ADDED ServiceEntry/default/one', 'ADDED ServiceEntry/default/two']);
      // An editor's save: write a temp file, rename it over the original. Only 'two' changed.
      const tmp = path.join(dir, '.mesh.yaml.swp');
      await writeFile(tmp, [toYaml(serviceEntry('one')), toYaml(serviceEntry('two', { host: 'two.v2.example.com' }))].join('---\n'));
      await rename(tmp, file);
      await w.waitFor(3);
      assert.equal(describeEvent(w.events[2]!), 'MODIFIED ServiceEntry/default/two');
      assert.deepEqual(hosts(w.events[2]!.resource), ['two.v2.example.com']);
      await mkdir(path.join(dir, 'team-a', 'nested'), { recursive: true });
      await writeFile(path.join(dir, 'team-a', 'nested', 'vm.json'), JSON.stringify(workloadEntry('vm', 'team-a', '10.2.0.1', { app: 'x' })));
      await w.waitFor(4);
      assert.equal(describeEvent(w.events[3]!), 'ADDED WorkloadEntry/team-a/vm');
      await unlink(file);
      await w.waitFor(6);
      assert.deepEqual(w.events.slice(4).map(describeEvent), ['DELETED ServiceEntry/default/one', 'DELETED ServiceEntry/default/two']);
      await rm(path.join(dir, 'team-a'), { recursive: true });
      await w.waitFor(7);
      assert.equal(describeEvent(w.events[6]!), 'DELETED WorkloadEntry/team-a/vm');
      w.cancel();
      assert.deepEqual(s.errors(), []);
    });

    it('keeps the last good state when a file is half-written or invalid, and says why', async (t) => {
      if (h.dir === undefined) return t.skip('only the directory store has files to edit by hand');
      const dir = h.dir;
      const s = await fresh();
      const file = path.join(dir, 'edge.yaml');
      const good = [toYaml(serviceEntry('gw-a')), toYaml(serviceEntry('gw-b'))].join('---\n');
      await writeFile(file, good);
      await h.settle(s);
      const before = await s.list('ServiceEntry');
      assert.equal(before.length, 2);
      const w = record(s, await s.revision());
      await w.synced;

      // Half-written: the text stops in the middle of the second document.
      await writeFile(file, good.slice(0, good.length - 40));
      await h.settle(s);
      assert.deepEqual(await s.list('ServiceEntry'), before);
      assert.equal(s.errors().length >= 1, true);
      assert.ok(s.errors().every((e) => e.file === file), s.errors().map(String).join('\n'));

      // Valid YAML, but the second document is invalid: the change to the first does not apply either.
      const bad = serviceEntry('gw-b');
      (bad.spec as { ports: Array<{ number: number }> }).ports[0]!.number = 0;
      await writeFile(file, [toYaml(serviceEntry('gw-a', { host: 'new.example.com' })), toYaml(bad)].join('---\n'));
      await h.settle(s);
      assert.deepEqual(await s.list('ServiceEntry'), before);
      const errors = s.errors().map(String);
      assert.equal(errors.length, 1, errors.join('\n'));
      // A write through the store would overwrite that edit: refused until the file is fixed.
      const gwA = (await s.get('ServiceEntry', 'default', 'gw-a'))!;
      await assert.rejects(s.update({ ...gwA, metadata: { ...gwA.metadata, labels: { x: 'y' } } }), ConflictError);
      assert.match(errors[0]!, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:1 ServiceEntry/default/gw-b: spec\\.ports\\[0\\]\\.number: `));

      // Fixed: the whole file applies, the error clears.
      await writeFile(file, [toYaml(serviceEntry('gw-a', { host: 'new.example.com' })), toYaml(serviceEntry('gw-b'))].join('---\n'));
      await h.settle(s);
      assert.deepEqual(s.errors(), []);
      assert.deepEqual(hosts(await s.get('ServiceEntry', 'default', 'gw-a')), ['new.example.com']);
      await w.waitFor(1);
      await new Promise((r) => setTimeout(r, 200));
      w.cancel();
      assert.deepEqual(w.events.map(describeEvent), ['MODIFIED ServiceEntry/default/gw-a']);
    });

    it('serves a resource defined in two files from the first in path order, reports the other, and refuses nothing else', async (t) => {
      if (h.dir === undefined) return t.skip('only the directory store reads files');
      const dir = h.dir;
      await store?.close();
      rmSync(dir, { recursive: true, force: true });
      await mkdir(path.join(dir, 'a'), { recursive: true });
      const first = path.join(dir, 'a', 'first.yaml');
      const second = path.join(dir, 'b.yaml');
      await writeFile(first, [toYaml(serviceEntry('dup', { host: 'first.example.com' })), toYaml(serviceEntry('keep-a'))].join('---\n'));
      await writeFile(second, [toYaml(serviceEntry('other')), toYaml(serviceEntry('dup', { host: 'second.example.com' }))].join('---\n'));
      store = await h.openPeer();
      const s = store;
      const names = async (): Promise<string[]> => (await s.list('ServiceEntry')).map((r) => r.metadata.name);
      const duplicateError = `${second}:1 ServiceEntry/default/dup: metadata.name: duplicate resource: already defined in ${first}:0; this definition is not served`;
      assert.deepEqual(hosts(await s.get('ServiceEntry', 'default', 'dup')), ['first.example.com']);
      assert.deepEqual(await names(), ['dup', 'keep-a', 'other']); // the rest of the second file is served
      assert.deepEqual(s.errors().map(String), [duplicateError]);
      const w = record(s, await s.revision());
      await w.synced;

      // Moving the first file out of the tree serves the second definition.
      const away = path.join(dir, '..', 'first.yaml.away');
      await rename(first, away);
      await h.settle(s);
      assert.deepEqual(hosts(await s.get('ServiceEntry', 'default', 'dup')), ['second.example.com']);
      assert.deepEqual(await names(), ['dup', 'other']);
      assert.deepEqual(s.errors(), []);

      // Moving it back: the first in path order is served again, and nothing of either file is refused.
      await rename(away, first);
      await h.settle(s);
      assert.deepEqual(hosts(await s.get('ServiceEntry', 'default', 'dup')), ['first.example.com']);
      assert.deepEqual(await names(), ['dup', 'keep-a', 'other']);
      assert.deepEqual(s.errors().map(String), [duplicateError]);
      await w.waitFor(4);
      await new Promise((r) => setTimeout(r, 200));
      w.cancel();
      assert.deepEqual(w.events.map(describeEvent), [
        'MODIFIED ServiceEntry/default/dup', 'DELETED ServiceEntry/default/keep-a',
        'MODIFIED ServiceEntry/default/dup', 'ADDED ServiceEntry/default/keep-a',
      ]);

      // Deleting it through the store would only serve the other definition: refused, naming both.
      const del = await s.delete('ServiceEntry', 'default', 'dup').catch((e: unknown) => e);
      assert.ok(del instanceof ConflictError, String(del));
      assert.match(del.message, /is defined in 2 places/);
      await unlink(first);
      await h.settle(s);
      assert.deepEqual(hosts(await s.get('ServiceEntry', 'default', 'dup')), ['second.example.com']);
      assert.deepEqual(s.errors(), []);
    });

    it('persists writes as YAML files, changing only the written document of a multi-document file', async (t) => {
      if (h.dir === undefined) return t.skip('only the directory store writes files');
      const dir = h.dir;
      const s = await fresh();
      const created = await s.create(serviceEntry('api', { namespace: 'shop' }));
      const own = path.join(dir, 'shop', 'serviceentry-api.yaml');
      assert.equal(parseDocuments(await readFile(own, 'utf8'), own).documents[0]!.resource.metadata.name, 'api');
      const mixed = path.join(dir, 'mixed.yaml');
      await writeFile(mixed, `# edge services\n${toYaml(serviceEntry('edge-1'))}---\n# keep this comment\n${toYaml(serviceEntry('edge-2'))}`);
      await h.settle(s);
      const e1 = (await s.get('ServiceEntry', 'default', 'edge-1'))!;
      await s.update({ ...e1, spec: { ...(e1.spec as object), hosts: ['edge-1.v2.example.com'] } });
      let text = await readFile(mixed, 'utf8');
      assert.match(text, /# keep this comment/);
      assert.match(text, /edge-1\.v2\.example\.com/);
      assert.doesNotMatch(text, /resourceVersion/);
      await s.delete('ServiceEntry', 'default', 'edge-1');
      text = await readFile(mixed, 'utf8');
      assert.deepEqual(parseDocuments(text, mixed).documents.map((d) => d.resource.metadata.name), ['edge-2']);
      assert.match(text, /# keep this comment/);
      await s.delete('ServiceEntry', 'shop', 'api', { resourceVersion: created.metadata.resourceVersion! });
      await assert.rejects(stat(own), /ENOENT/);
      // A new store on the same directory sees exactly what the first one wrote.
      const peer = await h.openPeer();
      assert.deepEqual((await peer.list('ServiceEntry')).map((r) => r.metadata.name), ['edge-2']);
      await peer.close();
      assert.deepEqual(s.errors(), []);
    });

    it('does not serve values other tools wrote to etcd that are not valid config, and says why', async (t) => {
      if (h.putRaw === undefined) return t.skip('only etcd can be written behind the store');
      const s = await fresh();
      const good = await s.create(serviceEntry('good'));
      const w = record(s, undefined);
      await w.synced;
      await h.putRaw('ServiceEntry/default/not-json', '{oops');
      const bad = serviceEntry('bad-port');
      (bad.spec as { ports: Array<{ number: number }> }).ports[0]!.number = 0;
      await h.putRaw('ServiceEntry/default/bad-port', JSON.stringify(bad));
      await h.putRaw('ServiceEntry/default/good', JSON.stringify({ ...good, spec: { hosts: [] } }));
      await s.create(serviceEntry('after'));
      await w.waitFor(2);
      await new Promise((r) => setTimeout(r, 200));
      w.cancel();
      // Only the valid change arrived; 'good' keeps its last good state for the watcher.
      assert.deepEqual(w.events.map(describeEvent), ['ADDED ServiceEntry/default/good', 'ADDED ServiceEntry/default/after']);
      assert.deepEqual((await s.list('ServiceEntry')).map((r) => r.metadata.name), ['after']);
      const errors = s.errors().map(String);
      assert.equal(errors.length, 3, errors.join('\n'));
      assert.ok(errors.some((e) => e.includes('ServiceEntry/default/bad-port') && e.includes('spec.ports[0].number')), errors.join('\n'));
      assert.ok(errors.some((e) => e.includes('ServiceEntry/default/not-json: value is not JSON')), errors.join('\n'));
      await s.delete('ServiceEntry', 'default', 'bad-port');
      assert.equal(s.errors().length, 2);
    });

    it('lists and watches 10,000 resources', async () => {
      await store?.close();
      const bulk: Resource[] = [];
      for (let i = 0; i < 10_000; i++) bulk.push(serviceEntry(`svc-${String(i).padStart(5, '0')}`, { namespace: `ns-${i % 10}`, labels: { shard: String(i % 4) }, host: `svc-${i}.mesh.example.com` }));
      await h.seed(bulk);
      store = await h.openPeer();
      const s = store;
      const listed = await s.list('ServiceEntry');
      assert.equal(listed.length, 10_000);
      assert.equal(listed[0]!.metadata.name, 'svc-00000');
      assert.equal(listed.at(-1)!.metadata.name, 'svc-09999');
      assert.equal((await s.list('ServiceEntry', { namespace: 'ns-3', labelSelector: 'shard=1' })).length, 500);
      const w = record(s, undefined);
      const at = await w.synced;
      assert.equal(w.events.length, 10_000);
      assert.equal(new Set(w.events.map((e) => e.resource.metadata.name)).size, 10_000);
      assert.ok(w.events.every((e) => e.type === 'ADDED'));
      w.cancel();
      const first = listed[0]!;
      await s.update({ ...first, metadata: { ...first.metadata, labels: { shard: 'x' } } });
      await s.delete('ServiceEntry', 'ns-9', 'svc-09999');
      const tail = record(s, at);
      await tail.waitFor(2);
      await new Promise((r) => setTimeout(r, 200));
      tail.cancel();
      assert.deepEqual(tail.events.map(describeEvent), ['MODIFIED ServiceEntry/ns-0/svc-00000', 'DELETED ServiceEntry/ns-9/svc-09999']);
    });

    it('applies a batch all at once: puts and deletes land together, watchers see them together', async () => {
      const s = await fresh();
      const a = await s.create(serviceEntry('a'));
      await s.create(serviceEntry('gone'));
      const w = record(s, await s.revision());
      await w.synced;
      const result = await s.apply([
        { op: 'put', resource: { ...a, spec: { ...(a.spec as object), hosts: ['a2.example.com'] } }, ifMatch: a.metadata.resourceVersion },
        { op: 'put', resource: workloadEntry('w1', 'default', '10.0.0.1', { app: 'a' }) },
        { op: 'delete', kind: 'ServiceEntry', namespace: 'default', name: 'gone' },
        { op: 'delete', kind: 'ServiceEntry', namespace: 'default', name: 'never-was' },
      ]);
      assert.deepEqual(result.results.map((r) => [r.op, r.key, r.changed]), [
        ['put', 'ServiceEntry/default/a', true], ['put', 'WorkloadEntry/default/w1', true],
        ['delete', 'ServiceEntry/default/gone', true], ['delete', 'ServiceEntry/default/never-was', false],
      ]);
      assert.equal(result.results[0]!.resource?.metadata.generation, 2);
      assert.equal(result.results[1]!.resource?.metadata.generation, 1);
      assert.equal(result.results[3]!.resource, undefined);
      await w.waitFor(3);
      await new Promise((r) => setTimeout(r, 200));
      w.cancel();
      assert.deepEqual(w.events.map(describeEvent).sort(), ['ADDED WorkloadEntry/default/w1', 'DELETED ServiceEntry/default/gone', 'MODIFIED ServiceEntry/default/a']);
      // One revision on etcd (one transaction); consecutive revisions on the directory store.
      const revs = w.events.map((e) => e.revision);
      assert.ok(revs.every((r, i) => i === 0 || r === revs[i - 1] || r === revs[i - 1]! + 1), revs.join(','));
      assert.equal(result.revision, Math.max(...revs));
      const revOf = new Map(w.events.map((e) => [`${e.resource.kind}/${e.resource.metadata.namespace}/${e.resource.metadata.name}`, e.revision]));
      assert.deepEqual(result.results.slice(0, 3).map((r) => Number(r.resource?.metadata.resourceVersion)), result.results.slice(0, 3).map((r) => revOf.get(r.key)));
      assert.equal(await s.revision(), result.revision);
      assert.deepEqual(hosts(await s.get('ServiceEntry', 'default', 'a')), ['a2.example.com']);
      assert.equal(await s.get('ServiceEntry', 'default', 'gone'), undefined);

      // The same batch again changes nothing and writes nothing.
      const again = await s.apply([
        { op: 'put', resource: result.results[0]!.resource! },
        { op: 'put', resource: workloadEntry('w1', 'default', '10.0.0.1', { app: 'a' }) },
        { op: 'delete', kind: 'ServiceEntry', namespace: 'default', name: 'gone' },
      ]);
      assert.deepEqual(again.results.map((r) => r.changed), [false, false, false]);
      assert.equal(again.revision, result.revision);
      assert.equal(await s.revision(), result.revision);
    });

    it('refuses a whole batch when one op is invalid, stale or repeated, and writes nothing', async () => {
      const s = await fresh();
      const a = await s.create(serviceEntry('a'));
      const revision = await s.revision();
      const bad = serviceEntry('bad');
      (bad.spec as { ports: Array<{ number: number }> }).ports[0]!.number = 70_000;
      const fresh1 = serviceEntry('fresh');
      const invalid = await s.apply([{ op: 'put', resource: fresh1 }, { op: 'put', resource: bad }]).catch((e: unknown) => e);
      assert.ok(invalid instanceof ValidationFailedError, String(invalid));
      assert.match(invalid.errors[0]!.toString(), /^ServiceEntry\/default\/bad: spec\.ports\[0\]\.number: /);
      const stale = await s.apply([{ op: 'put', resource: fresh1 }, { op: 'delete', kind: 'ServiceEntry', namespace: 'default', name: 'a', ifMatch: '1' }]).catch((e: unknown) => e);
      assert.ok(stale instanceof ConflictError, String(stale));
      assert.equal(stale.actual, a.metadata.resourceVersion);
      const absent = await s.apply([{ op: 'put', resource: fresh1, ifMatch: a.metadata.resourceVersion }]).catch((e: unknown) => e);
      assert.ok(absent instanceof ConflictError, String(absent));
      assert.equal(absent.actual, undefined);
      await assert.rejects(s.apply([{ op: 'put', resource: fresh1 }, { op: 'delete', kind: 'ServiceEntry', namespace: 'default', name: 'fresh' }]), /ServiceEntry\/default\/fresh is named twice in one batch/);
      await assert.rejects(s.apply(Array.from({ length: 129 }, (_, i) => ({ op: 'delete' as const, kind: 'ServiceEntry', namespace: 'default', name: `x${i}` }))), /at most 128 ops/);
      assert.equal(await s.revision(), revision);
      assert.deepEqual((await s.list('ServiceEntry')).map((r) => r.metadata.name), ['a']);
    });

    it('serializes concurrent batches on the same resources: each applies whole', async () => {
      const s = await fresh();
      const peer = h.multiWriter ? await h.openPeer() : s;
      try {
        const writers = [s, peer, s, peer].map((st, i) => st.apply([
          { op: 'put', resource: serviceEntry('x', { labels: { writer: String(i) } }) },
          { op: 'put', resource: serviceEntry('y', { labels: { writer: String(i) } }) },
        ]));
        await Promise.all(writers);
        // Whoever wrote last wrote both: the two never hold different writers' labels.
        const x = await s.get('ServiceEntry', 'default', 'x');
        const y = await s.get('ServiceEntry', 'default', 'y');
        assert.equal(x?.metadata.labels?.['writer'], y?.metadata.labels?.['writer']);
      } finally {
        if (peer !== s) await peer.close();
      }
    });
  });
}
