// The lazy-scope controller's pure step: edges from observed calls (registry hosts only, never
// the stable ones), aging with hysteresis at evaluations only (idle → EXPIRING, kept in the
// Sidecar; used again → ACTIVE; unused at a later evaluation → removed), what is written and
// when (the managed Sidecar on a change of hosts, the status on a change of shape or when
// last-use times moved and the checkpoint is due), a restart that restores from the store
// without rewriting anything, and a Sidecar of the user's that always wins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_EDGES_PER_WORKLOAD, forgetWritten, initialState, renderSidecar, step } from '../../../src/controllers/lazyscope/index.ts';
import type { CallObservation, LazyScopeState, LazyWorkload, StepConfig, StepResult } from '../../../src/controllers/lazyscope/index.ts';

const T0 = Date.parse('2026-01-05T12:00:00Z');
const S = 1000;

const REGISTRY = new Set(['svc-1.shop.svc.cluster.local', 'svc-2.shop.svc.cluster.local', 'hub.mesh.svc.cluster.local']);

function workload(over: Partial<LazyWorkload> = {}): LazyWorkload {
  return {
    namespace: 'shop', name: 'a-v1', selector: { app: 'a' }, lazyScope: 'shop/lazy', idleTimeoutMs: 60 * S,
    stableHosts: ['*/hub.mesh.svc.cluster.local'], spec: { workloadSelector: { labels: { app: 'a' } } },
    userSidecar: undefined, storedSidecar: undefined, storedEdges: undefined, hasWorkloadScope: true, ...over,
  };
}

function config(workloads: LazyWorkload[], evaluate: string[] = [], statusEveryMs = 30 * S): StepConfig {
  return {
    workloads,
    resolveHost: (h, ns) => {
      const bare = h.replace(/:\d+$/, '');
      const fqdn = bare.includes('.') ? bare : `${bare}.${ns}.svc.cluster.local`;
      return REGISTRY.has(fqdn) ? fqdn : undefined;
    },
    evaluate: new Set(evaluate),
    statusEveryMs,
  };
}

const call = (host: string, at: number, source: CallObservation['source'] = 'access-log', workload = 'a-v1'): CallObservation => ({ namespace: 'shop', workload, host, at, source });

function hostsWritten(r: StepResult): string[][] {
  return r.writes.filter((w) => w.kind === 'sidecar').map((w) => (w.kind === 'sidecar' ? w.sidecar.spec.egress![0]!.hosts : []));
}

function edges(r: StepResult): [string, string, string][] {
  const s = r.writes.find((w) => w.kind === 'status');
  return s?.kind === 'status' ? s.status.edges.map((e) => [e.host, e.source, e.state]) : [];
}

test('a first call to a registry host is an edge: the Sidecar gets the host, the status the edge', () => {
  let r = step(initialState(), [], config([workload()]), T0);
  assert.deepEqual(hostsWritten(r), [['*/hub.mesh.svc.cluster.local']]);
  r = step(r.state, [call('svc-1:8080', T0 + S), call('not-in-registry', T0 + S), call('hub.mesh.svc.cluster.local', T0 + S, 'prometheus')], config([workload()]), T0 + 2 * S);
  assert.deepEqual(hostsWritten(r), [['*/hub.mesh.svc.cluster.local', '*/svc-1.shop.svc.cluster.local']]);
  assert.deepEqual(edges(r), [['svc-1.shop.svc.cluster.local', 'access-log', 'ACTIVE']]);
  assert.deepEqual(r.added, [{ workload: 'shop/a-v1', host: 'svc-1.shop.svc.cluster.local', source: 'access-log' }]);
  // nothing new: nothing written
  r = step(r.state, [], config([workload()]), T0 + 3 * S);
  assert.deepEqual(r.writes, []);
});

