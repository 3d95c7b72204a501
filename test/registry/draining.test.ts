// Pull-out, from the WorkloadEntry to the proxy's load balancer: the annotation
// sextant.io/traffic: out makes the instance's endpoint DRAINING in EDS (on the endpoint fast
// path too), and a proxy never picks a DRAINING host for a new request, even in panic mode, as
// Envoy excludes DRAINING hosts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Resource } from '../../src/api/index.ts';
import { ENDPOINT_TYPE, type ProtoJson } from '../../src/envoy/index.ts';
import { generators } from '../../src/pilot/gen/index.ts';
import { Cluster } from '../../src/proxy/cluster/cluster.ts';
import { generate, sidecar } from '../pilot/gen/helpers.ts';

const CLUSTER = 'outbound|8080||reviews.shop.svc.cluster.local';

function serviceEntry(): Resource {
  return {
    apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'reviews', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { hosts: ['reviews.shop.svc.cluster.local'], ports: [{ name: 'http', number: 8080, protocol: 'HTTP' }], location: 'MESH_INTERNAL', resolution: 'STATIC', workloadSelector: { labels: { app: 'reviews' } } },
  };
}

function instance(id: string, address: string, traffic?: 'in' | 'out'): Resource {
  return {
    apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry',
    metadata: { name: `reviews-${id}`, namespace: 'shop', resourceVersion: '1', ...(traffic !== undefined ? { annotations: { 'sextant.io/traffic': traffic } } : {}) },
    spec: { address, labels: { app: 'reviews' } },
  };
}

function health(cla: ProtoJson | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const loc of (cla?.['endpoints'] as ProtoJson[] | undefined) ?? []) {
    for (const lbe of loc['lbEndpoints'] as ProtoJson[]) {
      const address = ((((lbe['endpoint'] as ProtoJson)['address'] as ProtoJson)['socketAddress'] as ProtoJson)['address']) as string;
      out[address] = lbe['healthStatus'] as string;
    }
  }
  return out;
}

describe('pull-out as EDS DRAINING', () => {
  const client = sidecar('10.9.0.1', 'client-0', 'shop', { app: 'client' });

  it('serves a pulled-out instance as DRAINING, in a full build and on the endpoint fast path', () => {
    const base = [serviceEntry(), instance('a', '10.0.0.1'), instance('b', '10.0.0.2', 'in'), instance('c', '10.0.0.3', 'out')];
    const push = generators.buildPushContext(base);
    assert.deepEqual(health(generate(push, client, ENDPOINT_TYPE, new Set([CLUSTER])).get(CLUSTER)), { '10.0.0.1': 'HEALTHY', '10.0.0.2': 'HEALTHY', '10.0.0.3': 'DRAINING' });

    const next = [serviceEntry(), instance('a', '10.0.0.1', 'out'), instance('b', '10.0.0.2', 'in'), instance('c', '10.0.0.3', 'in')];
    const change = { keys: new Set(['WorkloadEntry/shop/reviews-a', 'WorkloadEntry/shop/reviews-c']), endpointsOnly: true };
    const derived = generators.updateEndpoints!(push, next, change);
    assert.ok(derived !== undefined, 'an annotation change of WorkloadEntries takes the endpoint fast path');
    assert.deepEqual(health(generate(derived, client, ENDPOINT_TYPE, new Set([CLUSTER])).get(CLUSTER)), { '10.0.0.1': 'DRAINING', '10.0.0.2': 'HEALTHY', '10.0.0.3': 'HEALTHY' });
    const plan = generators.planPush(push, derived, change, client);
    assert.deepEqual([...(plan?.types ?? [])], [ENDPOINT_TYPE]);
  });

  it('a proxy never picks a DRAINING host, in panic mode neither, and DRAINING hosts do not count towards panic', () => {
    const cluster = new Cluster({ name: CLUSTER, type: 'EDS', edsClusterConfig: { edsConfig: { ads: {} } } }, 'Cluster');
    const assign = (statuses: Record<string, string>): void => cluster.setAssignment({
      clusterName: CLUSTER,
      endpoints: [{ lbEndpoints: Object.entries(statuses).map(([address, healthStatus]) => ({ endpoint: { address: { socketAddress: { address, portValue: 8080 } } }, healthStatus })) }],
    }, 'ClusterLoadAssignment');
    const picks = (): Set<string> => {
      const seen = new Set<string>();
      for (let i = 0; i < 300; i++) {
        const h = cluster.balancer.pick();
        seen.add(h?.address ?? 'none');
      }
      return seen;
    };
    assign({ '10.0.0.1': 'HEALTHY', '10.0.0.2': 'HEALTHY', '10.0.0.3': 'DRAINING' });
    assert.deepEqual([...picks()].sort(), ['10.0.0.1', '10.0.0.2']);
    // Two of three draining: 1 of 1 eligible host is healthy, no panic, only it is picked.
    assign({ '10.0.0.1': 'HEALTHY', '10.0.0.2': 'DRAINING', '10.0.0.3': 'DRAINING' });
    assert.deepEqual([...picks()], ['10.0.0.1']);
    // Panic (1 healthy of 3 eligible) spreads over the eligible hosts, never the draining one.
    assign({ '10.0.0.1': 'HEALTHY', '10.0.0.2': 'UNHEALTHY', '10.0.0.3': 'UNHEALTHY', '10.0.0.4': 'DRAINING' });
    assert.deepEqual([...picks()].sort(), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    // All draining: no host (the request gets 503 UH), none of them.
    assign({ '10.0.0.1': 'DRAINING', '10.0.0.2': 'DRAINING' });
    assert.deepEqual([...picks()], ['none']);
    // The hosts stay known (their connections finish their requests) and show as draining.
    assert.deepEqual(cluster.hosts.map((h) => [h.address, h.edsDraining]), [['10.0.0.1', true], ['10.0.0.2', true]]);
  });
});
