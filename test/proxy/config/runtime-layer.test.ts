// RTDS in the proxy: Envoy's runtime layer semantics (nested structs flattened to dotted keys,
// FractionalPercent values, later layers winning, /runtime's dump), leases (a layer sent with
// an xDS Resource.ttl lapses unless heartbeats refresh it; a heartbeat never revives a lapsed
// one), and the ADS client's side of TTLs over both protocols: a SotW response wraps a leased
// resource in envoy.service.discovery.v3.Resource, a delta response sets its `ttl`, and either
// sends a heartbeat as the wrapper without a body.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { DISCOVERY_RESOURCE_TYPE, RUNTIME_TYPE, decodeMessage, encodeMessage } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { ADAPTIVE_RUNTIME_LAYER, RuntimeLayers } from '../../../src/proxy/config/runtime-layer.ts';
import { AdsClient } from '../../../src/proxy/xds/ads-client.ts';
import type { ResourceSink, SubscribedTypeUrl, XdsResource } from '../../../src/proxy/xds/ads-client.ts';
import { silent } from '../helpers/fixtures.ts';

const KEY = 'circuit_breakers.inbound|9080||.default.max_requests';

function resource(layer: ProtoJson, extra: Partial<XdsResource> = {}): ReadonlyMap<string, XdsResource> {
  return new Map([[ADAPTIVE_RUNTIME_LAYER, { name: ADAPTIVE_RUNTIME_LAYER, version: '1', resource: { name: ADAPTIVE_RUNTIME_LAYER, layer }, ...extra }]]);
}

test('a layer: nested structs become dotted keys, FractionalPercent values stay whole, and /runtime dumps them as Envoy does', () => {
  const layers = new RuntimeLayers({ names: ['base', ADAPTIVE_RUNTIME_LAYER] });
  layers.apply(new Map([
    ['base', { name: 'base', version: '1', resource: { name: 'base', layer: { a: { b: 1, c: 'x' }, shared: 1 } } }],
    [ADAPTIVE_RUNTIME_LAYER, { name: ADAPTIVE_RUNTIME_LAYER, version: '1', resource: { name: ADAPTIVE_RUNTIME_LAYER, layer: { [KEY]: 12, shared: 2, pct: { numerator: 5, denominator: 'TEN_THOUSAND' }, on: true } } }],
  ]));
  assert.equal(layers.integer('a.b'), 1);
  assert.equal(layers.get('a.c')?.raw, 'x');
  assert.equal(layers.integer(KEY), 12);
  assert.equal(layers.integer('shared'), 2, 'the later layer wins');
  assert.deepEqual(layers.get('pct')?.fraction, { numerator: 5, denominator: 10_000 });
  assert.equal(layers.featureEnabled('pct', 0, 100, 0.0004), true);
  assert.equal(layers.featureEnabled('pct', 0, 100, 0.0006), false);
  assert.equal(layers.featureEnabled('a.b', 0, 100, 0.005), true, 'a number is the numerator over the default\'s denominator');
  assert.equal(layers.featureEnabled('absent', 30, 100, 0.29), true);
  assert.deepEqual(layers.dump().entries['shared'], { final_value: '2', layer_values: ['1', '2'] });
  assert.deepEqual(layers.dump().layers, ['base', ADAPTIVE_RUNTIME_LAYER]);
  assert.throws(() => layers.apply(resource({ bad: { numerator: 1, denominator: 'THOUSAND' } })), /Runtime sextant-adaptive\.layer\.bad\.denominator: expected HUNDRED, TEN_THOUSAND or MILLION/);
  assert.throws(() => layers.apply(resource({ list: [1] })), /Runtime sextant-adaptive\.layer\.list: a runtime value cannot be a list/);
  assert.equal(layers.integer(KEY), 12, 'a refused update changes nothing');
});

test('a leased layer lapses at its TTL unless a heartbeat refreshes it; a lapsed lease stays lapsed until the body comes again', () => {
  let now = 0;
  const layers = new RuntimeLayers({ clock: () => now });
  layers.apply(resource({ [KEY]: 8 }, { ttlMs: 3000 }));
  now = 2999;
  assert.equal(layers.integer(KEY), 8);
  layers.apply(resource({ [KEY]: 8 }, { ttlMs: 3000, heartbeat: true }));
  now = 5998;
  assert.equal(layers.integer(KEY), 8, 'refreshed at 2999 for 3 s');
  now = 5999;
  assert.equal(layers.integer(KEY), undefined);
  assert.equal(layers.lapsed, 1);
  assert.deepEqual(layers.dump().entries, {});
  layers.apply(resource({ [KEY]: 8 }, { ttlMs: 3000, heartbeat: true }));
  assert.equal(layers.integer(KEY), undefined, 'a heartbeat does not bring a lapsed layer back');
  layers.apply(resource({ [KEY]: 9 }, { ttlMs: 3000 }));
  assert.equal(layers.integer(KEY), 9);
  layers.apply(resource({ [KEY]: 10 }));
  now = 100_000;
  assert.equal(layers.integer(KEY), 10, 'sent without a TTL: not leased');
  layers.apply(new Map());
  assert.equal(layers.integer(KEY), undefined, 'a removed resource takes its values with it');
});

/**
 * A control plane the test scripts: it answers the client's RTDS subscription with what
 * `script` writes, on the protocol the client speaks.
 */
