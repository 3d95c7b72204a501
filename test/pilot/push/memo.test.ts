// MemoTable: a table forked for a derived snapshot behaves exactly as a copy of its parent
// without the dropped keys, and from then on the two are independent: what either writes
// later (the parent computing from its older inputs, say) never shows in the other, whether
// the parent's entries were copied or folded into a shared base.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoTable } from '../../../src/pilot/push/memo.ts';

/** mulberry32: a small seeded generator, so a failure replays. */
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

function assertSame(table: MemoTable<number | undefined>, model: Map<string, number | undefined>, keys: readonly string[], label: string): void {
  for (const k of keys) {
    assert.equal(table.has(k), model.has(k), `${label}: has(${k})`);
    assert.equal(table.get(k), model.get(k), `${label}: get(${k})`);
  }
  assert.equal(table.size, model.size, `${label}: size`);
}

for (const seed of [1, 2, 3, 4]) {
  test(`random writes, drops and forks over a tree of tables match independent copies (seed ${seed})`, () => {
    const random = rng(seed);
    const key = (): string => `k${random(3000)}`;
    const tables: { table: MemoTable<number | undefined>; model: Map<string, number | undefined> }[] = [{ table: new MemoTable(), model: new Map() }];
    let value = 0;
    for (let step = 0; step < 400; step++) {
      const at = tables[random(tables.length)]!;
      const op = random(10);
      if (op < 5) {
        // A burst of writes, now and then large enough for the next fork to fold.
        const n = random(8) === 0 ? 1500 : 1 + random(20);
        for (let i = 0; i < n; i++) {
          const k = key();
          const v = random(50) === 0 ? undefined : ++value;
          at.table.set(k, v);
          at.model.set(k, v);
        }
      } else if (op < 8 || tables.length < 3) {
        const drop = Array.from({ length: random(15) }, key);
        const child = at.table.fork(drop);
        const model = new Map(at.model);
        for (const k of drop) model.delete(k);
        tables.push({ table: child, model });
      } else {
        // Every table is checked now and then, the forked-from ones included.
        const probe = Array.from({ length: 60 }, key);
        tables.forEach((t, i) => assertSame(t.table, t.model, probe, `step ${step}, table ${i}`));
      }
    }
    const all = Array.from({ length: 3000 }, (_, i) => `k${i}`);
    tables.forEach((t, i) => assertSame(t.table, t.model, all, `end, table ${i}`));
  });
}

test('a key dropped in the child stays dropped even when the parent computes it after the fork', () => {
  const parent = new MemoTable<string>();
  for (let i = 0; i < 2000; i++) parent.set(`s${i}`, 'old');
  const child = parent.fork(['s1', 'late']);
  // The parent, still serving, memoizes from its older inputs after the child exists.
  parent.set('late', 'old');
  parent.set('s1', 'old again');
  parent.set('fresh', 'old');
  assert.equal(child.has('late'), false);
  assert.equal(child.has('s1'), false);
  assert.equal(child.has('fresh'), false);
  child.set('late', 'new');
  assert.equal(parent.get('late'), 'old');
  assert.equal(child.get('late'), 'new');
  assert.equal(child.get('s5'), 'old');
  // A grandchild forked after the parent folded sees the child's values, not the parent's.
  const grandchild = child.fork();
  assert.equal(grandchild.get('late'), 'new');
  assert.equal(grandchild.has('s1'), false);
  assert.equal(grandchild.has('fresh'), false);
});
