// The AdaptiveLimit kind (sextant.io/v1alpha1): what a rule may say, the exact errors for what
// it may not, the defaults every consumer reads, and its status kept by the config store.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { adaptiveLimitSettings, parseDocuments, validateResource, type AdaptiveLimitSpec, type Resource } from '../../src/api/index.ts';
import { openDirectoryStore } from '../../src/config/file/store.ts';

function rule(spec: unknown, name = 'reviews'): Resource {
  return { apiVersion: 'sextant.io/v1alpha1', kind: 'AdaptiveLimit', metadata: { name, namespace: 'shop' }, spec };
}

function problems(spec: unknown): string[] {
  return validateResource(rule(spec)).map((e) => `${e.path}: ${e.detail}`);
}

describe('AdaptiveLimit validation', () => {
  test('a full rule as documented is accepted', () => {
    const docs = parseDocuments(`
apiVersion: sextant.io/v1alpha1
kind: AdaptiveLimit
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  port: 9080
  enforce: true
  target: {latency: 120ms, percentile: 90, errorRate: 0.05}
  pid: {kp: 0.5, ki: 0.4, kd: 0, interval: 1s, maxStepUp: 0.2, maxStepDown: 0.5, deadband: 0.05}
  limits: {floor: 4, initial: 32, ceiling: 256}
  queue: {size: 16, timeout: 200ms}
  priority: {header: x-sextant-priority, tiers: 3, tier0ReservePercent: 20}
  reject: {status: 503, body: "busy"}
  failSafe: {limit: 0, lease: 5s}
  reflex: {latencyTarget: 240ms, maxCutPercent: 30}
`, 'rules.yaml');
    assert.deepEqual(docs.errors.map(String), []);
    assert.equal(docs.documents.length, 1);
    assert.deepEqual(validateResource(docs.documents[0]!.resource).map(String), []);
  });

  test('host and target.latency are required', () => {
    assert.deepEqual(problems({}), ['spec.host: Required value', 'spec.target: Required value']);
    assert.deepEqual(problems({ host: 'reviews', target: {} }), ['spec.target.latency: Required value']);
  });

  test('bad values name the field and what is expected', () => {
    const base = { host: 'reviews', target: { latency: '100ms' } };
    assert.deepEqual(problems({ ...base, host: '*.shop.svc.cluster.local' }), ['spec.host: Invalid value: "*.shop.svc.cluster.local": an adaptive limit names one service, not a wildcard']);
    assert.deepEqual(problems({ ...base, target: { latency: '100ms', percentile: 95 } }), ['spec.target.percentile: Unsupported value: 95: supported values: 50, 90, 99']);
    assert.deepEqual(problems({ ...base, target: { latency: 'soon' } }), ['spec.target.latency: Invalid value: "soon": must be a duration such as "100ms", "1s" or "1m30s"']);
    assert.deepEqual(problems({ ...base, pid: { interval: '10ms' } }), ['spec.pid.interval: Invalid value: "10ms": must be between 100ms and 60s']);
    assert.deepEqual(problems({ ...base, limits: { floor: 8, initial: 4 } }), ['spec.limits.initial: Invalid value: 4: must be at least floor (8)']);
    assert.deepEqual(problems({ ...base, limits: { floor: 2, initial: 16, ceiling: 8 } }), ['spec.limits.ceiling: Invalid value: 8: must be at least initial (16)']);
    assert.deepEqual(problems({ ...base, failSafe: { limit: 2 } }), ['spec.failSafe.limit: Invalid value: 2: the fail-safe must be 0 (unlimited) or at least floor (4); limits never go below the floor']);
    assert.deepEqual(problems({ ...base, pid: { interval: '2s' }, failSafe: { lease: '3s' } }), ['spec.failSafe.lease: Invalid value: "3s": must be at least two controller intervals (4s), or every tick would risk a lapse']);
    assert.deepEqual(problems({ ...base, priority: { tier0ReservePercent: 10 } }), ['spec.priority.tier0ReservePercent: Invalid value: a tier-0 reserve needs at least 2 tiers (spec.priority.tiers)']);
    assert.deepEqual(problems({ ...base, priority: { header: 'X-Tier', tiers: 2 } }), ['spec.priority.header: Invalid value: "X-Tier": header names are matched in lower case; write it so']);
    assert.deepEqual(problems({ ...base, reject: { status: 200 } }), ['spec.reject.status: Invalid value: 200: should be greater than or equal to 400']);
    assert.deepEqual(problems({ ...base, mode: 'enforce' }), ['spec.mode: unknown field "mode"']);
  });

  test('defaults: shadow mode, p90, a lease of three ticks (at least 3 s), the queue waits twice the target', () => {
    const s = adaptiveLimitSettings({ host: 'reviews', target: { latency: '100ms' } } satisfies AdaptiveLimitSpec);
    assert.equal(s.enforce, false);
    assert.equal(s.percentile, 90);
    assert.equal(s.leaseMs, 3000);
    assert.equal(s.queueTimeoutMs, 200);
    assert.equal(s.reflexLatencyTargetMs, 200);
    assert.deepEqual([s.floor, s.initial, s.ceiling], [4, 64, 1024]);
    assert.equal(s.failSafeLimit, 0);
    assert.equal(adaptiveLimitSettings({ host: 'r', target: { latency: '1s' }, pid: { interval: '2s' } }).leaseMs, 6000);
    assert.equal(adaptiveLimitSettings({ host: 'r', target: { latency: '1s' } }).queueTimeoutMs, 1000);
  });
});

describe('AdaptiveLimit status in the directory store', () => {
  test('a status-only write is stored, read back, and does not bump the generation', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sextant-al-'));
    const store = await openDirectoryStore({ dir, logger: pino({ level: 'silent' }) });
    try {
      const created = await store.create(rule({ host: 'reviews', target: { latency: '100ms' } }));
      assert.equal(created.status, undefined);
      const status = { budget: 24, limits: { '127.0.0.1': 12 } };
      const result = await store.apply([{ op: 'put', resource: { ...created, status }, ifMatch: created.metadata.resourceVersion }]);
      assert.equal(result.results[0]!.changed, true);
      const read = await store.get('AdaptiveLimit', 'shop', 'reviews');
      assert.deepEqual(read?.status, status);
      assert.equal(read?.metadata.generation, created.metadata.generation);
      // the same status again changes nothing
      const again = await store.apply([{ op: 'put', resource: { ...read!, status: { ...status } } }]);
      assert.equal(again.results[0]!.changed, false);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
