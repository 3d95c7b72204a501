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
