// The fast YAML reader gives exactly the full parser's result or gives up; the writer's
// output reads back to the same value with both readers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { emitYaml, fastParseYamlStream } from '../../src/api/yaml-fast.ts';

const COMPAT = path.resolve(import.meta.dirname, '../../../shared/istio-compat');

/** The full parser's documents as JS values, or 'error'. */
function full(text: string): unknown[] | 'error' {
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs)) return [];
  if (docs.some((d) => d.errors.length > 0)) return 'error';
  return docs.map((d) => d.toJS());
}

const SUPPORTED: Array<[string, unknown[]]> = [
  ['', []],
  ['# only a comment\n', []],
  ['---\n', [null]],
  ['a: 1\n---\n', [{ a: 1 }, null]],
  ['a: 1\n---\n---\nb: 2\n', [{ a: 1 }, null, { b: 2 }]],
  ['# leading\n---\na: 1\n', [{ a: 1 }]],
  ['a:\n- 1\n- two\nb: 3\n', [{ a: [1, 'two'], b: 3 }]],
  ['a:\n  - x: 1\n    y: [1, "q\\n", {z: null}]\n  -\n    - 1\n', [{ a: [{ x: 1, y: [1, 'q\n', { z: null }] }, [1]] }]],
  ['k: |\n  line1\n\n  line2\n\nn: 1\n', [{ k: 'line1\n\nline2\n', n: 1 }]],
  ['k: |-\n  a\n  b\n', [{ k: 'a\nb' }]],
  ['k: |+\n  a\n\n', [{ k: 'a\n\n' }]],
  ['a: 0o17\nb: 0x1F\nc: 1e3\nd: .inf\ng: 1.5\nh: +5\ni: 007\nj: ~\nl: TRUE\nm: yes\nn: 1_000\n', [{ a: 15, b: 31, c: 1000, d: Infinity, g: 1.5, h: 5, i: 7, j: null, l: true, m: 'yes', n: '1_000' }]],
  ["a: 'it''s'\nb: \"\\u00e9\\x41\"\n", [{ a: "it's", b: 'éA' }]],
  ['a: b # comment\nd: "e" # f\ng: x#y\n', [{ a: 'b', d: 'e', g: 'x#y' }]],
  ['"quoted key": 1\n\'k2\': {}\nkey with spaces: value with spaces\n', [{ 'quoted key': 1, k2: {}, 'key with spaces': 'value with spaces' }]],
  ['a: http://x.y/z\n', [{ a: 'http://x.y/z' }]],
];

test('supported YAML reads exactly as the full parser reads it', () => {
  for (const [text, expected] of SUPPORTED) {
    assert.deepEqual(fastParseYamlStream(text), expected, JSON.stringify(text));
    assert.deepEqual(full(text), expected, `full parser on ${JSON.stringify(text)}`);
  }
});

test('anything outside the subset, and every error, is left to the full parser', () => {
  const unsupported = [
    'k: >\n  folded\n', 'a: &x 1\nb: *x\n', 'a: !!str 1\n', 'a: [1, 2,]\n', 'a: [http://x]\n', 'a: [2001:db8::]\n',
    'a: {b: 1, b: 2}\n', 'a: 1\na: 2\n', 'a: b\n  c\n', 'a: "multi\n  line"\n', 'a: 12345678901234567890\n',
    'a: b\n...\n', '%YAML 1.2\n---\na: 1\n', 'a:\tb\n', 'a: 1\r\n', '? complex\n: key\n', 'a: - 1\n', 'a: b: c\n',
  ];
  for (const text of unsupported) assert.equal(fastParseYamlStream(text), undefined, JSON.stringify(text));
});

test('Istio sample files: the fast reader agrees with the full parser whenever it reads a file', { skip: existsSync(COMPAT) ? false : `Istio fixtures not found at ${COMPAT}` }, () => {
  let read = 0;
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = path.join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(name) && !name.startsWith('crd')) {
        const text = readFileSync(p, 'utf8');
        const fast = fastParseYamlStream(text);
        if (fast === undefined) continue;
        read++;
        assert.deepEqual(fast, full(text), p);
      }
    }
  };
  walk(COMPAT);
  assert.ok(read >= 40, `only ${read} files were within the fast subset`);
});

test('written YAML reads back to the same value with both readers', () => {
  const value = {
    apiVersion: 'networking.istio.io/v1', kind: 'EnvoyFilter',
    metadata: { name: 'lua', namespace: 'default', labels: { 'app.kubernetes.io/name': 'x' }, annotations: { note: 'a: b #c' } },
    spec: {
      configPatches: [{ applyTo: 'HTTP_FILTER', patch: { operation: 'INSERT_BEFORE', value: { '@type': 'type.googleapis.com/x', code: 'line 1\nline 2\n', n: [[], {}, [1, [2]]] } } }],
      strings: ['', ' lead', 'trail ', 'true', '1', 'null', '-x', '*', '*.foo.com', '::1', '10.0.0.1', 'é😀', '\t', "it's \"q\"", 'a\\b'],
      numbers: [0, -0.5, 1e21, 42], flags: [true, false, null], empty: {}, none: [], skipped: undefined,
      keys: { '': 1, 'with space': 2, '1': 3, true: 4 },
    },
  };
  const text = emitYaml(value);
  const expected = JSON.parse(JSON.stringify(value));
  assert.deepEqual(fastParseYamlStream(text), [expected]);
  assert.deepEqual(parse(text), expected);
  assert.match(text, /^apiVersion: networking\.istio\.io\/v1\nkind: EnvoyFilter\nmetadata:\n {2}name: lua\n/);
});
