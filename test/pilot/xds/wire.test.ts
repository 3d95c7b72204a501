// Responses held as parts: grpc-js frames them through byteLength and copy(), so copy() must
// honour Buffer.copy's contract exactly, and the framed bytes must decode as the response.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeMessage } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { ResponseParts, anyMessage, controlPlaneField, deltaResponse, lengthDelimited, sotwResponse, stringField } from '../../../src/pilot/xds/wire.ts';

test('ResponseParts.copy copies any byte range of the parts, as Buffer.copy does', () => {
  const parts = new ResponseParts([Buffer.from('abc'), Buffer.alloc(0), Buffer.from('defgh'), Buffer.from('ij')]);
  const whole = Buffer.from('abcdefghij');
  assert.equal(parts.byteLength, 10);
  assert.equal(parts.length, 10);
  assert.deepEqual(parts.toBuffer(), whole);
  for (let start = 0; start <= 10; start++) {
    for (let end = start; end <= 10; end++) {
      for (const room of [20, 4]) {
        const got = Buffer.alloc(room + 2, '.');
        const want = Buffer.alloc(room + 2, '.');
        const n = parts.copy(got, 2, start, end);
        const m = whole.copy(want, 2, start, end);
        assert.equal(n, m, `copied bytes for [${start}, ${end}) into ${room}`);
        assert.deepEqual(got, want, `bytes for [${start}, ${end}) into ${room}`);
      }
    }
  }
});

test('a DiscoveryResponse framed from its parts decodes with every field', () => {
  const resource = lengthDelimited(2, anyMessage('type.googleapis.com/envoy.config.core.v3.ControlPlane', stringField(1, 'x')));
  const sotw = sotwResponse('v1', Buffer.concat([resource, resource]), 'type.googleapis.com/envoy.config.cluster.v3.Cluster', 'n-1', controlPlaneField(6, 'pilot-a'));
  // grpc-js's serializeMessage: a 5-byte prefix, then copy(output, 5).
  const frame = Buffer.alloc(sotw.byteLength + 5);
  frame.writeUInt32BE(sotw.byteLength, 1);
  sotw.copy(frame, 5);
  const decoded = decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', frame.subarray(5));
  assert.equal(decoded['versionInfo'], 'v1');
  assert.equal(decoded['typeUrl'], 'type.googleapis.com/envoy.config.cluster.v3.Cluster');
  assert.equal(decoded['nonce'], 'n-1');
  assert.deepEqual(decoded['controlPlane'], { identifier: 'pilot-a' });
  assert.deepEqual((decoded['resources'] as ProtoJson[]).map((r) => r['identifier']), ['x', 'x']);

  const delta = deltaResponse('v2', Buffer.alloc(0), 'type.googleapis.com/envoy.config.cluster.v3.Cluster', 'n-2', ['gone-a', 'gone-b'], controlPlaneField(7, 'pilot-a'));
  const d = decodeMessage('envoy.service.discovery.v3.DeltaDiscoveryResponse', delta.toBuffer());
  assert.equal(d['systemVersionInfo'], 'v2');
  assert.equal(d['nonce'], 'n-2');
  assert.deepEqual(d['removedResources'], ['gone-a', 'gone-b']);
  assert.deepEqual(d['controlPlane'], { identifier: 'pilot-a' });
});
