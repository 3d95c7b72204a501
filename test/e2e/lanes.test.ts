// Lanes end to end (MISSION M19): a chain a → b → c of echo apps, each instance with a real
// sidecar and a real pilot; every app forwards only `traceparent`. Lanes: s2 holds a and c (and
// mocks pay), s3 holds b, s2.alice falls back to s2. A request entering a lane keeps it across
// baseline hops with no lane header forwarded, falls back where its lane has no (healthy)
// instance, and a killed lane instance is left behind in the data plane, without a push.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { closeAgent, pool, request, startLaneMesh, traceparent, until, type LaneMesh, type Reply } from './lanes-mesh.ts';

const CLI = path.join(import.meta.dirname, '..', '..', 'bin', 'sextant.mjs');

const LANES = `apiVersion: sextant.io/v1alpha1
kind: LaneGroup
metadata: {name: dev, namespace: default}
spec:
  services: [a, b, c, pay]
  lanes:
  - name: s2
    mocks: [{service: pay, directResponse: {status: 200, body: '{"mock":true}'}}]
  - name: s2.alice
  - name: s3
`;

/** Which instance served each hop: a, b, c. */
function chain(r: Reply): [string | undefined, string | undefined, string | undefined] {
  return [r.body?.name, r.body?.next?.body?.name, r.body?.next?.body?.next?.body?.name];
}

/** The lane headers of the b → c call, as b's sidecar answered b's app. */
function cHop(r: Reply): Record<string, string | undefined> {
  return r.body?.next?.body?.next?.headers ?? {};
}

/** The retries (numRetries) of the routes to c that retry, in a sidecar's route configurations. */
async function routeRetries(mesh: LaneMesh, name: string): Promise<number[]> {
  const dump = await (await fetch(`http://${mesh.workload(name).admin}/config_dump`)).json() as { configs: Array<{ dynamicRouteConfigs?: Array<{ routeConfig: { virtualHosts?: Array<{ name: string; routes: Array<{ route?: { retryPolicy?: { numRetries?: number } } }> }> } }> }> };
  const out: number[] = [];
  for (const c of dump.configs) {
    for (const rc of c.dynamicRouteConfigs ?? []) {
      for (const vh of rc.routeConfig.virtualHosts ?? []) {
        if (vh.name.startsWith('c.default')) for (const r of vh.routes) if (r.route?.retryPolicy !== undefined) out.push(r.route.retryPolicy.numRetries ?? 1);
      }
    }
  }
  return out;
}

function inLane(lane: string | undefined): Record<string, string> {
  return { traceparent: traceparent(), ...(lane !== undefined ? { 'x-sextant-lane': lane } : {}) };
}

