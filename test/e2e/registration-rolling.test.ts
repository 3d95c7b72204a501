// A rolling release loses nothing (MISSION M4): under a steady 200 requests/s through a
// client's sidecar, each of three instances in turn is pulled out (`sextant register pull-out
// --wait`: until every proxy holding it has ACKed), its requests drain, it is stopped,
// restarted and pulled back in (`pull-in --wait`). Every request answers 200.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { etcdUnavailableReason } from '../helpers/etcd.ts';
import {
  INSTANCE_PORT, SERVICE, SERVICE_PORT, closeAgent, send, startRegistrationMesh, until, type RegistrationMesh, type Sent,
} from './registration-mesh.ts';

const RATE = 200;

describe('a rolling release through the registration API', { skip: etcdUnavailableReason() }, () => {
  let mesh: RegistrationMesh;
  before(async () => {
    mesh = await startRegistrationMesh(42, 3);
  });
  after(async () => {
    closeAgent();
    await mesh?.stop();
  });

  it('pulls out, stops, restarts and pulls in each of three instances under 200 requests/s with zero failed requests', async () => {
    // Registered with the CLI, as a deployment pipeline would.
    let r = await mesh.register('service', SERVICE, '--port', `http:${SERVICE_PORT}:HTTP`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^service shop\/reviews registered: reviews\.shop\.svc\.cluster\.local \(resourceVersion \d+\)\n$/);
    for (const i of mesh.instances) {
      r = await mesh.register('instance', SERVICE, i.id, '--address', i.address, '--port', `http=${INSTANCE_PORT}`, '--label', 'version=v1');
      assert.equal(r.code, 0, r.stderr);
    }
    await until('every instance serves', async () => {
      const batch = await Promise.all(Array.from({ length: 12 }, () => send(mesh)));
      return batch.every((x) => x.status === 200) && new Set(batch.map((x) => x.instance)).size === 3;
    });

    // Open loop: RATE requests a second, each tick sent whatever the previous ones are doing.
    const results: Promise<Sent>[] = [];
    let sending = true;
    const started = performance.now();
    const load = (async () => {
      let sent = 0;
      while (sending) {
        const due = Math.floor(((performance.now() - started) / 1000) * RATE);
        for (; sent < due; sent++) results.push(send(mesh));
        await sleep(5);
      }
    })();

    const steps: string[] = [];
    /** Per instance: from its pull-out's ACK to its pull-in call, when it must get no new request. */
    const out = new Map<string, [number, number]>();
    await sleep(1000);
    for (const instance of mesh.instances) {
      const t0 = performance.now();
      r = await mesh.register('pull-out', SERVICE, instance.id, '--wait', '10');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^instance ${instance.id} of shop/reviews pulled out of traffic \\(resourceVersion \\d+\\); 1 proxy acked in \\d+ ms\\n$`));
      const ackedAt = performance.now();
      const acked = ackedAt - t0;
      await until(`${instance.id} has no request in flight`, async () => (await mesh.inflight(instance)) === 0, 10_000);
      await mesh.stopInstance(instance);
      await sleep(200);
      await mesh.startInstance(instance);
      out.set(instance.id, [ackedAt, performance.now()]);
      r = await mesh.register('pull-in', SERVICE, instance.id, '--wait', '10');
      assert.equal(r.code, 0, r.stderr);
      steps.push(`${instance.id}: out and acked after ${Math.round(acked)} ms, back after ${Math.round(performance.now() - t0)} ms`);
      await sleep(500);
    }
    await sleep(1000);
    sending = false;
    await load;
    const all = await Promise.all(results);
    const seconds = (performance.now() - started) / 1000;

    const failed = all.filter((x) => x.status !== 200);
    process.stdout.write(`# ${all.length} requests in ${seconds.toFixed(1)} s (${Math.round(all.length / seconds)}/s), ${failed.length} failed; ${steps.join('; ')}\n`);
    assert.ok(all.length >= RATE * (seconds - 1), `only ${all.length} requests sent in ${seconds.toFixed(1)} s`);
    assert.deepEqual(failed.slice(0, 5).map((x) => `${x.status} ${x.instance}`), []);
    // Once every proxy had ACKed its pull-out, an instance got no new request until pulled back in
    // (100 ms of slack for a request already on its way to the sidecar).
    const strays = all.filter((x) => {
      const window = out.get(x.instance);
      return window !== undefined && x.at > window[0] + 100 && x.at < window[1];
    });
    assert.deepEqual(strays.map((x) => x.instance), []);
    // Every instance served during the run, the restarted ones included.
    const late = all.filter((x) => x.at > started + (seconds - 1) * 1000);
    assert.deepEqual([...new Set(late.map((x) => x.instance))].sort(), ['i1', 'i2', 'i3']);
  });
});
