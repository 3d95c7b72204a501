// The PushContext indexes a large mesh in one pass: 10,000 ServiceEntries selecting 50,000
// WorkloadEntries, every endpoint found, and lookups by host and namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Resource } from '../../../src/api/resource.ts';
import { buildPushContext } from '../../../src/pilot/push/context.ts';
import { sidecar } from '../gen/helpers.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { ENDPOINT_TYPE } from '../../../src/envoy/index.ts';

function mesh(services: number, perService: number): Resource[] {
  const out: Resource[] = [];
  for (let i = 0; i < services; i++) {
    const ns = `ns${i % 20}`;
    out.push({
      apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: `svc${i}`, namespace: ns },
      spec: { hosts: [`svc${i}.${ns}.svc.cluster.local`], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 8080, name: 'http', protocol: 'HTTP' }], workloadSelector: { labels: { app: `svc${i}` } } },
    });
    for (let j = 0; j < perService; j++) {
      out.push({
        apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name: `svc${i}-${j}`, namespace: ns },
        spec: { address: `10.${(i >> 8) & 255}.${i & 255}.${j + 1}`, labels: { app: `svc${i}`, version: `v${j % 2}` } },
      });
    }
  }
  return out;
}

test('10,000 ServiceEntries and 50,000 WorkloadEntries index in one pass', () => {
  const resources = mesh(10_000, 5);
  const push = buildPushContext(resources);
  assert.deepEqual(push.stats, { services: 10_000, virtualServices: 0, destinationRules: 0, endpoints: 50_000 });
  assert.equal(push.serviceFor('svc1234.ns14.svc.cluster.local', 'ns0')?.key, 'ns14/svc1234.ns14.svc.cluster.local');
  const eds = generators.generate(push, sidecar('10.200.0.1', 'c', 'ns0', {}), ENDPOINT_TYPE, new Set(['outbound|8080||svc9999.ns19.svc.cluster.local']));
  const lb = (eds.get('outbound|8080||svc9999.ns19.svc.cluster.local')?.['endpoints'] as { lbEndpoints: unknown[] }[])[0]?.lbEndpoints;
  assert.equal(lb?.length, 5);
  assert.deepEqual(push.registry.servicesOf.get('WorkloadEntry/ns3/svc3-4'), ['ns3/svc3.ns3.svc.cluster.local']);
});
