// The pilot's side of adaptive limits over real gRPC: RTDS on the ADS stream (SotW and delta)
// with Envoy's TTL wrapper and heartbeats, decoded with Envoy's protos; the LoadReportingService
// on the xDS port against a grpc-js LRS client; and the loop between them: load reports above
// the target make the controller on the (sole) leader cut the limit it pushes over RTDS, write
// the rule's status through the store, and withdraw the limits when reports stop.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Resource } from '../../../src/api/resource.ts';
import { DISCOVERY_RESOURCE_TYPE, RUNTIME_TYPE, decodeMessage, encodeMessage } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { AdsStream } from './ads-client.ts';
import { quietLogger, serviceEntry, startTestPilot, stopTestPilot, type TestPilot } from './fixtures.ts';
import { LRS_SERVICE, LoadReportingServer, type LoadReport } from '../../../src/pilot/xds/lrs.ts';

const KEY = 'circuit_breakers.inbound|9080||.default.max_requests';

function node(ip: string, pod: string): ProtoJson {
  return { id: `sidecar~${ip}~${pod}.shop~shop.svc.cluster.local`, metadata: { NAMESPACE: 'shop', CLUSTER_ID: 'Kubernetes', INTERCEPTION_MODE: 'NONE' } };
}

function rule(spec: Record<string, unknown>): Resource {
  return { apiVersion: 'sextant.io/v1alpha1', kind: 'AdaptiveLimit', metadata: { name: 'reviews', namespace: 'shop' }, spec: { host: 'reviews', target: { latency: '100ms', percentile: 99 }, ...spec } };
}

const LRS_CLIENT = grpc.makeGenericClientConstructor({
  StreamLoadStats: {
    path: '/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats',
    requestStream: true, responseStream: true,
    requestSerialize: (m: ProtoJson) => Buffer.from(encodeMessage('envoy.service.load_stats.v3.LoadStatsRequest', m)),
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => decodeMessage('envoy.service.load_stats.v3.LoadStatsResponse', b),
  },
}, 'LoadReportingService');

