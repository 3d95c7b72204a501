// Runs the ConfigStore conformance suite against the directory store and against a real etcd.
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { toYaml, type Resource } from '../../src/api/index.ts';
import { openDirectoryStore, openEtcdStore, type ConfigStore, type DirectoryConfigStore } from '../../src/config/index.ts';
import { etcdUnavailableReason, startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { conformanceSuite, type Harness } from './conformance.ts';
import { startPartition } from './partition.ts';

const logger = pino({ level: process.env.SEXTANT_TEST_LOG_LEVEL ?? 'silent' });

conformanceSuite('directory', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'sextant-config-'));
  const dir = path.join(root, 'config');
  const peers: ConfigStore[] = [];
  const openAt = async (): Promise<ConfigStore> => {
    const s = await openDirectoryStore({ dir, logger, debounceMs: 20, create: true });
    peers.push(s);
    return s;
  };
  const harness: Harness = {
    dir,
    multiWriter: false,
    async open() {
      rmSync(dir, { recursive: true, force: true });
      return await openAt();
    },
    openPeer: openAt,
    async seed(resources: Resource[]) {
      rmSync(dir, { recursive: true, force: true });
      // 100 resources per multi-document file, one folder per namespace.
      const byFile = new Map<string, Resource[]>();
      resources.forEach((r, i) => {
        const f = path.join(dir, r.metadata.namespace, `${r.kind.toLowerCase()}s-${Math.floor(i / 100)}.yaml`);
        byFile.set(f, [...(byFile.get(f) ?? []), r]);
      });
      for (const [f, rs] of byFile) {
        await mkdir(path.dirname(f), { recursive: true });
        await writeFile(f, rs.map((r) => toYaml(r)).join('---\n'));
      }
    },
    async settle(s: ConfigStore) {
      await (s as DirectoryConfigStore).sync();
    },
    async cleanup() {
      for (const p of peers) await p.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
  return harness;
});

const skip = etcdUnavailableReason();
if (skip !== undefined) {
  const { describe, it } = await import('node:test');
  describe('ConfigStore conformance: etcd', () => {
    it('needs etcd', (t) => t.skip(skip));
  });
} else {
  conformanceSuite('etcd', async () => {
    const etcd: EtcdProcess = await startEtcd();
    const admin = new Etcd3({ hosts: [etcd.endpoint] });
    const prefix = '/sextant-test/config';
    const peers: ConfigStore[] = [];
    const openAt = async (endpoint = etcd.endpoint): Promise<ConfigStore> => {
      const s = await openEtcdStore({ endpoints: [endpoint], prefix, logger, initialBackoffMs: 50, maxBackoffMs: 1000 });
      peers.push(s);
      return s;
    };
    const harness: Harness = {
      multiWriter: true,
      async open() {
        await admin.delete().prefix(`${prefix}/`);
        return await openAt();
      },
      openPeer: () => openAt(),
      async seed(resources: Resource[]) {
        await admin.delete().prefix(`${prefix}/`);
        const s = await openAt();
        let next = 0;
        await Promise.all(
          Array.from({ length: 32 }, async () => {
            while (next < resources.length) await s.create(resources[next++]!);
          }),
        );
      },
      async settle() {},
      async cleanup() {
        for (const p of peers) await p.close();
        admin.close();
        await etcd.stop();
      },
      restartBackend: () => etcd.restart(),
      async putRaw(keySuffix: string, value: string) {
        await admin.put(`${prefix}/${keySuffix}`).value(value);
      },
      async partitioned() {
        const partition = await startPartition(etcd.endpoint);
        const store = await openAt(partition.endpoint);
        return {
          store,
          cut: () => partition.cut(),
          heal: () => partition.heal(),
          async close() {
            await store.close();
            await partition.close();
          },
        };
      },
      async compact() {
        const res = await admin.kv.range({ key: Buffer.from('/'), count_only: true });
        await admin.kv.compact({ revision: res.header.revision, physical: true });
      },
    };
    return harness;
  });
}
