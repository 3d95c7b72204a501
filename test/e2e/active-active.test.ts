// Same-city active-active end to end (MISSION M20): a client's sidecar started in data centre
// sh/dc-a, a service with three instances in each of sh/dc-a and sh/dc-b registered through the
// registration API, a real pilot; no DestinationRule and no outlierDetection. Traffic stays in
// the client's data centre, moves to the other one when the local instances are removed (no
// error) or killed (no 5xx with one retry), spills in proportion when local instances are not
// ready; requests carry the caller's and the first hop's data centres, responses the serving one.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { closeAgent, pool, startLaneMesh, traceparent, until, type LaneMesh, type Reply } from './lanes-mesh.ts';

const TOKEN = 'e2e-active-active-token-0123456789';
const BASE = 162;
const DC_A = 'sh/dc-a';
const DC_B = 'sh/dc-b';
// workloads: client, front, then the six instances (their addresses follow from their order)
const INSTANCES = [1, 2, 3, 4, 5, 6].map((n) => ({ id: `i${n}`, dc: n <= 3 ? DC_A : DC_B, ip: `127.0.${BASE}.${n + 2}` }));

function servedBy(r: Reply): string {
  return r.status === 200 ? (r.body?.dc ?? '?') : `status ${r.status}`;
}

function tally(replies: readonly Reply[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of replies) m.set(servedBy(r), (m.get(servedBy(r)) ?? 0) + 1);
  return m;
}

// a second service on the same six apps, from files: two of the three dc-a instances not ready,
// and the local-health threshold at 50 %
const READY = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ready, namespace: default}
spec:
  hosts: [ready.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ready}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ready, namespace: default, annotations: {sextant.io/failover-threshold: "50"}}
spec:
  host: ready.default.svc.cluster.local