async function scriptedServer(script: (write: (m: ProtoJson) => void, protocol: 'sotw' | 'delta', requests: ProtoJson[]) => void): Promise<{ address: string; requests: ProtoJson[]; close(): void }> {
  const server = new grpc.Server();
  const requests: ProtoJson[] = [];
  const method = (protocol: 'sotw' | 'delta'): grpc.MethodDefinition<ProtoJson, ProtoJson> => {
    const req = protocol === 'sotw' ? 'envoy.service.discovery.v3.DiscoveryRequest' : 'envoy.service.discovery.v3.DeltaDiscoveryRequest';
    const res = protocol === 'sotw' ? 'envoy.service.discovery.v3.DiscoveryResponse' : 'envoy.service.discovery.v3.DeltaDiscoveryResponse';
    return {
      path: `/envoy.service.discovery.v3.AggregatedDiscoveryService/${protocol === 'sotw' ? 'StreamAggregatedResources' : 'DeltaAggregatedResources'}`,
      requestStream: true, responseStream: true,
      requestSerialize: (m) => Buffer.from(encodeMessage(req, m)), requestDeserialize: (b) => decodeMessage(req, b),
      responseSerialize: (m) => Buffer.from(encodeMessage(res, m)), responseDeserialize: (b) => decodeMessage(res, b),
    };
  };
  const handler = (protocol: 'sotw' | 'delta') => (call: grpc.ServerDuplexStream<ProtoJson, ProtoJson>): void => {
    let started = false;
    call.on('data', (r: ProtoJson) => {
      requests.push(r);
      if (r['typeUrl'] !== RUNTIME_TYPE || started) return;
      started = true;
      script((m) => call.write({ typeUrl: RUNTIME_TYPE, ...m }), protocol, requests);
    });
    call.on('error', () => { /* client went away */ });
  };
  server.addService({ StreamAggregatedResources: method('sotw'), DeltaAggregatedResources: method('delta') } as grpc.ServiceDefinition, {
    StreamAggregatedResources: handler('sotw'), DeltaAggregatedResources: handler('delta'),
  } as unknown as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { address: `127.0.0.1:${port}`, requests, close: () => server.forceShutdown() };
}

/** A sink holding only the runtime layers (on the test's clock), recording each apply. */
function layerSink(layers: RuntimeLayers): ResourceSink & { applied: ReadonlyMap<string, XdsResource>[] } {
  const applied: ReadonlyMap<string, XdsResource>[] = [];
  return {
    applied,
    apply(t: SubscribedTypeUrl, r: ReadonlyMap<string, XdsResource>) { if (t === RUNTIME_TYPE) { applied.push(r); layers.apply(r); } },
    interest(t: SubscribedTypeUrl) { return t === RUNTIME_TYPE ? layers.interest() : new Set<string>(); },
  };
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const body = (limit: number): ProtoJson => ({ '@type': RUNTIME_TYPE, name: ADAPTIVE_RUNTIME_LAYER, layer: { [KEY]: limit } });

for (const protocol of ['sotw', 'delta'] as const) {
  test(`${protocol}: the client subscribes to the layer by name, takes a leased resource and its heartbeats, and ACKs each`, async () => {
    let now = 0;
    const layers = new RuntimeLayers({ clock: () => now });
    const sink = layerSink(layers);
    const server = await scriptedServer((write) => {
      if (protocol === 'sotw') {
        const wrapped = (withBody: boolean): ProtoJson => ({
          '@type': DISCOVERY_RESOURCE_TYPE, name: ADAPTIVE_RUNTIME_LAYER, version: 'v1', ttl: '3s', ...(withBody ? { resource: body(7) } : {}),
        });
        write({ versionInfo: '1', nonce: 'n1', resources: [wrapped(true)] });
        write({ versionInfo: '1', nonce: 'n2', resources: [wrapped(false)] });
      } else {
        write({ systemVersionInfo: '1', nonce: 'n1', resources: [{ name: ADAPTIVE_RUNTIME_LAYER, version: 'v1', ttl: '3s', resource: body(7) }] });
        write({ systemVersionInfo: '1', nonce: 'n2', resources: [{ name: ADAPTIVE_RUNTIME_LAYER, version: 'v1', ttl: '3s' }] });
      }
    });
    const client = new AdsClient({ server: server.address, node: { id: 'sidecar~127.0.0.1~a.default~default.svc.cluster.local' }, sink, logger: silent, protocol, namedTypes: [RUNTIME_TYPE] });
    try {
      client.start();
      await until(() => sink.applied.length === 2);
      const subscribe = server.requests.find((r) => r['typeUrl'] === RUNTIME_TYPE)!;
      assert.deepEqual(protocol === 'sotw' ? subscribe['resourceNames'] : subscribe['resourceNamesSubscribe'], [ADAPTIVE_RUNTIME_LAYER]);
      assert.deepEqual([sink.applied[0]!.get(ADAPTIVE_RUNTIME_LAYER)!.ttlMs, sink.applied[0]!.get(ADAPTIVE_RUNTIME_LAYER)!.heartbeat], [3000, undefined]);
      assert.deepEqual([sink.applied[1]!.get(ADAPTIVE_RUNTIME_LAYER)!.ttlMs, sink.applied[1]!.get(ADAPTIVE_RUNTIME_LAYER)!.heartbeat], [3000, true]);
      assert.deepEqual(sink.applied[1]!.get(ADAPTIVE_RUNTIME_LAYER)!.resource, sink.applied[0]!.get(ADAPTIVE_RUNTIME_LAYER)!.resource, 'a heartbeat keeps the body held');
      await until(() => server.requests.filter((r) => r['typeUrl'] === RUNTIME_TYPE && r['responseNonce'] === 'n2').length === 1);
      assert.ok(server.requests.every((r) => r['errorDetail'] === undefined), 'every response ACKed');
      assert.equal(layers.integer(KEY), 7);
      now = 3000;
      assert.equal(layers.integer(KEY), undefined, 'no heartbeat after the last: the lease lapses');
    } finally {
      client.close();
      server.close();
    }
  });
}
