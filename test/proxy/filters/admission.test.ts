// The admission gate of adaptive limits as a pure object, on a clock and timer the test
// drives: the limit from the leased runtime value (floor and ceiling) or the fail-safe, the
// bounded queue and its timeout, tiers (lowest shed first, tier 0's reserve), shadow mode,
// the local reflex that only lowers the limit between controller updates, and the load
// report of an interval. Then the filter config the pilot sends, and the gate in a sidecar.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LISTENER_TYPE, RUNTIME_TYPE, TYPED_STRUCT_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { ADMISSION_TYPE, AdmissionGate, compileAdmission, LatencyHistogram, REFLEX_WINDOW_MS } from '../../../src/proxy/filters/admission/index.ts';
import type { Admission, AdmissionConfig, AdmissionTicket, GateTimers } from '../../../src/proxy/filters/admission/index.ts';
import { RuntimeLayers } from '../../../src/proxy/config/runtime-layer.ts';
import { assignment, edsCluster, freePort, httpListener, meshWith, routeConfig, send, startBackend } from '../helpers/fixtures.ts';

const KEY = 'circuit_breakers.inbound|9080||.default.max_requests';

function value(over: ProtoJson = {}): ProtoJson {
  return {
    rule: 'default/reviews', limitRuntimeKey: KEY, failSafeLimit: 0, floor: 2, ceiling: 100, queueSize: 2, queueTimeoutMs: 50,
    tierHeader: 'x-sextant-priority', tiers: 3, tier0ReservePercent: 25, enforce: true, reject: { status: 503, body: 'overloaded' },
    reflex: { latencyTargetMs: 0, maxCutPercent: 0 }, ...over,
  };
}

function config(over: ProtoJson = {}): AdmissionConfig {
  return compileAdmission({ '@type': TYPED_STRUCT_TYPE, typeUrl: ADMISSION_TYPE, value: value(over) }, 'admission');
}

/** A clock and a timer the test moves by hand. */
class ManualTime implements GateTimers {
  t = 0;
  private readonly pending = new Map<number, { at: number; fn: () => void }>();
  private seq = 0;
  now = (): number => this.t;
  set(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.pending.set(id, { at: this.t + ms, fn });
    return id;
  }
  clear(h: unknown): void {
    this.pending.delete(h as number);
  }
  advance(ms: number): void {
    this.t += ms;
    for (const [id, p] of [...this.pending].sort((a, b) => a[1].at - b[1].at)) {
      if (p.at > this.t) continue;
      this.pending.delete(id);
      p.fn();
    }
  }
}

/** A runtime source holding one key (the controller's leased value). */
class Limit {
  v: number | undefined;
  integer(): number | undefined { return this.v; }
}

function gate(over: ProtoJson = {}, limit?: number): { g: AdmissionGate; time: ManualTime; source: Limit } {
  const time = new ManualTime();
  const source = new Limit();
  source.v = limit;
  return { g: new AdmissionGate(config(over), source, time.now, time), time, source };
}

function ticket(a: Admission): AdmissionTicket {
  assert.equal(a.kind, 'admitted');
  return (a as { ticket: AdmissionTicket }).ticket;
}

test('the limit: the leased value clamped to floor and ceiling; without a lease the fail-safe (0 = unlimited)', () => {
  const { g, source } = gate({ failSafeLimit: 0 }, undefined);
  assert.equal(g.limit(), Infinity);
  source.v = 1;
  assert.equal(g.limit(), 2, 'never below the floor');
  source.v = 500;
  assert.equal(g.limit(), 100, 'never above the ceiling');
  source.v = 40;
  assert.equal(g.limit(), 40);
  source.v = undefined; // the lease lapsed
  assert.equal(gate({ failSafeLimit: 1 }).g.limit(), 2, 'a fail-safe below the floor is the floor');
  assert.equal(gate({ failSafeLimit: 64 }).g.limit(), 64);
});

test('at the limit a request waits in the bounded queue and goes in when a slot frees; past the queue it is refused at once', async () => {
  const { g } = gate({ tiers: 1, tier0ReservePercent: 0 }, 2);
  const a = ticket(g.admit(0));
  ticket(g.admit(0));
  const q1 = g.admit(0);
  const q2 = g.admit(0);
  assert.deepEqual([q1.kind, q2.kind, g.waiting], ['queued', 'queued', 2]);
  assert.deepEqual(g.admit(0), { kind: 'rejected', reason: 'overflow' }, 'queue full');
  g.leave(a, 200);
  assert.equal((await (q1 as { settled: Promise<Admission> }).settled).kind, 'admitted');
  assert.deepEqual([g.inflight, g.waiting], [2, 1]);
  assert.deepEqual(g.counters, { admitted: 3, queued: 2, rejectedOverflow: 1, rejectedEvicted: 0, rejectedTimeout: 0, shadowRejects: 0, reflexCuts: 0 });
});