${INSTANCES.map((i, n) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ready-${i.id}, namespace: default}
spec:
  address: ${i.ip}
  ports: {http: 8080}
  locality: ${i.dc}
  labels: {app: ready}${n === 1 || n === 2 ? '\nstatus: {conditions: [{type: Healthy, status: "False"}]}' : ''}`).join('\n')}
`;

describe('active-active end to end', () => {
  let mesh: LaneMesh;
  const tokens = mkdtempSync(path.join(tmpdir(), 'sextant-active-active-'));
  let api: (method: string, p: string, body?: unknown) => Promise<{ status: number; body: unknown }>;
  const register = async (i: (typeof INSTANCES)[number]): Promise<void> => {
    const r = await api('PUT', `/namespaces/default/services/echo/instances/${i.id}`, { address: i.ip, ports: { http: 8080 }, locality: i.dc });
    assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.body));
  };
  const send = (): Promise<Reply> => mesh.send('client', 'echo', { traceparent: traceparent() });

  before(async () => {
    const file = path.join(tokens, 'registration-tokens');
    writeFileSync(file, `${TOKEN} default\n`, { mode: 0o600 });
    mesh = await startLaneMesh(BASE, [
      { name: 'client', dc: DC_A },
      { name: 'front', service: 'front', dc: DC_B, next: 'echo' },
      ...INSTANCES.map((i) => ({ name: `echo-${i.id}`, service: 'echo', dc: i.dc, bare: true, unregistered: true })),
    ], READY, ['--registration-tokens', file]);
    api = async (method, p, body) => {
      const res = await fetch(`${mesh.pilot.url}/apis/registration/v1${p}`, {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      return { status: res.status, body: await res.json() };
    };
    const svc = await api('PUT', '/namespaces/default/services/echo', { ports: [{ name: 'http', number: 9080, protocol: 'HTTP' }] });
    assert.equal(svc.status, 201, JSON.stringify(svc.body));
    for (const i of INSTANCES) await register(i);
    await until('the client reaches echo', async () => (await send()).status === 200);
  });
  after(async () => {
    closeAgent();
    await mesh?.stop();
    rmSync(tokens, { recursive: true, force: true });
  });

  it('both data centres healthy: at least 99.9 % of requests stay in the client\'s', async () => {
    const t = tally(await pool(3000, 20, send));
    assert.ok((t.get(DC_A) ?? 0) >= 2997, JSON.stringify([...t]));
  });

  it('headers: the caller\'s data centre at every hop, the first hop\'s kept (the app forwards neither), the serving one on the response', async () => {
    const r = await mesh.send('client', 'front', { traceparent: traceparent() });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-sextant-served-dc'], DC_B);
    assert.deepEqual([r.body?.seen['x-sextant-caller-dc'], r.body?.seen['x-sextant-origin-dc']], [DC_A, DC_A]);
    // front's app forwarded only traceparent: its sidecar names itself as the caller, and the
    // first hop's data centre comes back from its trace table
    const next = r.body?.next?.body;
    assert.deepEqual([next?.seen['x-sextant-caller-dc'], next?.seen['x-sextant-origin-dc']], [DC_B, DC_A]);
  });

  it('the local instances removed through the registration API: all traffic moves to the other data centre, with no error', async () => {
    let stop = false;
    const during: Reply[] = [];
    const load = Promise.all(Array.from({ length: 8 }, async () => {
      while (!stop) during.push(await send());
    }));
    await new Promise((r) => setTimeout(r, 300));
    for (const i of INSTANCES.filter((x) => x.dc === DC_A)) {
      const r = await api('DELETE', `/namespaces/default/services/echo/instances/${i.id}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    await until('a request reaches the other data centre', async () => servedBy(await send()) === DC_B);
    const afterMove = await pool(500, 8, send);
    stop = true;
    await load;
    assert.deepEqual([...tally(afterMove)], [[DC_B, 500]]);
    assert.deepEqual(during.filter((r) => r.status !== 200).map((r) => r.text), []);
    assert.ok(tally(during).get(DC_A)! > 0, 'the load ran before the move');
    for (const i of INSTANCES.filter((x) => x.dc === DC_A)) await register(i);
    await until('the local data centre serves again', async () => servedBy(await send()) === DC_A);
  });

  it('the local processes killed while registered: with one retry no client sees a 5xx; passive ejection empties the data centre', async () => {
    mesh.writeConfig('vs-echo.yaml', `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - route: [{destination: {host: echo}}]
    retries: {attempts: 1, retryOn: connect-failure}
`);
    const local = INSTANCES.filter((x) => x.dc === DC_A);
    try {
      await until('the client retries once', async () => {
        const dump = JSON.stringify(await (await fetch(`http://${mesh.workload('client').admin}/config_dump`)).json());
        return dump.includes('"retryOn":"connect-failure","numRetries":1');
      });
      for (const i of local) await mesh.kill(`echo-${i.id}`);
      const replies: Reply[] = [];
      for (let n = 0; n < 300; n++) replies.push(await send());
      assert.deepEqual(replies.filter((r) => r.status >= 500 || r.status === 0).map((r) => `${r.status} ${r.text}`), []);
      assert.deepEqual([...tally(replies)], [[DC_B, 300]]);
      const clusters = await (await fetch(`http://${mesh.workload('client').admin}/clusters`)).text();
      for (const i of local) assert.match(clusters, new RegExp(`echo\\.default\\.svc\\.cluster\\.local::${i.ip.replaceAll('.', '\\.')}:8080::health_flags::/failed_outlier_check`));
    } finally {
      mesh.removeConfig('vs-echo.yaml');
      for (const i of local) await mesh.restart(`echo-${i.id}`);
    }
  });

  it('two of three local instances not ready, threshold 50 %: the local share is 67 ± 3 %', async () => {
    await until('the ready service answers', async () => (await mesh.send('client', 'ready', {})).status === 200);
    const t = tally(await pool(3000, 20, () => mesh.send('client', 'ready', {})));
    const local = (t.get(DC_A) ?? 0) / 3000;
    assert.equal((t.get(DC_A) ?? 0) + (t.get(DC_B) ?? 0), 3000, JSON.stringify([...t]));
    assert.ok(local >= 0.64 && local <= 0.70, `local share ${local}`);
  });
});