test('aging: idle → EXPIRING at an evaluation (still in the Sidecar), used again → ACTIVE, unused at a later evaluation → removed', () => {
  const w = workload({ idleTimeoutMs: 10 * S });
  let r = step(initialState(), [call('svc-1', T0), call('svc-2', T0)], config([w]), T0);
  // not an evaluation: nothing ages however idle
  r = step(r.state, [], config([w]), T0 + 60 * S);
  assert.deepEqual(r.writes, []);
  // an evaluation: both idle past 10 s → EXPIRING, the Sidecar unchanged
  r = step(r.state, [], config([w], ['shop/lazy']), T0 + 61 * S);
  assert.deepEqual(hostsWritten(r), []);
  assert.deepEqual(edges(r), [['svc-1.shop.svc.cluster.local', 'access-log', 'EXPIRING'], ['svc-2.shop.svc.cluster.local', 'access-log', 'EXPIRING']]);
  // svc-1 is called (Prometheus sees it), svc-2 is not: at the next evaluation svc-1 is ACTIVE, svc-2 gone
  r = step(r.state, [call('svc-1.shop.svc.cluster.local', T0 + 62 * S, 'prometheus')], config([w], ['shop/lazy']), T0 + 62 * S);
  assert.deepEqual(hostsWritten(r), [['*/hub.mesh.svc.cluster.local', '*/svc-1.shop.svc.cluster.local']]);
  assert.deepEqual(edges(r), [['svc-1.shop.svc.cluster.local', 'access-log', 'ACTIVE']]);
  assert.deepEqual(r.removed, [{ workload: 'shop/a-v1', host: 'svc-2.shop.svc.cluster.local' }]);
  const status = r.writes.find((x) => x.kind === 'status');
  assert.ok(status?.kind === 'status');
  assert.equal(status.status.edges[0]!.lastSource, 'prometheus');
  assert.equal(status.status.edges[0]!.firstSeen, new Date(T0).toISOString());
});

test('an edge used every few seconds never expires', () => {
  const w = workload({ idleTimeoutMs: 10 * S });
  let r = step(initialState(), [call('svc-1', T0)], config([w]), T0);
  let state: LazyScopeState = r.state;
  for (let t = 3; t <= 120; t += 3) {
    r = step(state, [call('svc-1', T0 + t * S, 'prometheus')], config([w], ['shop/lazy']), T0 + t * S);
    state = r.state;
    assert.deepEqual(r.removed, []);
    assert.deepEqual(hostsWritten(r), []);
  }
});

test('last-use times are checkpointed: a status rewrite only when due', () => {
  let r = step(initialState(), [call('svc-1', T0)], config([workload()], [], 30 * S), T0);
  assert.equal(r.writes.filter((w) => w.kind === 'status').length, 1);
  r = step(r.state, [call('svc-1', T0 + 5 * S)], config([workload()], [], 30 * S), T0 + 5 * S);
  assert.deepEqual(r.writes, []);
  r = step(r.state, [call('svc-1', T0 + 31 * S)], config([workload()], [], 30 * S), T0 + 31 * S);
  const status = r.writes.find((w) => w.kind === 'status');
  assert.ok(status?.kind === 'status');
  assert.equal(status.status.edges[0]!.lastSeen, new Date(T0 + 31 * S).toISOString());
});

test('a restart restores the edges from the store and rewrites no Sidecar', () => {
  let r = step(initialState(), [call('svc-1', T0), call('svc-2', T0 + S)], config([workload()]), T0 + S);
  const status = r.writes.find((w) => w.kind === 'status');
  const sidecar = r.writes.find((w) => w.kind === 'sidecar');
  assert.ok(status?.kind === 'status' && sidecar?.kind === 'sidecar');
  // a new leader: empty state, the store's Sidecar and status
  const stored = workload({ storedSidecar: sidecar.sidecar.spec, storedEdges: status.status.edges });
  r = step(initialState(), [], config([stored]), T0 + 10 * S);
  assert.deepEqual(hostsWritten(r), []);
  assert.deepEqual(edges(r).map(([h]) => h), ['svc-1.shop.svc.cluster.local', 'svc-2.shop.svc.cluster.local']);
  const after = r.writes.find((w) => w.kind === 'status');
  assert.ok(after?.kind === 'status');
  assert.deepEqual(after.status.edges.map((e) => e.firstSeen), [new Date(T0).toISOString(), new Date(T0 + S).toISOString()]);
});

