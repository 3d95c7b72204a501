// OverlayMap: a map derived from another by a few changes behaves exactly as a copy with those
// changes would, leaves the map it came from alone, and flattens when the changes grow.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { OverlayMap } from '../../src/registry/index.ts';

it('derives a map by changes, equal to a changed copy, without changing the original', () => {
  const base = new Map(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, i] as [string, number]));
  const copy = new Map(base);
  let current: ReadonlyMap<string, number> = base;
  for (let round = 0; round < 50; round++) {
    const next = OverlayMap.derive(current);
    const expected = new Map(current);
    for (let j = 0; j < 20; j++) {
      const k = `k${(round * 37 + j * 11) % 12_000}`;
      if (j % 3 === 0) {
        assert.equal(next.delete(k), expected.delete(k));
      } else {
        next.set(k, round * 100 + j);
        expected.set(k, round * 100 + j);
      }
    }
    const done = next.done();
    assert.equal(done.size, expected.size);
    for (const k of ['k0', 'k1', 'k11', 'k10500', 'k11999', 'nope']) {
      assert.equal(done.get(k), expected.get(k), k);
      assert.equal(done.has(k), expected.has(k), k);
    }
    assert.deepEqual(new Map([...done].sort()), new Map([...expected].sort()));
    current = done;
  }
  assert.deepEqual(base, copy);
});

it('flattens into a plain map once the changes are more than an eighth of the base', () => {
  const base = new Map(Array.from({ length: 8_000 }, (_, i) => [i, i] as [number, number]));
  const small = OverlayMap.derive(base);
  for (let i = 0; i < 500; i++) small.set(i, -i);
  assert.ok(small.done() instanceof OverlayMap);
  const big = OverlayMap.derive(small.done());
  for (let i = 0; i < 1500; i++) big.set(i, -i);
  const flat = big.done();
  assert.ok(!(flat instanceof OverlayMap));
  assert.equal(flat.get(1499), -1499);
  assert.equal(flat.size, 8_000);
});

it('stays equal to a changed copy over long chains, every earlier map unchanged (recent changes, middle layer, flattening)', () => {
  let seed = 42;
  // mulberry32, seeded: a failure replays
  const random = (n: number): number => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
  const base = new Map(Array.from({ length: 20_000 }, (_, i) => [`k${i}`, i] as [string, number]));
  const chain: { map: ReadonlyMap<string, number>; model: Map<string, number> }[] = [{ map: base, model: new Map(base) }];
  let layered = 0;
  for (let round = 0; round < 300; round++) {
    const prev = chain[chain.length - 1]!;
    const next = OverlayMap.derive(prev.map);
    const model = new Map(prev.model);
    // Mostly a few changes, now and then a burst (past the recent-changes bound).
    const n = random(10) === 0 ? 400 + random(300) : 1 + random(40);
    for (let j = 0; j < n; j++) {
      const k = `k${random(22_000)}`;
      if (random(4) === 0) {
        assert.equal(next.delete(k), model.delete(k), `round ${round}: delete ${k}`);
      } else {
        next.set(k, round * 1000 + j);
        model.set(k, round * 1000 + j);
      }
    }
    const done = next.done();
    if (done instanceof OverlayMap) layered++;
    chain.push({ map: done, model });
    if (round % 30 === 29) {
      // Every map of the chain still equals its own model: sizes, and every key's value, by
      // lookup and by iteration.
      const probe = Array.from({ length: 300 }, () => `k${random(22_000)}`);
      chain.forEach(({ map, model: m }, i) => {
        assert.equal(map.size, m.size, `map ${i}: size`);
        for (const k of probe) {
          assert.equal(map.get(k), m.get(k), `map ${i}: get ${k}`);
          assert.equal(map.has(k), m.has(k), `map ${i}: has ${k}`);
        }
      });
      for (const { map, model: m } of chain.slice(-3)) {
        let n = 0;
        for (const [k, v] of map) {
          assert.equal(v, m.get(k), `iterated ${k}`);
          n++;
        }
        assert.equal(n, m.size);
      }
    }
  }
  assert.ok(layered > 100 && layered < 300, `both layered and flattened maps were made (${layered} layered)`);
  for (const k of ['k0', 'k19999', 'k21999', 'nope']) {
    const { map, model } = chain[chain.length - 1]!;
    assert.equal(map.get(k), model.get(k), k);
    assert.equal(map.has(k), model.has(k), k);
  }
});