test('a waiter whose queue timeout passes is refused (one timer for the earliest deadline)', async () => {
  const { g, time } = gate({ tiers: 1, tier0ReservePercent: 0, queueTimeoutMs: 50, floor: 1 }, 1);
  ticket(g.admit(0));
  const q1 = g.admit(0) as { kind: 'queued'; settled: Promise<Admission> };
  time.advance(30);
  const q2 = g.admit(0) as { kind: 'queued'; settled: Promise<Admission> };
  time.advance(20);
  assert.deepEqual(await q1.settled, { kind: 'rejected', reason: 'timeout' });
  assert.equal(g.waiting, 1);
  time.advance(30);
  assert.deepEqual(await q2.settled, { kind: 'rejected', reason: 'timeout' });
  const r = g.report(time.now());
  assert.deepEqual([r.errors, r.dropped, r.shedByTier], [2, 0, [2]], 'queue timeouts are errors, not drops');
});

test('tiers: tier 0 keeps its reserve, a full queue sheds its lowest tier first, and a newcomer never overtakes a waiter of its tier', async () => {
  // limit 4, reserve 25 %: tiers 1 and 2 may hold 3 slots, tier 0 all 4
  const { g } = gate({ tiers: 3, tier0ReservePercent: 25, queueSize: 2 }, 4);
  for (let i = 0; i < 3; i++) ticket(g.admit(2));
  const low = g.admit(2);
  assert.equal(low.kind, 'queued', 'the reserve is not for tier 2');
  const top = ticket(g.admit(0));
  assert.equal(g.inflight, 4);
  const mid = g.admit(1);
  assert.equal(mid.kind, 'queued');
  // The queue (2) is full: a tier-0 newcomer evicts the newest waiter of the lowest tier.
  const urgent = g.admit(0);
  assert.equal(urgent.kind, 'queued');
  assert.deepEqual(await (low as { settled: Promise<Admission> }).settled, { kind: 'rejected', reason: 'evicted' });
  // Nothing below tier 0 may evict it: a tier-2 newcomer is refused.
  assert.deepEqual(g.admit(2), { kind: 'rejected', reason: 'overflow' });
  g.leave(top, 200);
  // The freed slot goes to the highest priority waiting: tier 0 (4 in flight again), tier 1 still waits.
  assert.equal((await (urgent as { settled: Promise<Admission> }).settled).kind, 'admitted');
  assert.deepEqual([g.inflight, g.waiting], [4, 1]);
  const r = g.report();
  assert.deepEqual([r.dropped, r.shedByTier], [2, [0, 0, 2]]);
  assert.equal(g.tierOf(undefined), 2, 'no header: the lowest tier');
  assert.deepEqual([g.tierOf('0'), g.tierOf('1'), g.tierOf('7'), g.tierOf('x')], [0, 1, 2, 2]);
});

test('shadow mode refuses nothing and counts the requests the queue could not have held', () => {
  const { g } = gate({ enforce: false, tiers: 1, tier0ReservePercent: 0, queueSize: 1 }, 2);
  const outcomes = Array.from({ length: 5 }, () => g.admit(0).kind);
  assert.deepEqual(outcomes, ['admitted', 'admitted', 'admitted', 'admitted', 'admitted']);
  assert.equal(g.counters.shadowRejects, 2, 'the 4th and 5th: beyond 2 in flight and 1 waiting');
  const r = g.report();
  assert.deepEqual([r.shadowShed, r.dropped, r.issued, r.concurrencyMax], [2, 0, 5, 5]);
});

test('the reflex lowers the limit after 3 slow windows in a row, by 10 % a step, at most maxCut below the controller\'s value; a new value resets it', () => {
  const { g, time, source } = gate({ tiers: 1, tier0ReservePercent: 0, queueSize: 0, reflex: { latencyTargetMs: 100, maxCutPercent: 20 } }, 50);
  let window = 20;
  // Each window of 100 ms sees five completions: slow ones (120 ms, admitted in the window
  // before) or fast ones (10 ms); a window is judged at the first completion of the next.
  const run = (pattern: string): void => {
    const events: { at: number; act: () => void }[] = [];
    for (const c of pattern) {
      const base = window++ * REFLEX_WINDOW_MS;
      const batch: AdmissionTicket[] = [];
      const [admitAt, leaveAt] = c === 'S' ? [base - 50, base + 70] : [base + 20, base + 30];
      events.push({ at: admitAt, act: () => { for (let i = 0; i < 5; i++) batch.push(ticket(g.admit(0))); } });
      events.push({ at: leaveAt, act: () => { for (const t of batch) g.leave(t, 200); } });
    }
    events.sort((a, b) => a.at - b.at);
    for (const e of events) {
      assert.ok(e.at >= time.t, 'the plan never goes back in time');
      time.advance(e.at - time.t);
      e.act();
    }
  };
  run('SSFSF');
  assert.equal(g.limit(), 50, 'a fast window breaks the run');
  run('SSSF');
  assert.equal(g.limit(), 45, '3 slow windows in a row: -10 %');
  run('SSSSSSSSSSSSF');
  assert.equal(g.limit(), 40, 'never more than 20 % below the controller\'s 50');
  assert.equal(g.counters.reflexCuts, 2);
  source.v = 60; // the controller's next value: the reflex's cut was for the old one
  assert.equal(g.limit(), 60);
  source.v = undefined; // lease lapsed, fail-safe 0: unlimited, and the reflex has nothing to cut
  assert.equal(g.limit(), Infinity);
});

