// The registration API on the directory store: each call's resources land as YAML files in one
// step (the release's two files together), a repeated call writes nothing, and deleting a
// service removes its files.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { startPilot, type Pilot } from '../../src/pilot/index.ts';

const TOKEN = 'dir-token-0123456789abcdef';

describe('registration API on the directory store', () => {
  let root: string;
  let config: string;
  let pilot: Pilot;
  let base: string;
  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'sextant-registration-dir-'));
    config = path.join(root, 'config');
    mkdirSync(config);
    writeFileSync(path.join(root, 'tokens'), `${TOKEN} shop\n`);
    pilot = await startPilot({ configDir: config, xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', logger: pino({ level: 'silent' }), registrationTokens: path.join(root, 'tokens') });
    await pilot.ready;
    base = `http://${pilot.httpAddress}/apis/registration/v1/namespaces/shop/services/reviews`;
  });
  after(async () => {
    await pilot?.close();
    rmSync(root, { recursive: true, force: true });
  });

  const call = async (method: string, p: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await fetch(`${base}${p}`, {
      method, headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const files = (): string[] => (existsSync(path.join(config, 'shop')) ? readdirSync(path.join(config, 'shop')).sort() : []);

  it('writes each call as YAML files, the release as two files at once, and removes them on delete', async () => {
    assert.equal((await call('PUT', '', { ports: [{ name: 'http', number: 8080 }] })).status, 201);
    assert.equal((await call('PUT', '/instances/a1', { address: '10.2.0.1', labels: { version: 'v1' } })).status, 201);
    const rel = await call('PUT', '/release', { subsets: [{ name: 'v1', labels: { version: 'v1' }, weight: 100 }] });
    assert.equal(rel.status, 201, JSON.stringify(rel.body));
    assert.deepEqual(files(), ['destinationrule-reviews.yaml', 'serviceentry-reviews.yaml', 'virtualservice-reviews.yaml', 'workloadentry-reviews-a1.yaml']);
    const we = readFileSync(path.join(config, 'shop', 'workloadentry-reviews-a1.yaml'), 'utf8');
    assert.match(we, /sextant\.io\/managed-by: registration/);
    assert.match(we, /sextant\.io\/traffic: in/);
    assert.ok(!/resourceVersion/.test(we));

    const out = await call('POST', '/instances/a1:pull-out');
    assert.equal(out.body['state'], 'out');
    assert.match(readFileSync(path.join(config, 'shop', 'workloadentry-reviews-a1.yaml'), 'utf8'), /sextant\.io\/traffic: out/);
    const again = await call('POST', '/instances/a1:pull-out');
    assert.equal(again.body['resourceVersion'], out.body['resourceVersion']);

    const del = await call('DELETE', '');
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.deepEqual((del.body['deleted'] as string[]).sort(), ['DestinationRule/shop/reviews', 'ServiceEntry/shop/reviews', 'VirtualService/shop/reviews', 'WorkloadEntry/shop/reviews-a1']);
    assert.deepEqual(files(), []);
  });
});
