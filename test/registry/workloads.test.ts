// ResourceMap: the pilot's map of every resource, which also answers "which WorkloadEntries of
// this namespace can this selector match". Under random puts, relabels, deletes and re-adds it
// stays a Map (same entries, same order as a plain Map given the same calls), and its answer is
// exactly what a scan of the map in order would find: the same objects, in the same order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Resource } from '../../src/api/resource.ts';
import { ResourceMap, labelsMatch, workloadLabels } from '../../src/registry/index.ts';
import type { WorkloadEntrySpec } from '../../src/registry/index.ts';

function rng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

const NAMESPACES = ['a', 'b', 'c'];
const SELECTORS: Record<string, string>[] = [{}, { app: 'svc-0' }, { app: 'svc-1' }, { app: 'svc-2', version: 'v2' }, { version: 'v1' }, { app: 'svc-3', tier: 'x=y' }, { app: 'none' }];

function scan(map: ReadonlyMap<string, Resource>, namespace: string, selector: Record<string, string>): Resource[] {
  return [...map.values()].filter((r) => r.kind === 'WorkloadEntry' && r.metadata.namespace === namespace && labelsMatch(selector, workloadLabels(r as Resource<WorkloadEntrySpec>)));
}

for (const seed of [11, 12, 13]) {
  test(`selectWorkloads equals an in-order scan, and the map a plain Map, under random changes (seed ${seed})`, () => {
    const random = rng(seed);
    const map = new ResourceMap();
    const plain = new Map<string, Resource>();
    const randomWorkload = (ns: string, name: string): Resource => {
      const spec: WorkloadEntrySpec = { address: `10.0.${random(200)}.${random(200)}`, labels: { app: `svc-${random(4)}`, version: `v${random(3)}` } };
      // Labels on metadata too (spec labels win), and a value with `=` in it.
      const metaLabels: Record<string, string> = random(3) === 0 ? { app: 'meta', tier: random(2) === 0 ? 'x=y' : 'x' } : {};
      return { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name, namespace: ns, ...(Object.keys(metaLabels).length > 0 ? { labels: metaLabels } : {}) }, spec };
    };
    for (let step = 0; step < 1500; step++) {
      const ns = NAMESPACES[random(NAMESPACES.length)]!;
      const name = `w${random(40)}`;
      const key = `WorkloadEntry/${ns}/${name}`;
      const op = random(10);
      if (op < 6) {
        const r = randomWorkload(ns, name);
        map.set(key, r);
        plain.set(key, r);
      } else if (op < 8) {
        assert.equal(map.delete(key), plain.delete(key));
      } else if (op < 9) {
        // Deleted and added again: it moves to the end, as in a Map.
        const r = randomWorkload(ns, name);
        map.delete(key);
        plain.delete(key);
        map.set(key, r);
        plain.set(key, r);
      } else {
        const other: Resource = { apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name, namespace: ns }, spec: { hosts: [`${name}.example.com`] } };
        map.set(`ServiceEntry/${ns}/${name}`, other);
        plain.set(`ServiceEntry/${ns}/${name}`, other);
      }
      if (step % 25 !== 0) continue;
      assert.deepEqual([...map.keys()], [...plain.keys()]);
      assert.equal(map.size, plain.size);
      for (const n of [...NAMESPACES, 'missing']) {
        for (const sel of SELECTORS) {
          const got = map.selectWorkloads(n, sel);
          const want = scan(plain, n, sel);
          assert.equal(got.length, want.length, `step ${step} ${n} ${JSON.stringify(sel)}`);
          got.forEach((r, i) => assert.equal(r, want[i], `step ${step} ${n} ${JSON.stringify(sel)} [${i}]`));
        }
      }
    }
    map.clear();
    assert.equal(map.size, 0);
    assert.deepEqual(map.selectWorkloads('a', {}), []);
  });
}