test('the interval report: successes, errors (5xx), issued, in progress, latency percentiles of admitted requests; a new interval after', () => {
  const { g, time } = gate({ tiers: 1, tier0ReservePercent: 0 }, 10);
  const ts = Array.from({ length: 4 }, () => ticket(g.admit(0)));
  time.advance(10);
  g.leave(ts[0]!, 200);
  time.advance(10);
  g.leave(ts[1]!, 503);
  time.advance(80);
  g.leave(ts[2]!, 200);
  const r = g.report(time.now());
  assert.deepEqual({ ...r, latency: { ...r.latency, p50: Math.round(r.latency.p50), p99: Math.round(r.latency.p99) } }, {
    cluster: 'inbound|9080||', successful: 2, errors: 1, issued: 4, inProgress: 1, dropped: 0,
    latency: { p50: 20, p90: r.latency.p90, p99: 100, samples: 3 }, concurrencyMax: 4, limit: 10, shadowShed: 0, shedByTier: [0], intervalMs: 100,
  });
  assert.ok(r.latency.p90 >= 95 && r.latency.p90 <= 100, `p90 ${r.latency.p90} within a bucket of 100 ms`);
  const next = g.report(time.now());
  assert.deepEqual([next.successful, next.issued, next.inProgress, next.latency.samples, next.concurrencyMax], [0, 0, 1, 0, 1]);
});

test('the latency histogram: quantiles within 5 %, capped at the largest value', () => {
  const h = new LatencyHistogram();
  for (let i = 1; i <= 1000; i++) h.record(i);
  for (const [q, want] of [[0.5, 500], [0.9, 900], [0.99, 990]] as const) {
    const got = h.quantile(q);
    assert.ok(got >= want && got <= want * 1.05, `q${q}: ${got}`);
  }
  assert.equal(h.quantile(1), 1000);
  h.reset();
  assert.equal(h.quantile(0.5), 0);
});

test('the filter config is checked field by field: unknown fields and values out of range refuse the listener', () => {
  assert.deepEqual(config(), {
    rule: 'default/reviews', limitRuntimeKey: KEY, cluster: 'inbound|9080||', failSafeLimit: 0, floor: 2, ceiling: 100, queueSize: 2, queueTimeoutMs: 50,
    tierHeader: 'x-sextant-priority', tiers: 3, tier0ReservePercent: 25, enforce: true, rejectStatus: 503, rejectBody: 'overloaded',
    reflexLatencyTargetMs: 0, reflexMaxCutPercent: 0,
  });
  const bad: [ProtoJson, RegExp][] = [
    [{ limitRuntimeKey: undefined }, /admission\.value\.limitRuntimeKey: required/],
    [{ queueLength: 1 }, /admission\.value\.queueLength: no such field/],
    [{ floor: 10, ceiling: 5 }, /admission\.value\.ceiling: 5 is below the floor 10/],
    [{ tiers: 0 }, /admission\.value\.tiers: expected a number in 1\.\.16/],
    [{ queueSize: 1e6 }, /admission\.value\.queueSize: expected a number in 0\.\.100000/],
    [{ reject: { status: 200 } }, /admission\.value\.reject\.status: expected a number in 400\.\.599/],
    [{ reflex: { latencyTarget: 1 } }, /admission\.value\.reflex\.latencyTarget: no such field/],
    [{ enforce: 'yes' }, /admission\.value\.enforce: expected true or false/],
  ];
  for (const [over, message] of bad) {
    const v = value(over);
    for (const k of Object.keys(over)) if (over[k] === undefined) delete v[k];
    assert.throws(() => compileAdmission({ '@type': TYPED_STRUCT_TYPE, typeUrl: ADMISSION_TYPE, value: v }, 'admission'), message);
  }
  assert.throws(() => compileAdmission({ '@type': ADMISSION_TYPE }, 'admission'), /must be a TypedStruct/);
});

