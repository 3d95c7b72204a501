// Registration tokens: the file's format, each mistake reported with its line, and who may
// act on which namespace. A file that turns invalid keeps the last good tokens in force.
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import pino from 'pino';
import { parseTokenFile, TokenFile, TokenFileError } from '../../src/registry/api/index.ts';

const A = 'aaaaaaaaaaaaaaaaaaaa';
const B = 'bbbbbbbbbbbbbbbbbbbb';

describe('registration token file', () => {
  it('grants a token its namespaces, or every namespace with *', () => {
    const grants = parseTokenFile(`# comment\n\n${A} shop,billing\n  ${B}   *  \n`, 'tokens');
    assert.equal(grants.length, 2);
    const dir = mkdtempSync(path.join(tmpdir(), 'sextant-tokens-'));
    try {
      const file = path.join(dir, 'tokens');
      writeFileSync(file, `${A} shop,billing\n${B} *\n`);
      const tokens = new TokenFile(file, pino({ level: 'silent' }));
      assert.equal(tokens.authorize(A, 'shop'), 'ok');
      assert.equal(tokens.authorize(A, 'billing'), 'ok');
      assert.equal(tokens.authorize(A, 'default'), 'forbidden');
      assert.equal(tokens.authorize(B, 'anything'), 'ok');
      assert.equal(tokens.authorize(undefined, 'shop'), 'unauthenticated');
      assert.equal(tokens.authorize('', 'shop'), 'unauthenticated');
      assert.equal(tokens.authorize(`${A}x`, 'shop'), 'unauthenticated');
      assert.equal(tokens.authorize(A.slice(1), 'shop'), 'unauthenticated');
      tokens.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the line of each mistake, and never repeats a token in its message', () => {
    const cases: Array<[string, string]> = [
      [`${A}\n`, 'tokens:1: expected "TOKEN NAMESPACE[,NAMESPACE...]" or "TOKEN *", got 1 field'],
      [`# x\n${A} shop extra\n`, 'tokens:2: expected "TOKEN NAMESPACE[,NAMESPACE...]" or "TOKEN *", got 3 fields'],
      ['short shop\n', 'tokens:1: a token must be 16 to 4096 printable characters without spaces'],
      [`${A} Shop\n`, 'tokens:1: "Shop" is not a namespace name (lowercase letters, digits and \'-\', at most 63) nor *'],
      [`${A} shop,\n`, 'tokens:1: "" is not a namespace name (lowercase letters, digits and \'-\', at most 63) nor *'],
      [`${A} shop\n${A} other\n`, 'tokens:2: this token is already granted on an earlier line'],
    ];
    for (const [text, message] of cases) {
      assert.throws(() => parseTokenFile(text, 'tokens'), (err: unknown) => {
        assert.ok(err instanceof TokenFileError);
        assert.equal(err.message, message);
        assert.ok(!err.message.includes(A));
        return true;
      });
    }
  });

  it('refuses a missing file at start, and keeps the last good tokens when the file turns invalid', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sextant-tokens-'));
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
    try {
      const file = path.join(dir, 'tokens');
      assert.throws(() => new TokenFile(file, logger), /cannot read registration token file .*tokens: ENOENT/);
      writeFileSync(file, `${A} shop\n`);
      const tokens = new TokenFile(file, logger, { pollMs: 50 });
      writeFileSync(`${file}.new`, `${A} shop\n${B}\n`);
      renameSync(`${file}.new`, file);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(tokens.authorize(A, 'shop'), 'ok');
      const rejected = lines.find((l) => l['msg'] === 'registration token file rejected; keeping the last good tokens');
      assert.equal(rejected?.['err'], `${file}:2: expected "TOKEN NAMESPACE[,NAMESPACE...]" or "TOKEN *", got 1 field`);
      writeFileSync(`${file}.new`, `${B} shop\n`);
      renameSync(`${file}.new`, file);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(tokens.authorize(A, 'shop'), 'unauthenticated');
      assert.equal(tokens.authorize(B, 'shop'), 'ok');
      // No log line carries a token.
      assert.ok(lines.every((l) => !JSON.stringify(l).includes(A) && !JSON.stringify(l).includes(B)));
      tokens.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