/** One LRS stream, as a sidecar holds it. */
class LrsStream {
  readonly client: grpc.Client;
  readonly call: grpc.ClientDuplexStream<ProtoJson, ProtoJson>;
  readonly responses: ProtoJson[] = [];
  error: grpc.ServiceError | undefined;
  constructor(address: string) {
    this.client = new LRS_CLIENT(address, grpc.credentials.createInsecure());
    this.call = (this.client as unknown as Record<string, () => grpc.ClientDuplexStream<ProtoJson, ProtoJson>>)['StreamLoadStats']!.call(this.client);
    this.call.on('data', (r: ProtoJson) => this.responses.push(r));
    this.call.on('error', (e: grpc.ServiceError) => { this.error = e; });
  }
  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

/** A ClusterStats for `inbound|9080||` with the contract's load metrics. */
function inboundStats(p99: number, samples: number, concurrencyMax: number): ProtoJson {
  return {
    clusterName: 'inbound|9080||',
    upstreamLocalityStats: [{
      locality: {},
      totalSuccessfulRequests: String(samples),
      totalErrorRequests: '0',
      totalIssuedRequests: String(samples),
      totalRequestsInProgress: String(concurrencyMax),
      loadMetricStats: [
        { metricName: 'latency_ms_p99', numRequestsFinishedWithMetric: String(samples), totalMetricValue: p99 * samples },
        { metricName: 'concurrency_max', numRequestsFinishedWithMetric: '1', totalMetricValue: concurrencyMax },
      ],
    }],
    totalDroppedRequests: '3',
    loadReportInterval: '0.100s',
  };
}

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

let t: TestPilot;
const MESH = [serviceEntry('reviews', 'reviews.shop.svc.cluster.local', 9080, ['127.0.1.5'], 'shop')];

describe('RTDS with leases', () => {
  before(async () => {
    t = await startTestPilot([...MESH, rule({ enforce: true })], generators);
  });
  after(async () => stopTestPilot(t));

  for (const protocol of ['sotw', 'delta'] as const) {
    test(`${protocol}: the layer goes out with its TTL, heartbeats without a body refresh it, a change is pushed`, async () => {
      let limit = 12;
      t.pilot.server.runtime.setSource(() => new Map([['sextant-adaptive', { resource: { name: 'sextant-adaptive', layer: { [KEY]: limit } }, ttlMs: 1500 }]]));
      const ads = new AdsStream(t.pilot.xdsAddress, protocol);
      try {
        const n = node('127.0.1.5', `reviews-${protocol}`);
        if (protocol === 'sotw') ads.send({ node: n, typeUrl: RUNTIME_TYPE, resourceNames: ['sextant-adaptive'] });
        else ads.send({ node: n, typeUrl: RUNTIME_TYPE, resourceNamesSubscribe: ['sextant-adaptive'] });
        const first = await ads.next();
        assert.equal(first['typeUrl'], RUNTIME_TYPE);
        const [wrapped] = first['resources'] as ProtoJson[];
        assert.ok(wrapped);
        if (protocol === 'sotw') assert.equal(wrapped['@type'], DISCOVERY_RESOURCE_TYPE);
        assert.equal(wrapped['name'], 'sextant-adaptive');
        assert.equal(wrapped['ttl'], '1.5s');
        assert.deepEqual(wrapped['resource'], { '@type': RUNTIME_TYPE, name: 'sextant-adaptive', layer: { [KEY]: 12 } });
        const version = wrapped['version'];
        const ack = (r: ProtoJson): void => {
          if (protocol === 'sotw') ads.send({ typeUrl: RUNTIME_TYPE, resourceNames: ['sextant-adaptive'], versionInfo: r['versionInfo'], responseNonce: r['nonce'] });
          else ads.send({ typeUrl: RUNTIME_TYPE, responseNonce: r['nonce'] });
        };
        ack(first);
        // within a third of the TTL, a heartbeat: the same version, the TTL, no body
        const beat = await ads.next();
        const [hb] = beat['resources'] as ProtoJson[];
        assert.deepEqual({ ...hb }, { ...(protocol === 'sotw' ? { '@type': DISCOVERY_RESOURCE_TYPE } : {}), name: 'sextant-adaptive', version, ttl: '1.5s' });
        if (protocol === 'sotw') assert.equal(beat['versionInfo'], first['versionInfo']);
        ack(beat);
        limit = 8;
        t.pilot.server.runtime.changed();
        const moved = await until('the new limit is pushed', () => {
          if (ads.buffered === 0) return undefined;
          return true;
        }).then(async () => {
          // heartbeats may precede the push; skip them
          for (;;) {
            const r = await ads.next();
            const [x] = r['resources'] as ProtoJson[];
            if (x?.['resource'] !== undefined) return x;
          }
        });
        assert.deepEqual(moved['resource'], { '@type': RUNTIME_TYPE, name: 'sextant-adaptive', layer: { [KEY]: 8 } });
        assert.notEqual(moved['version'], version);
      } finally {
        ads.close();
      }
    });
  }

  test('without limits the layer is empty and carries no TTL (SotW: the Runtime itself, no wrapper)', async () => {
    t.pilot.server.runtime.setSource(() => new Map([['sextant-adaptive', { resource: { name: 'sextant-adaptive', layer: {} }, ttlMs: undefined }]]));
    const ads = new AdsStream(t.pilot.xdsAddress, 'sotw');
    try {
      ads.send({ node: node('127.0.1.9', 'other'), typeUrl: RUNTIME_TYPE, resourceNames: ['sextant-adaptive'] });
      const r = await ads.next();
      assert.deepEqual(r['resources'], [{ '@type': RUNTIME_TYPE, name: 'sextant-adaptive', layer: {} }]);
    } finally {
      ads.close();
    }
  });
});

describe('LoadReportingService', () => {
  before(async () => {
    t = await startTestPilot([...MESH], generators);
  });
  after(async () => stopTestPilot(t));

  test('the first request names the node; the pilot asks for every cluster each second', async () => {
    const lrs = new LrsStream(t.pilot.xdsAddress);
    try {
      lrs.call.write({ node: node('127.0.1.5', 'reviews-lrs') });
      await until('the LRS answer', () => lrs.responses.length > 0);
      assert.deepEqual(lrs.responses[0], { sendAllClusters: true, loadReportingInterval: '1s' });
    } finally {
      lrs.close();
    }
  });

  test('reports are parsed into per-cluster loads with the contract\'s metrics, for the node of the stream', async () => {
    const server = new grpc.Server();
    const lrsServer = new LoadReportingServer({ proxyFromNode: (n) => generators.proxyFromNode(n), logger: quietLogger });
    server.addService(LRS_SERVICE, lrsServer.handlers() as unknown as grpc.UntypedServiceImplementation);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    const reports: LoadReport[] = [];
    lrsServer.onReport((r) => reports.push(r));
    const lrs = new LrsStream(`127.0.0.1:${port}`);
    try {
      lrs.call.write({ node: node('127.0.1.5', 'reviews-parse') });
      lrs.call.write({ clusterStats: [inboundStats(250, 40, 9), { clusterName: 'outbound|80||x', upstreamLocalityStats: [{ totalSuccessfulRequests: '7' }] }] });
      const [r] = await until('a report arrives', () => (reports.length > 0 ? reports : undefined));
      assert.equal(r!.proxy.id, 'sidecar~127.0.1.5~reviews-parse.shop~shop.svc.cluster.local');
      assert.deepEqual(r!.proxy.ipAddresses, ['127.0.1.5']);
      const [inbound, outbound] = r!.clusters;
      assert.deepEqual({ ...inbound, metrics: Object.fromEntries(inbound!.metrics) }, {
        cluster: 'inbound|9080||', successful: 40, errors: 0, issued: 40, inProgress: 9, dropped: 3, intervalMs: 100,
        metrics: { latency_ms_p99: { count: 40, total: 10_000 }, concurrency_max: { count: 1, total: 9 } },
      });
      assert.equal(outbound!.successful, 7);
      assert.equal(lrsServer.streams.size, 1);
    } finally {
      lrs.close();
      lrsServer.close();
      server.forceShutdown();
    }
  });

  test('a stream whose first request has no node is refused with INVALID_ARGUMENT', async () => {
    const lrs = new LrsStream(t.pilot.xdsAddress);
    try {
      lrs.call.write({ clusterStats: [inboundStats(10, 1, 1)] });
      const err = await until('the stream fails', () => lrs.error);
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /must carry the node/);
    } finally {
      lrs.close();
    }
  });
});