describe('lanes end to end', () => {
  let mesh: LaneMesh;
  before(async () => {
    mesh = await startLaneMesh(160, [
      { name: 'client' },
      { name: 'client-s2', lane: 's2' },
      { name: 'a-base', service: 'a', next: 'b' },
      { name: 'a-s2', service: 'a', lane: 's2', next: 'b' },
      { name: 'b-base', service: 'b', next: 'c' },
      { name: 'b-s3', service: 'b', lane: 's3', next: 'c' },
      { name: 'c-base', service: 'c' },
      { name: 'c-s2', service: 'c', lane: 's2' },
      { name: 'pay-base', service: 'pay' },
    ], LANES);
    await until('the chain answers in s2', async () => chain(await mesh.send('client', 'a', inLane('s2')))[2] === 'c-s2');
  });
  after(async () => {
    closeAgent();
    await mesh?.stop();
  });

  it('permissive fallback: 1,000 requests in s2 are all served, b by the baseline and c by s2; none reach the baseline\'s c', async () => {
    const cBase = mesh.hits('c-base');
    const replies = await pool(1000, 20, () => mesh.send('client', 'a', inLane('s2')));
    const served = new Map<string, number>();
    for (const r of replies) {
      assert.equal(r.status, 200, r.text);
      const k = chain(r).join(' → ');
      served.set(k, (served.get(k) ?? 0) + 1);
    }
    assert.deepEqual([...served], [['a-s2 → b-base → c-s2', 1000]]);
    assert.equal(mesh.hits('c-base') - cBase, 0);
    // the lane is named on every hop's answer, and counted by the client's sidecar
    assert.deepEqual([replies[0]!.headers['x-sextant-served-lane'], replies[0]!.headers['x-sextant-requested-lane'], replies[0]!.headers['x-sextant-lane-reason']], ['s2', 's2', 'header']);
    assert.deepEqual([replies[0]!.body?.next?.headers['x-sextant-served-lane'], replies[0]!.body?.next?.headers['x-sextant-lane-reason']], ['baseline', 'trace']);
    assert.match(await mesh.stats('client'), /sextant_lane_requests_total\{lane="s2",served_lane="s2",reason="header"\} (\d+)/);
    const n = Number(/sextant_lane_requests_total\{lane="s2",served_lane="s2",reason="header"\} (\d+)/.exec(await mesh.stats('client'))![1]);
    assert.ok(n >= 1000, String(n));
  });

  it('return to origin with no lane header forwarded: s2, s3 and no lane interleaved at concurrency 50, zero misrouted in 2,000', async () => {
    const lanes = ['s2', 's3', undefined] as const;
    const want: Record<string, [string, string, string]> = { s2: ['a-s2', 'b-base', 'c-s2'], s3: ['a-base', 'b-s3', 'c-base'], none: ['a-base', 'b-base', 'c-base'] };
    const replies = await pool(2000, 50, (i) => mesh.send('client', 'a', inLane(lanes[i % 3])));
    let misrouted = 0;
    const reasons = new Map<string, number>();
    replies.forEach((r, i) => {
      const lane = lanes[i % 3] ?? 'none';
      if (r.status !== 200 || chain(r).join() !== want[lane]!.join()) misrouted++;
      const k = `${lane}:${cHop(r)['x-sextant-lane-reason']}`;
      reasons.set(k, (reasons.get(k) ?? 0) + 1);
    });
    assert.equal(misrouted, 0);
    // b's sidecar found the lane of every laned request by its trace id alone
    assert.deepEqual([...reasons].sort(), [['none:baseline', 666], ['s2:trace', 667], ['s3:trace', 667]]);
  });

  it('own lane: a client in s2 that sends nothing reaches s2\'s c and the baseline\'s b; a client without a lane reaches the baseline', async () => {
    for (let i = 0; i < 50; i++) {
      const c = await mesh.send('client-s2', 'c');
      assert.deepEqual([c.status, c.body?.name, c.headers['x-sextant-lane-reason']], [200, 'c-s2', 'own']);
      const b = await mesh.send('client-s2', 'b');
      assert.deepEqual([b.status, chain(b)[0], chain(b)[1]], [200, 'b-base', 'c-s2']);
      const base = await mesh.send('client', 'c');
      assert.deepEqual([base.status, base.body?.name, base.headers['x-sextant-lane-reason']], [200, 'c-base', 'baseline']);
    }
  });

  it('a lane mock: requests in s2 get the mock, with s2 as the serving lane; requests without a lane get the baseline\'s pay', async () => {
    const payBase = mesh.hits('pay-base');
    for (let i = 0; i < 100; i++) {
      const m = await mesh.send('client', 'pay', inLane('s2'));
      assert.deepEqual([m.status, m.text, m.headers['x-sextant-served-lane']], [200, '{"mock":true}', 's2']);
    }
    assert.equal(mesh.hits('pay-base'), payBase);
    for (let i = 0; i < 100; i++) {
      const b = await mesh.send('client', 'pay', inLane(undefined));
      assert.deepEqual([b.status, b.body?.name], [200, 'pay-base']);
    }
  });

  it('hierarchy: s2.alice falls back to s2 (not the baseline) for c, and to the baseline once s2 has no c', async () => {
    for (let i = 0; i < 100; i++) assert.deepEqual(chain(await mesh.send('client', 'a', inLane('s2.alice'))), ['a-s2', 'b-base', 'c-s2']);
    const entry = mesh.workloadEntryYaml('c-s2');
    mesh.removeConfig('we-c-s2.yaml');
    try {
      await until('s2.alice reaches the baseline\'s c', async () => chain(await mesh.send('client', 'a', inLane('s2.alice')))[2] === 'c-base');
      for (let i = 0; i < 100; i++) assert.deepEqual(chain(await mesh.send('client', 'a', inLane('s2.alice'))), ['a-s2', 'b-base', 'c-base']);
    } finally {
      mesh.writeConfig('we-c-s2.yaml', entry);
    }
    await until('s2 has its c again', async () => chain(await mesh.send('client', 'a', inLane('s2.alice')))[2] === 'c-s2');
  });

  it('strict mode: applying a group whose lane lacks a service is refused, naming the service', () => {
    const file = path.join(mesh.dir, 'strict.yaml');
    const yaml = `apiVersion: sextant.io/v1alpha1
kind: LaneGroup
metadata: {name: strict, namespace: default}
spec:
  services: [a, b, c]
  mode: strict
  lanes:
  - {name: s4, services: [a, c]}
`;
    writeFileSync(file, yaml);
    const r = spawnSync(process.execPath, [CLI, 'apply', '-f', file, '--config-dir', path.join(mesh.dir, 'config')], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /LaneGroup\/default\/strict/);
    assert.match(r.stderr, /spec\.lanes\[0\]\.services: strict mode: lane "s4" is missing service b\.default\.svc\.cluster\.local/);
  });

  it('health-aware fallback: the lane\'s c killed while registered: zero failures with a retry, a handful without, back after restart', async () => {
    const retries = (attempts: number): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: c, namespace: default}
spec:
  hosts: [c]
  http:
  - route: [{destination: {host: c}}]
    retries: ${attempts > 0 ? `{attempts: ${attempts}, retryOn: connect-failure}` : '{attempts: 0}'}
`;
    // one retry, on connect failures: it goes to the next priority, the baseline's c
    mesh.writeConfig('vs-c.yaml', retries(1));
    await until('b\'s sidecar retries c once', () => routeRetries(mesh, 'b-base').then((n) => n.length > 0 && n.every((x) => x === 1)));
    await mesh.kill('c-s2');
    try {
      const withRetry = [];
      for (let i = 0; i < 200; i++) withRetry.push(await mesh.send('client', 'a', inLane('s2')));
      assert.deepEqual(withRetry.filter((r) => r.status !== 200).map((r) => r.text), []);
      assert.ok(withRetry.every((r) => chain(r)[2] === 'c-base'));
    } finally {
      await mesh.restart('c-s2');
    }
    await until('s2 is back on its own c', async () => chain(await mesh.send('client', 'a', inLane('s2')))[2] === 'c-s2', 60_000);

    // no retries: only the requests sent before the dead instance is ejected fail
    mesh.writeConfig('vs-c.yaml', retries(0));
    await until('b\'s sidecar routes to c without retries', () => routeRetries(mesh, 'b-base').then((n) => n.length === 0));
    await mesh.kill('c-s2');
    try {
      const noRetry: Reply[] = [];
      for (let i = 0; i < 200; i++) noRetry.push(await mesh.send('client', 'a', inLane('s2')));
      const failed = noRetry.filter((r) => r.status !== 200).length;
      assert.ok(failed >= 1 && failed <= 5, `failed: ${failed}`);
      assert.ok(noRetry.filter((r) => r.status === 200).every((r) => chain(r)[2] === 'c-base'));
    } finally {
      mesh.removeConfig('vs-c.yaml');
      await mesh.restart('c-s2');
    }
    await until('s2 is back on its own c', async () => chain(await mesh.send('client', 'a', inLane('s2')))[2] === 'c-s2', 60_000);
  });

  it('the edge: a lane header from a caller outside the mesh is stripped', async () => {
    const a = mesh.workload('a-base');
    const r = await request(a.ip, 9080, { host: 'a.default.svc.cluster.local', 'x-sextant-lane': 's2', baggage: 'sextant-lane=s2', traceparent: traceparent() });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual([r.body?.seen['x-sextant-lane'], r.body?.seen['baggage']], [undefined, undefined]);
    assert.deepEqual(chain(r), ['a-base', 'b-base', 'c-base']);
  });
});
