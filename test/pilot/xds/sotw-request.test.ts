// The pilot reads state-of-the-world requests itself (decodeSotwRequest): every field as
// Envoy's protos decode it, for random requests; names left as bytes until read, and two
// requests naming the same list in the same order carry the same bytes (so an ACK of a full
// mesh is compared, not decoded); anything it does not read itself (a node, an error, unknown
// fields, a truncated message) goes through the protos and comes out the same.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { messageType } from '../../../src/envoy/index.ts';
import { decodeSotwRequest } from '../../../src/pilot/xds/wire.ts';

const REQUEST = 'envoy.service.discovery.v3.DiscoveryRequest';

function rng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

function encode(message: Record<string, unknown>): Buffer {
  const type = messageType(REQUEST);
  return Buffer.from(type.encode(type.fromObject(message)).finish());
}

/** The fields a SotwRequest has, as protobufjs decodes them. */
function protos(buf: Buffer): Record<string, unknown> {
  const type = messageType(REQUEST);
  const all = type.toObject(type.decode(buf), { defaults: true, arrays: true, objects: true, longs: Number });
  return { versionInfo: all['versionInfo'], resourceNames: all['resourceNames'], typeUrl: all['typeUrl'], responseNonce: all['responseNonce'], errorDetail: all['errorDetail'] ?? null, node: all['node'] ?? null };
}

function fields(req: ReturnType<typeof decodeSotwRequest>): Record<string, unknown> {
  return { versionInfo: req.versionInfo, resourceNames: req.resourceNames, typeUrl: req.typeUrl, responseNonce: req.responseNonce, errorDetail: req.errorDetail ?? null, node: req.node ?? null };
}

test('random requests decode as Envoy\'s protos decode them', () => {
  const random = rng(7);
  const text = (max: number): string => Array.from({ length: random(max) }, () => String.fromCodePoint([0x61 + random(26), 0x7c, 0x2e, 0xe9, 0x4e2d, 0x1f600][random(6)]!)).join('');
  for (let i = 0; i < 300; i++) {
    const message: Record<string, unknown> = {};
    if (random(4) > 0) message['versionInfo'] = text(20);
    // Short names and names over 127 bytes (two-byte lengths).
    if (random(4) > 0) message['resourceNames'] = Array.from({ length: random(40) }, () => text(random(5) === 0 ? 200 : 30));
    if (random(5) > 0) message['typeUrl'] = `type.googleapis.com/${text(40)}`;
    if (random(3) > 0) message['responseNonce'] = text(12);
    const buf = encode(message);
    const want = protos(buf);
    const got = decodeSotwRequest(buf);
    assert.deepEqual(fields(got), want, `request ${i}`);
    assert.ok(got.resourceNamesWire !== undefined, `request ${i}: names in one run`);
  }
});

test('the same names in the same order are the same bytes; any other list is not', () => {
  const names = Array.from({ length: 10_000 }, (_, i) => `outbound|80||svc-${i}.ns-${i % 100}.svc.cluster.local`);
  const ack = (list: string[], nonce: string): ReturnType<typeof decodeSotwRequest> =>
    decodeSotwRequest(encode({ versionInfo: `v-${nonce}`, resourceNames: list, typeUrl: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment', responseNonce: nonce }));
  const first = ack(names, '1-a');
  const second = ack(names, '2-b');
  assert.ok(first.resourceNamesWire!.equals(second.resourceNamesWire!));
  assert.equal(second.responseNonce, '2-b');
  assert.equal(second.versionInfo, 'v-2-b');
  const swapped = [...names];
  [swapped[5], swapped[6]] = [swapped[6]!, swapped[5]!];
  assert.ok(!first.resourceNamesWire!.equals(ack(swapped, '3').resourceNamesWire!));
  assert.ok(!first.resourceNamesWire!.equals(ack(names.slice(1), '4').resourceNamesWire!));
  assert.deepEqual(second.resourceNames, names);
  assert.equal(ack([], '5').resourceNamesWire!.length, 0);
});

test('requests with a node, an error, scattered names, unknown fields or bad framing decode through the protos', () => {
  const withNode = encode({ node: { id: 'sidecar~10.0.0.1~a.default~default.svc.cluster.local', metadata: { fields: { NAMESPACE: { stringValue: 'default' } } } }, typeUrl: 'type.googleapis.com/envoy.config.cluster.v3.Cluster' });
  const got = decodeSotwRequest(withNode);
  assert.equal(got.typeUrl, 'type.googleapis.com/envoy.config.cluster.v3.Cluster');
  assert.equal((got.node as unknown as { id: string }).id, 'sidecar~10.0.0.1~a.default~default.svc.cluster.local');
  assert.deepEqual(fields(got), protos(withNode));

  const nack = encode({ resourceNames: ['a', 'b'], typeUrl: 't', responseNonce: '3-x', errorDetail: { code: 3, message: 'bad cluster' } });
  assert.deepEqual(fields(decodeSotwRequest(nack)), protos(nack));
  assert.equal(decodeSotwRequest(nack).errorDetail?.message, 'bad cluster');

  // Names split by another field: decoded as one list, but no single run of bytes to compare.
  const a = encode({ resourceNames: ['a', 'b'] });
  const b = encode({ typeUrl: 't' });
  const c = encode({ resourceNames: ['c'] });
  const scattered = decodeSotwRequest(Buffer.concat([a, b, c]));
  assert.deepEqual(scattered.resourceNames, ['a', 'b', 'c']);
  assert.equal(scattered.typeUrl, 't');
  assert.equal(scattered.resourceNamesWire, undefined);

  // An unknown field (number 15, a string) is skipped by the protos.
  const unknown = Buffer.concat([encode({ typeUrl: 't', resourceNames: ['x'] }), Buffer.from([0x7a, 0x01, 0x41])]);
  assert.deepEqual(fields(decodeSotwRequest(unknown)), protos(unknown));

  // Truncated inside a name: the protos' error, not a silently short list.
  const truncated = encode({ typeUrl: 't', resourceNames: ['abcdef'] }).subarray(0, -2);
  assert.throws(() => protos(truncated));
  assert.throws(() => decodeSotwRequest(truncated));
});
