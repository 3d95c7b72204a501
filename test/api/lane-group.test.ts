// The LaneGroup kind (sextant.io/v1alpha1): what a group may say, the exact errors for what it
// may not (strict mode names the service a lane is missing), refused by the config store at apply
// time; and the DestinationRule annotation of the failover threshold.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { parseDocuments, parseFailoverThreshold, validateResource, type Resource } from '../../src/api/index.ts';
import { openDirectoryStore } from '../../src/config/file/store.ts';

function group(spec: unknown, name = 'dev'): Resource {
  return { apiVersion: 'sextant.io/v1alpha1', kind: 'LaneGroup', metadata: { name, namespace: 'default' }, spec };
}

function problems(r: Resource): string[] {
  return validateResource(r).map((e) => `${e.path}: ${e.detail}`);
}

const SERVICES = ['a', 'b.default.svc.cluster.local', 'c'];

describe('LaneGroup validation', () => {
  test('a full group as documented is accepted', () => {
    const docs = parseDocuments(`
apiVersion: sextant.io/v1alpha1
kind: LaneGroup
metadata: {name: dev, namespace: default}
spec:
  services: [a, b, c, pay]
  baseline: base
  mode: permissive
  lanes:
  - name: s2
    services: [a, c]
    mocks:
    - service: pay
      directResponse: {status: 200, body: '{"mock":true}'}
  - name: s2.alice
  - name: s3
    mocks:
    - {service: pay, host: pay-mock.default.svc.cluster.local, port: 8080}
  traceTable: {maxEntries: 20000, ttl: 2m}
  trustedSources: [10.0.0.0/8, 127.0.0.1]
`, 'lanes.yaml');
    assert.deepEqual(docs.errors.map(String), []);
    assert.equal(docs.documents.length, 1);
    assert.deepEqual(problems(docs.documents[0]!.resource), []);
  });

  test('strict mode: a lane missing a service is refused, naming the service', () => {
    const r = group({ services: SERVICES, mode: 'strict', lanes: [{ name: 's4', services: ['a', 'c'] }, { name: 's5', services: ['a', 'b', 'c'] }] });
    assert.deepEqual(problems(r), [
      'spec.lanes[0].services: strict mode: lane "s4" is missing service b.default.svc.cluster.local; every lane of a strict group holds every service of spec.services (add it to the lane, mock it, or use mode: permissive)',
    ]);
  });

  test('strict mode: a mock stands in for a service; a lane must list its services', () => {
    assert.deepEqual(problems(group({ services: SERVICES, mode: 'strict', lanes: [{ name: 's4', services: ['a', 'c'], mocks: [{ service: 'b', directResponse: { status: 200 } }] }] })), []);
    assert.deepEqual(problems(group({ services: SERVICES, mode: 'strict', lanes: [{ name: 's4' }] })), [
      'spec.lanes[0].services: Required value: strict mode: lane "s4" must list the services it holds (every one of spec.services)',
    ]);
  });

  test('lanes: names, duplicates, the baseline, undeclared parents, foreign services, mock shape', () => {
    // The structural errors come first; the semantic rules run once the schema holds.
    assert.deepEqual(problems(group({ services: ['a'], lanes: [{ name: 'S2' }] })), [
      'spec.lanes[0].name: Invalid value: "S2": spec.lanes[0].name in body should match \'lowercase letters, digits and "-", in labels joined by "." (e.g. s2 or s2.alice)\'',
    ]);
    assert.deepEqual(problems(group({
      services: ['a', 'a.default.svc.cluster.local'],
      baseline: 'base',
      lanes: [
        { name: 'base' },
        { name: 's3' },
        { name: 's3' },
        { name: 'x.y', services: ['z'], mocks: [{ service: 'a', port: 80, directResponse: { status: 200 } }, { service: 'q', host: 'm' }, { service: 'a', host: 'n' }] },
      ],
    })), [
      'spec.services[1]: Duplicate value: "a.default.svc.cluster.local" (also spec.services[0])',
      'spec.lanes[0].name: Invalid value: "base": the baseline is not declared as a lane',
      'spec.lanes[2].name: Duplicate value: lane "s3" is declared twice',
      'spec.lanes[3].name: Invalid value: "x.y": its parent lane "x" is not declared in spec.lanes',
      'spec.lanes[3].services[0]: Invalid value: "z": not one of the group\'s spec.services',
      'spec.lanes[3].mocks[0].port: Invalid value: port applies to a mock host only',
      'spec.lanes[3].mocks[1].service: Invalid value: "q": not one of the group\'s spec.services',
      'spec.lanes[3].mocks[2].service: Duplicate value: "a" is mocked twice in lane "x.y"',
    ]);
  });

  test('required fields, bounds and CIDRs', () => {
    assert.deepEqual(problems(group({})), ['spec.services: Required value', 'spec.lanes: Required value']);
    assert.deepEqual(problems(group({ services: ['a'], lanes: [{ name: 's2' }], traceTable: { maxEntries: 0, ttl: '10ms' }, trustedSources: ['10.0.0.0/33', 'nope'] })), [
      'spec.traceTable.maxEntries: Invalid value: 0: should be greater than or equal to 1',
      'spec.traceTable.ttl: Invalid value: "10ms": must be between 1s and 3600s',
      'spec.trustedSources[0]: Invalid value: "10.0.0.0/33": 10.0.0.0/33 is not a valid CIDR block',
      'spec.trustedSources[1]: Invalid value: "nope": nope is not a valid IP',
    ]);
    assert.deepEqual(problems(group({ services: ['a'], lanes: [{ name: 's2', mocks: [{ service: 'a' }, { service: 'a', host: 'm', directResponse: { status: 200 } }] }] })).map((s) => s.slice(0, s.indexOf(':'))), ['spec.lanes[0].mocks[1]']);
    assert.deepEqual(problems(group({ services: ['a'], lanes: [{ name: 's2', mocks: [{ service: 'a' }] }] })), ['spec.lanes[0].mocks[0]: Required value: one of directResponse or host']);
  });
});