describe('the loop: LRS in, the controller on the leader, RTDS out, status through the store', () => {
  before(async () => {
    t = await startTestPilot([...MESH, rule({ enforce: true, pid: { interval: '200ms' }, limits: { floor: 4, initial: 64, ceiling: 256 } })], generators);
  });
  after(async () => stopTestPilot(t));

  test('latency over the target cuts the pushed limit, never below the floor; the status says so; silence withdraws the limits', async () => {
    const ads = new AdsStream(t.pilot.xdsAddress, 'delta');
    const lrs = new LrsStream(t.pilot.xdsAddress);
    const layers: ProtoJson[] = [];
    let reporting = true;
    try {
      ads.send({ node: node('127.0.1.5', 'reviews-loop'), typeUrl: RUNTIME_TYPE, resourceNamesSubscribe: ['sextant-adaptive'] });
      void (async () => {
        for (;;) {
          const r = await ads.next().catch(() => undefined);
          if (r === undefined) return;
          ads.send({ typeUrl: RUNTIME_TYPE, responseNonce: r['nonce'] });
          for (const x of (r['resources'] as ProtoJson[] | undefined) ?? []) if (x['resource'] !== undefined) layers.push(x);
        }
      })();
      lrs.call.write({ node: node('127.0.1.5', 'reviews-loop') });
      await until('the LRS answer', () => lrs.responses.length > 0);
      // the sidecar reports p99 = 10× the target while using its whole limit
      void (async () => {
        while (reporting) {
          lrs.call.write({ clusterStats: [inboundStats(1000, 50, 64)] });
          await sleep(100);
        }
      })();
      const limitOf = (x: ProtoJson): number | undefined => ((x['resource'] as ProtoJson)['layer'] as Record<string, number>)[KEY];
      const atFloor = await until('the limit reaches the floor', () => layers.find((x) => limitOf(x) === 4), 20_000);
      assert.equal(atFloor['ttl'], '3s');
      const values = layers.map(limitOf).filter((v): v is number => v !== undefined);
      // each push cut by at most maxStepDown (50%), never below the floor
      assert.ok(values.every((v) => v >= 4), `limits ${values.join(',')}`);
      for (let i = 1; i < values.length; i++) assert.ok(values[i]! >= Math.floor(values[i - 1]! * 0.5) - 1, `limits ${values.join(',')}`);
      assert.ok(values.every((v) => v <= 64), `limits ${values.join(',')}: none above the initial 64`);
      assert.equal(values.at(-1), 4);

      const stored = await waitStatus(t, (s) => s['budget'] === 4);
      assert.equal(stored['mode'], 'enforce');
      assert.deepEqual(stored['setpoint'], { latencyMs: 100, percentile: 99, errorRate: 0.05 });
      assert.deepEqual(stored['limits'], [{ instance: '127.0.1.5:9080', limit: 4 }]);
      assert.equal((stored['measured'] as ProtoJson)['latencyMs'], 1000);
      assert.equal(stored['reason'], 'at-floor');
      assert.deepEqual(stored['lease'] !== undefined && (stored['lease'] as ProtoJson)['ttlSeconds'], 3);

      const debug = await (await fetch(`http://${t.pilot.httpAddress}/debug/limits`)).json() as { running: boolean; rules: Record<string, ProtoJson> };
      assert.equal(debug.running, true);
      assert.equal(debug.rules['shop/reviews']?.['budget'], 4);

      // reports stop: after three silent ticks the limits are withdrawn (an empty layer, no lease)
      reporting = false;
      const empty = await until('the limits are withdrawn', () => layers.find((x, i) => i > 0 && limitOf(x) === undefined), 20_000);
      assert.deepEqual((empty['resource'] as ProtoJson)['layer'], {});
      assert.equal(empty['ttl'], undefined);
    } finally {
      reporting = false;
      lrs.close();
      ads.close();
    }
  });
});

async function waitStatus(tp: TestPilot, ok: (s: ProtoJson) => boolean): Promise<ProtoJson> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await tp.store.get('AdaptiveLimit', 'shop', 'reviews');
    const s = r?.status as ProtoJson | undefined;
    if (s !== undefined && ok(s)) return s;
    if (Date.now() > deadline) throw new Error(`status never matched: ${JSON.stringify(s)}`);
    await sleep(100);
  }
}
