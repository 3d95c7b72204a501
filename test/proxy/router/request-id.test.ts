// Generated x-request-id values are RFC 9562 version-4 UUIDs, distinct across entropy refills.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newRequestId } from '../../../src/proxy/router/request-id.ts';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('request ids are version-4 UUIDs, unique over many entropy refills', () => {
  const seen = new Set<string>();
  // 20,000 ids span 79 refills of the 256-id entropy block
  for (let i = 0; i < 20_000; i++) {
    const id = newRequestId();
    assert.match(id, UUID_V4);
    seen.add(id);
  }
  assert.equal(seen.size, 20_000);
});

test('request ids use every hex digit in the random positions', () => {
  // a formatting slip (a stuck nibble, a wrong table) shows up as a digit that never appears
  const counts = new Map<string, number>();
  for (let i = 0; i < 2000; i++) {
    const id = newRequestId().replaceAll('-', '');
    for (let j = 0; j < 32; j++) {
      if (j === 12 || j === 16) continue; // version and variant nibbles
      counts.set(`${j}:${id[j]}`, (counts.get(`${j}:${id[j]}`) ?? 0) + 1);
    }
  }
  for (let j = 0; j < 32; j++) {
    if (j === 12 || j === 16) continue;
    for (const d of '0123456789abcdef') assert.ok((counts.get(`${j}:${d}`) ?? 0) > 0, `digit ${d} never at position ${j}`);
  }
});
