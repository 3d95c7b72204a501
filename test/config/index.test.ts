// openConfigStore: one entry point that picks the backend from its options.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import pino from 'pino';
import { InvalidArgumentError, SourceUnavailableError, openConfigStore } from '../../src/config/index.ts';
import { etcdUnavailableReason, startEtcd } from '../helpers/etcd.ts';

const logger = pino({ level: 'silent' });

describe('openConfigStore', () => {
  it('opens a directory store from configDir, creating the directory only when asked to', async (t) => {
    const root = mkdtempSync(path.join(tmpdir(), 'sextant-open-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    const dir = path.join(root, 'new');
    await assert.rejects(
      openConfigStore({ configDir: dir, logger }),
      (e: unknown) => e instanceof SourceUnavailableError && e.message === `config directory ${dir} does not exist: create it, or name the right one`,
    );
    assert.equal(existsSync(dir), false);
    writeFileSync(path.join(root, 'file'), '');
    await assert.rejects(openConfigStore({ configDir: path.join(root, 'file'), logger }), /is not a directory/);
    const store = await openConfigStore({ configDir: dir, logger, create: true });
    assert.equal(store.backend, 'directory');
    assert.equal(existsSync(dir), true);
    assert.deepEqual(await store.list('VirtualService'), []);
    await store.close();
  });

  it('opens an etcd store from etcdEndpoints', async (t) => {
    const reason = etcdUnavailableReason();
    if (reason !== undefined) return t.skip(reason);
    const etcd = await startEtcd();
    t.after(() => etcd.stop());
    const store = await openConfigStore({ etcdEndpoints: [etcd.endpoint], etcdPrefix: '/x/', logger });
    assert.equal(store.backend, 'etcd');
    assert.ok((await store.revision()) >= 1);
    await store.close();
  });

  it('refuses options that name no backend, or both', async () => {
    await assert.rejects(openConfigStore({} as never), (e: unknown) => e instanceof InvalidArgumentError && e.message === 'a config store needs configDir or etcdEndpoints');
    await assert.rejects(openConfigStore({ configDir: '/tmp/x', etcdEndpoints: ['http://127.0.0.1:1'] } as never), InvalidArgumentError);
    await assert.rejects(openConfigStore({ etcdEndpoints: [] }), InvalidArgumentError);
  });

  it('says which etcd it cannot reach', async () => {
    await assert.rejects(
      openConfigStore({ etcdEndpoints: ['http://127.0.0.1:9'], logger, callTimeoutMs: 500 }),
      /^Error: cannot reach etcd at http:\/\/127\.0\.0\.1:9: /,
    );
  });
});