describe('failover threshold annotation', () => {
  test('a percentage from 1 to 100 on a DestinationRule', () => {
    assert.equal(parseFailoverThreshold('50'), 50);
    assert.equal(parseFailoverThreshold('100%'), 100);
    assert.deepEqual(parseFailoverThreshold('0'), { error: 'Invalid value: "0": a percentage of healthy endpoints from 1 to 100 (e.g. "50")' });
    const dr = (annotations: Record<string, string>, kind = 'DestinationRule'): Resource => ({
      apiVersion: 'networking.istio.io/v1', kind, metadata: { name: 'c', namespace: 'default', annotations }, spec: kind === 'DestinationRule' ? { host: 'c' } : { hosts: ['c'] },
    });
    assert.deepEqual(problems(dr({ 'sextant.io/failover-threshold': '50' })), []);
    assert.deepEqual(problems(dr({ 'sextant.io/failover-threshold': 'half' })), ['metadata.annotations[sextant.io/failover-threshold]: Invalid value: "half": a percentage of healthy endpoints from 1 to 100 (e.g. "50")']);
    assert.deepEqual(problems(dr({ 'sextant.io/failover-threshold': '50' }, 'VirtualService')), ['metadata.annotations[sextant.io/failover-threshold]: applies to DestinationRule only']);
  });
});

describe('LaneGroup in the config store', () => {
  test('apply refuses a strict group whose lane lacks a service, naming it; nothing is written', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sextant-lanegroup-'));
    const store = await openDirectoryStore({ dir, logger: pino({ level: 'silent' }) });
    try {
      const bad = group({ services: SERVICES, mode: 'strict', lanes: [{ name: 's4', services: ['a', 'c'] }] }, 'strict');
      await assert.rejects(store.apply([{ op: 'put', resource: bad }]), (err: Error) => {
        assert.match(err.message, /LaneGroup\/default\/strict/);
        assert.match(err.message, /lane "s4" is missing service b\.default\.svc\.cluster\.local/);
        return true;
      });
      assert.deepEqual(await store.list('LaneGroup'), []);
      const good = group({ services: SERVICES, mode: 'strict', lanes: [{ name: 's4', services: SERVICES }] }, 'strict');
      await store.apply([{ op: 'put', resource: good }]);
      assert.equal((await store.list('LaneGroup')).length, 1);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
