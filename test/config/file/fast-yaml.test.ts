// The fast YAML reader must give exactly what the `yaml` library gives, or decline.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { toYaml } from '../../../src/api/index.ts';
import { readSimpleYaml } from '../../../src/config/file/fast-yaml.ts';
import { serviceEntry, workloadEntry } from '../conformance.ts';

function full(text: string): unknown[] | 'error' {
  const docs = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: false });
  if (!Array.isArray(docs)) return [];
  if (docs.some((d) => d.errors.length > 0)) return 'error';
  return docs.map((d) => d.toJS({ maxAliasCount: 100 }));
}

/** Asserts the fast reader agrees with the full parser; returns whether it handled the text itself. */
function agrees(text: string): boolean {
  const fast = readSimpleYaml(text);
  if (fast === undefined) return false;
  assert.deepEqual(fast, full(text), `fast reader disagrees on ${JSON.stringify(text)}`);
  return true;
}

const ISTIO = path.resolve(import.meta.dirname, '../../../../shared/istio-compat');

describe('fast YAML reader', () => {
  it('reads kubectl-style block YAML exactly as the yaml library does', () => {
    const handled = [
      'a: 1\nb: x\n',
      'spec:\n  hosts:\n  - reviews\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v1\n      weight: 50\n',
      'a:\n  - b: 1\n    c: 2\n  -   d: 3\n',
      "a: 'it''s'\nb: \"x\\ty\\u0041\"\nc: \"*\"\n",
      'a: [1, b, "c"]\nb: []\nc: {}\nd: {number: 9080, name: http}\n',
      'n: ~\nm: null\nt: true\nf: False\ni: -3\nz: 0\nx: 1.50\nip: 10.0.0.1\nd: 30s\nv: yes\n',
      'a: 1\n---\n# only a comment\n---\nb: 2\n',
      '---\na: 1\n---\n',
      'a: x#y\nb: x # comment\nc: "a #b"\n',
      'k: v\n  # indented comment\nz: 1\r\n',
      'a:\n-\n- x\n',
      '',
      '---',
    ];
    for (const text of handled) assert.equal(agrees(text), true, `expected the fast reader to handle ${JSON.stringify(text)}`);
  });

  it('declines what it does not fully support, so the full parser decides', () => {
    const declined = [
      'a: &x 1\nb: *x\n', 'a: !!str 1\n', 'a: |\n  text\n', 'a: >\n  folded\n', 'a: b: c\n', 'a: this is\n  continued\n',
      'a: 1e3\n', 'a: 0x1F\n', 'a: +1\n', 'a: .inf\n', 'a: 1\na: 2\n', 'a: {b: {c: 1}}\n', 'a: [x, [y]]\n', 'a: "x, y" \n  z\n',
      '%YAML 1.2\n---\na: 1\n', '\ta: 1\n', '? a\n: 1\n', 'a: "unterminated\n', '- - x\n', '__proto__: 1\n',
    ];
    for (const text of declined) assert.equal(readSimpleYaml(text), undefined, `expected the fast reader to decline ${JSON.stringify(text)}`);
  });

  it('agrees with the yaml library on generated resources', () => {
    const resources = [
      ...Array.from({ length: 50 }, (_, i) => serviceEntry(`svc-${i}`, { namespace: `ns-${i % 3}`, labels: { app: `svc-${i}`, 'app.kubernetes.io/name': 'x' } })),
      ...Array.from({ length: 50 }, (_, i) => workloadEntry(`vm-${i}`, 'ns-1', `10.0.0.${i}`, { app: 'svc', version: `v${i % 3}` })),
    ];
    for (const r of resources) assert.equal(agrees(toYaml(r)), true);
    assert.equal(agrees(resources.map((r) => toYaml(r)).join('---\n')), true);
  });

  it('agrees with the yaml library on every file it reads from Istio\'s fixtures', (t) => {
    if (!existsSync(ISTIO)) return t.skip(`Istio fixtures not found at ${ISTIO}`);
    let handled = 0;
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const p = path.join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (/\.ya?ml$/.test(name) && agrees(readFileSync(p, 'utf8'))) handled++;
      }
    };
    walk(ISTIO);
    assert.ok(handled > 0);
  });
});
