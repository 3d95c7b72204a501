// `sextant register` as a pipeline runs it: one line of output, exit 0 when done, 1 when the
// pilot refuses or cannot be reached (quoting its error), 2 when called wrongly.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { startPilot, type Pilot } from '../../src/pilot/index.ts';

const CLI = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

function run(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'register', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('sextant register', () => {
  let root: string;
  let pilot: Pilot;
  let common: string[];
  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'sextant-register-cli-'));
    mkdirSync(path.join(root, 'config'));
    writeFileSync(path.join(root, 'tokens'), 'cli-token-0123456789abcdef shop\n');
    writeFileSync(path.join(root, 'token'), '# the platform\'s token\ncli-token-0123456789abcdef shop\n');
    pilot = await startPilot({ configDir: path.join(root, 'config'), xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', logger: pino({ level: 'silent' }), registrationTokens: path.join(root, 'tokens') });
    await pilot.ready;
    common = ['--pilot', `http://${pilot.httpAddress}`, '--token-file', path.join(root, 'token')];
  });
  after(async () => {
    await pilot?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('registers, pulls out and sets a release, one line each', async () => {
    let r = await run('service', 'reviews', '-n', 'shop', '--port', 'http:8080:http', ...common);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^service shop\/reviews registered: reviews\.shop\.svc\.cluster\.local \(resourceVersion \d+\)\n$/);
    r = await run('instance', 'reviews', 'a1', '-n', 'shop', '--address', '10.3.0.1', '--port', 'http=8080', '--label', 'version=v2', ...common);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^instance a1 of shop\/reviews registered at 10\.3\.0\.1, in traffic \(resourceVersion \d+\)\n$/);
    r = await run('pull-out', 'reviews', 'a1', '-n', 'shop', '--wait', '5', ...common);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^instance a1 of shop\/reviews pulled out of traffic \(resourceVersion \d+\); 0 proxies acked in \d+ ms\n$/);
    r = await run('release', 'reviews', '-n', 'shop', '--subset', 'v1:version=v1:90', '--subset', 'v2:version=v2:10', '-o', 'json', ...common);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as { subsets: unknown }).subsets, [{ name: 'v1', labels: { version: 'v1' }, weight: 90 }, { name: 'v2', labels: { version: 'v2' }, weight: 10 }]);
  });

  it('exits 1 quoting the pilot when it refuses, or when nothing answers', async () => {
    let r = await run('service', 'reviews', '-n', 'billing', '--port', 'http:8080', ...common);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `error: PUT http://${pilot.httpAddress}/apis/registration/v1/namespaces/billing/services/reviews answered 403: this token may not act on namespace billing\n`);
    r = await run('release', 'reviews', '-n', 'shop', '--subset', 'v1:version=v1:50', ...common);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /answered 400: subsets: the weights add up to 50; they must add up to 100\n$/);
    r = await run('pull-in', 'reviews', 'a1', '-n', 'shop', '--pilot', 'http://127.0.0.1:9', '--token-file', path.join(root, 'token'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: cannot reach the pilot at http:\/\/127\.0\.0\.1:9\/apis\/registration\/v1\/namespaces\/shop\/services\/reviews\/instances\/a1:pull-in: /);
  });

  it('exits 2 when called wrongly', async () => {
    const cases: Array<[string[], string]> = [
      [['pull-out', 'reviews', 'a1', '--pilot', `http://${pilot.httpAddress}`], 'error: --token-file FILE is required: the registration API answers only callers with a token\n'],
      [['service', 'reviews', '--port', '8080', ...common], 'error: invalid --port "8080": expected NAME:NUMBER or NAME:NUMBER:PROTOCOL, e.g. http:8080\n'],
      [['release', 'reviews', '--subset', 'v1', ...common], 'error: invalid --subset "v1": expected NAME:KEY=VALUE[,KEY=VALUE]:WEIGHT, e.g. v2:version=v2:10\n'],
      [['instance', 'reviews', 'a1', ...common], 'error: an instance needs --address (or a body with address from -f)\n'],
      [['pull-out', 'reviews', ...common], "error: missing required argument 'id' (see 'sextant register --help')\n"],
    ];
    for (const [args, stderr] of cases) {
      const r = await run(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr, stderr);
    }
  });
});
