// Service registration from a deployment platform (MISSION M4), end to end with real
// processes and a real etcd: through the registration API alone, a service and three
// instances are registered and a client's sidecar spreads its requests over the three; an
// instance pulled out gets no new request within a second, while the slow requests already
// in flight to it finish with 200; the pilot reports the client's sidecar as having ACKed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { etcdUnavailableReason } from '../helpers/etcd.ts';
import {
  INSTANCE_PORT, NAMESPACE, SERVICE, SERVICE_PORT, closeAgent, send, startRegistrationMesh, until, type RegistrationMesh, type Sent,
} from './registration-mesh.ts';

describe('registration API end to end', { skip: etcdUnavailableReason() }, () => {
  let mesh: RegistrationMesh;
  before(async () => {
    mesh = await startRegistrationMesh(40, 3);
  });
  after(async () => {
    closeAgent();
    await mesh?.stop();
  });

  it('registers a service and three instances; the client sidecar spreads over the three', async () => {
    const svc = await mesh.call('PUT', `/namespaces/${NAMESPACE}/services/${SERVICE}`, { ports: [{ name: 'http', number: SERVICE_PORT, protocol: 'HTTP' }] });
    assert.equal(svc.status, 201, JSON.stringify(svc.body));
    for (const i of mesh.instances) {
      const r = await mesh.call('PUT', `/namespaces/${NAMESPACE}/services/${SERVICE}/instances/${i.id}`, { address: i.address, ports: { http: INSTANCE_PORT }, labels: { version: 'v1' } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    await until('the client reaches the service', async () => (await send(mesh)).status === 200);
    const seen = new Map<string, number>();
    for (let n = 0; n < 60; n++) {
      const r = await send(mesh);
      assert.equal(r.status, 200, r.instance);
      seen.set(r.instance, (seen.get(r.instance) ?? 0) + 1);
    }
    assert.deepEqual([...seen.keys()].sort(), ['i1', 'i2', 'i3']);
    for (const [, n] of seen) assert.ok(n >= 10, JSON.stringify([...seen]));

    // The pilot knows the client's sidecar holds every instance, and has ACKed its state.
    const got = await mesh.call('GET', `/namespaces/${NAMESPACE}/services/${SERVICE}/instances/i1`);
    const acks = got.body['acks'] as { complete: boolean; proxies: Array<{ proxy: string; clusters: string[]; acked: boolean }> };
    assert.equal(acks.complete, true, JSON.stringify(acks));
    assert.deepEqual(acks.proxies.map((p) => [p.proxy, p.clusters, p.acked]), [[mesh.clientNodeId, [`outbound|${SERVICE_PORT}||${SERVICE}.${NAMESPACE}.svc.cluster.local`], true]]);
  });

  it('pulls one out: within 1 s it gets no new request, and requests in flight to it finish with 200', async () => {
    // Slow requests spread over the instances; pull out one that is serving some of them.
    const slow = Array.from({ length: 9 }, () => send(mesh, '/slow?ms=2500'));
    let target = mesh.instances[0]!;
    await until('slow requests are in flight', async () => {
      const counts = await Promise.all(mesh.instances.map((i) => mesh.inflight(i)));
      const busiest = counts.indexOf(Math.max(...counts));
      target = mesh.instances[busiest]!;
      return counts.reduce((a, b) => a + b, 0) === 9;
    });
    const inflightAtPull = await mesh.inflight(target);
    assert.ok(inflightAtPull > 0);

    // Steady new requests before, during and after the pull-out.
    const fast: Sent[] = [];
    let sending = true;
    const load = (async () => {
      while (sending) {
        const batch = await Promise.all(Array.from({ length: 5 }, () => send(mesh)));
        fast.push(...batch);
        await sleep(20);
      }
    })();
    await sleep(300);
    const pulledAt = performance.now();
    const out = await mesh.call('POST', `/namespaces/${NAMESPACE}/services/${SERVICE}/instances/${target.id}:pull-out`);
    assert.equal(out.status, 200, JSON.stringify(out.body));
    assert.equal(out.body['state'], 'out');
    await sleep(2000);
    sending = false;
    await load;

    const slowDone = await Promise.all(slow);
    assert.deepEqual(slowDone.map((r) => r.status), Array(9).fill(200));
    assert.equal(slowDone.filter((r) => r.instance === target.id).length, inflightAtPull);

    assert.ok(fast.every((r) => r.status === 200), JSON.stringify(fast.filter((r) => r.status !== 200).slice(0, 3)));
    const toTarget = fast.filter((r) => r.instance === target.id);
    const lastToTarget = Math.max(pulledAt, ...toTarget.map((r) => r.at));
    const afterPull = fast.filter((r) => r.at >= pulledAt + 1000);
    assert.ok(afterPull.length > 50, `${afterPull.length} requests sent 1 s after the pull-out`);
    assert.deepEqual(afterPull.filter((r) => r.instance === target.id), [], `new requests reached ${target.id} more than 1 s after its pull-out`);
    process.stdout.write(`# pull-out of ${target.id}: last new request to it sent ${Math.round(lastToTarget - pulledAt)} ms after the call; ${inflightAtPull} slow requests in flight finished with 200\n`);

    const got = await mesh.call('GET', `/namespaces/${NAMESPACE}/services/${SERVICE}/instances/${target.id}`);
    const acks = got.body['acks'] as { complete: boolean; state: string };
    assert.equal(acks.state, 'out');
    assert.equal(acks.complete, true, JSON.stringify(acks));

    // Pulled back in, it serves again.
    assert.equal((await mesh.call('POST', `/namespaces/${NAMESPACE}/services/${SERVICE}/instances/${target.id}:pull-in`)).status, 200);
    await until(`${target.id} serves again`, async () => {
      const batch = await Promise.all(Array.from({ length: 6 }, () => send(mesh)));
      return batch.some((r) => r.instance === target.id);
    }, 5000);
  });
});