test('a Sidecar of the user\'s wins: no managed Sidecar (a stored one is deleted), the status says why', () => {
  let r = step(initialState(), [call('svc-1', T0)], config([workload()]), T0);
  const sidecar = r.writes.find((w) => w.kind === 'sidecar');
  assert.ok(sidecar?.kind === 'sidecar');
  r = step(r.state, [call('svc-2', T0 + S)], config([workload({ userSidecar: 'a-own', storedSidecar: sidecar.sidecar.spec })]), T0 + S);
  assert.deepEqual(r.writes.filter((w) => w.kind !== 'status').map((w) => [w.kind, w.kind === 'delete-sidecar' ? w.sidecarName : '']), [['delete-sidecar', 'a-v1-lazy']]);
  const status = r.writes.find((w) => w.kind === 'status');
  assert.ok(status?.kind === 'status');
  assert.equal(status.status.sidecar, null);
  assert.equal(status.status.userSidecar, 'a-own');
  assert.deepEqual(status.status.conditions.map((c) => c.type), ['UserSidecarPresent']);
});

test('edges per workload are bounded; a failed write is written again', () => {
  const many = new Set<string>();
  for (let i = 0; i < MAX_EDGES_PER_WORKLOAD + 5; i++) many.add(`h${i}.shop.svc.cluster.local`);
  const cfg: StepConfig = { ...config([workload()]), resolveHost: (h) => (many.has(h) ? h : undefined) };
  const r = step(initialState(), [...many].map((h, i) => call(h, T0 + i)), cfg, T0 + 10 * S);
  assert.equal(hostsWritten(r)[0]!.length, MAX_EDGES_PER_WORKLOAD + 1);
  const status = r.writes.find((w) => w.kind === 'status');
  assert.ok(status?.kind === 'status');
  assert.deepEqual(status.status.conditions.map((c) => c.type), ['EdgeLimitReached']);
  const again = step(forgetWritten(r.state, 'shop/a-v1', 'sidecar'), [], cfg, T0 + 11 * S);
  assert.equal(again.writes.filter((w) => w.kind === 'sidecar').length, 1);
});

test('the managed Sidecar takes the WorkloadScope\'s listener templates, each with the scope\'s hosts', () => {
  const w = workload({
    spec: {
      workloadSelector: { labels: { app: 'a' } },
      staticHosts: ['./svc-2.shop.svc.cluster.local'],
      ingress: [{ port: { number: 8080, protocol: 'HTTP', name: 'http' }, bind: '127.0.1.1', defaultEndpoint: '127.0.0.1:18080', captureMode: 'NONE' }],
      egress: [{ port: { number: 8080, protocol: 'HTTP', name: 'http' }, bind: '127.0.2.1', captureMode: 'NONE' }, { port: { number: 9090, protocol: 'HTTP', name: 'http-2' }, bind: '127.0.2.1', captureMode: 'NONE' }],
    },
  });
  assert.deepEqual(renderSidecar(w, ['*/x']), {
    workloadSelector: { labels: { app: 'a' } },
    ingress: [{ port: { number: 8080, protocol: 'HTTP', name: 'http' }, bind: '127.0.1.1', defaultEndpoint: '127.0.0.1:18080', captureMode: 'NONE' }],
    egress: [
      { port: { number: 8080, protocol: 'HTTP', name: 'http' }, bind: '127.0.2.1', captureMode: 'NONE', hosts: ['*/x'] },
      { port: { number: 9090, protocol: 'HTTP', name: 'http-2' }, bind: '127.0.2.1', captureMode: 'NONE', hosts: ['*/x'] },
    ],
  });
  // a static host is kept and never an edge
  const r = step(initialState(), [call('svc-2', T0)], config([w]), T0);
  assert.deepEqual(hostsWritten(r), [['*/hub.mesh.svc.cluster.local', './svc-2.shop.svc.cluster.local']]);
  assert.deepEqual(edges(r), []);
});
