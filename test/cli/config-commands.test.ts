// `sextant apply / get / delete` against a directory store, as a script would use them:
// exact output lines and exit codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const CLI = path.resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

function sextant(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, SEXTANT_CONFIG_DIR: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const VS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
  labels: {team: books}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
`;

test('apply creates, re-apply is unchanged, a change is configured; get and delete work', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = path.join(dir, 'store');
  const input = path.join(dir, 'vs.yaml');
  spawnSync('mkdir', ['-p', store]);
  writeFileSync(input, VS);

  let r = sextant('apply', '--config-dir', store, '-f', input);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'virtualservice/reviews created (namespace default)\n');
  assert.equal(sextant('apply', '--config-dir', store, '-f', input).stdout, 'virtualservice/reviews unchanged (namespace default)\n');
  writeFileSync(input, VS.replace('weight: 90', 'weight: 50').replace('weight: 10', 'weight: 50'));
  assert.equal(sextant('apply', '--config-dir', store, '-f', input).stdout, 'virtualservice/reviews configured (namespace default)\n');
  assert.ok(readdirSync(store).length > 0, 'the store persisted a file');

  r = sextant('get', 'vs', '--config-dir', store);
  assert.equal(r.code, 0, r.stderr);
  const [header, row] = r.stdout.trimEnd().split('\n');
  assert.match(header ?? '', /^NAMESPACE\s+NAME\s+SUMMARY\s+VERSION\s+AGE$/);
  assert.match(row ?? '', /^default\s+reviews\s+hosts=reviews\s+\d+\s+\d+s$/);

  r = sextant('get', 'virtualservice', 'reviews', '-o', 'json', '--config-dir', store);
  const got = JSON.parse(r.stdout) as { spec: { http: Array<{ route: Array<{ weight: number }> }> }; metadata: { labels: Record<string, string> } };
  assert.deepEqual(got.spec.http[0]?.route.map((d) => d.weight), [50, 50]);
  assert.deepEqual(got.metadata.labels, { team: 'books' });

  assert.equal(sextant('get', 'vs', '-l', 'team=other', '--config-dir', store).stderr, 'No VirtualService resources found.\n');

  r = sextant('delete', 'vs', 'reviews', '--config-dir', store);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'virtualservice/reviews deleted (namespace default)\n');
  r = sextant('delete', 'vs', 'reviews', '--config-dir', store);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'error: VirtualService/default/reviews not found\n');
});

test('apply of a file with one invalid document applies nothing and exits 1 with the error', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = path.join(dir, 'store');
  spawnSync('mkdir', ['-p', store]);
  const input = path.join(dir, 'mixed.yaml');
  writeFileSync(input, `${VS}---\n${VS.replace('name: reviews', 'name: broken').replace('weight: 90', 'weight: -5')}`);
  const r = sextant('apply', '--config-dir', store, '-f', input);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /mixed\.yaml.*VirtualService\/default\/broken.*spec\.http\[0\]\.route\[0\]\.weight/);
  assert.equal(sextant('get', 'vs', '--config-dir', store).stderr, 'No VirtualService resources found.\n');
});

test('usage errors exit 2 and say what is expected', () => {
  const r = sextant('get', 'nosuchkind', '--config-dir', os.tmpdir());
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^error: unknown kind "nosuchkind"; expected one of VirtualService, DestinationRule/);
  const s = sextant('get', 'vs');
  assert.equal(s.code, 2);
  assert.match(s.stderr, /no config store: pass --config-dir DIR or --etcd-endpoints URL/);
});
