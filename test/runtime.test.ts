// The project runs on the Node it pins, whatever the machine's system Node is.
import { test } from 'node:test';
import assert from 'node:assert/strict';

test('tests run on Node 24, pinned by the project', () => {
  assert.match(process.versions.node, /^24\./);
});