test('the runtime layer as the gate\'s source: a leased value lapses with its TTL and the gate falls back to the fail-safe', () => {
  let now = 0;
  const layers = new RuntimeLayers({ clock: () => now });
  const time = new ManualTime();
  const g = new AdmissionGate(config({ failSafeLimit: 64, floor: 4 }), layers, time.now, time);
  const layer = (v: number, ttlMs?: number, heartbeat = false) => new Map([['sextant-adaptive', {
    name: 'sextant-adaptive', version: 'v', resource: { name: 'sextant-adaptive', layer: { [KEY]: v } }, ...(ttlMs !== undefined ? { ttlMs } : {}), ...(heartbeat ? { heartbeat } : {}),
  }]]);
  assert.equal(g.limit(), 64);
  layers.apply(layer(12, 3000));
  assert.equal(g.limit(), 12);
  now = 2500;
  layers.apply(layer(12, 3000, true)); // a heartbeat: the lease runs to 5500
  now = 5000;
  assert.equal(g.limit(), 12);
  now = 5500;
  assert.equal(g.limit(), 64, 'the lease lapsed: fail-safe');
  assert.equal(layers.lapsed, 1);
  layers.apply(layer(12, 3000, true));
  assert.equal(g.limit(), 64, 'a heartbeat does not revive a lapsed lease');
  layers.apply(layer(2, 3000));
  assert.equal(g.limit(), 4, 'a new body: the value again, never below the floor');
});

test('through a sidecar: past the limit from RTDS the gate refuses with 503 and x-envoy-overloaded; a listener update keeps the gate and its counts', async () => {
  // a backend that holds each request until the test lets it go
  const held: (() => void)[] = [];
  const app = await startBackend('reviews', (req, res) => {
    req.resume();
    held.push(() => { res.writeHead(200); res.end('ok'); });
  });
  const port = await freePort();
  const admission = { name: 'sextant.filters.http.admission', typedConfig: { '@type': TYPED_STRUCT_TYPE, typeUrl: ADMISSION_TYPE, value: value({ tiers: 1, tier0ReservePercent: 0, queueSize: 0, floor: 1, reject: { status: 503, body: '' } }) } };
  const m = await meshWith({
    clusters: [edsCluster('reviews')],
    endpoints: [assignment('reviews', [app.port])],
    listeners: [httpListener('l', port, 'r', { direction: 'INBOUND', httpFilters: [admission] })],
    routes: [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{ name: 'all', match: { prefix: '/' }, route: { cluster: 'reviews', timeout: '0s' } }] }])],
  });
  try {
    await m.proxy.whenReady();
    const acks = m.ads.acks.length;
    m.ads.set(RUNTIME_TYPE, [{ name: 'sextant-adaptive', layer: { [KEY]: 2 } }]);
    await m.ads.waitFor((a) => a.typeUrl === RUNTIME_TYPE && !a.nack, 10_000, acks);
    const first = [send(port, '/a', { Host: 'reviews' }), send(port, '/b', { Host: 'reviews' })];
    while (held.length < 2) await new Promise((r) => setTimeout(r, 10));
    const refused = await send(port, '/c', { Host: 'reviews' });
    assert.deepEqual([refused.status, refused.headers['x-envoy-overloaded'], refused.body], [503, 'true', '']);
    for (const h of held.splice(0)) h();
    assert.deepEqual((await Promise.all(first)).map((r) => r.status), [200, 200]);
    const stats = await (await fetch(`http://${m.proxy.adminAddress}/stats`)).text();
    for (const line of ['admission.inbound|9080||.rq_admitted: 2', 'admission.inbound|9080||.rq_rejected_overflow: 1', 'admission.inbound|9080||.limit: 2']) assert.ok(stats.includes(`${line}\n`), `${line} in\n${stats}`);
    // A listener update keeps the gate (and its count of requests in flight).
    const gateBefore = [...m.proxy.admission.all()][0];
    const before = m.ads.acks.length;
    m.ads.set(LISTENER_TYPE, [httpListener('l', port, 'r', { direction: 'INBOUND', hcm: { statPrefix: 'changed' }, httpFilters: [admission] })]);
    await m.ads.waitFor((a) => a.typeUrl === LISTENER_TYPE && !a.nack, 10_000, before);
    assert.equal([...m.proxy.admission.all()][0], gateBefore);
    const report = gateBefore!.report();
    assert.deepEqual([report.successful, report.dropped, report.issued, report.inProgress, report.limit], [2, 1, 2, 0, 2]);
  } finally {
    for (const h of held.splice(0)) h();
    await m.close();
    await app.close();
  }
});
