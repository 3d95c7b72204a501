// Every valid config from Istio's own validation fixtures and samples, loaded together,
// generates resources that encode with Envoy's protos for sidecars in several namespaces,
// for interception NONE, and for gRPC clients: valid input never makes a generator throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { PUSH_ORDER } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { FIXTURES, ISTIO_COMPAT, generate, istioCompatFile, readResources, sidecar } from './helpers.ts';

const validation = istioCompatFile('validation');
const bookinfo = istioCompatFile('bookinfo');
const skip = validation && bookinfo ? false : 'istio-compat validation fixtures not found at ../shared/istio-compat';

test('Istio\'s valid fixtures and samples generate encodable resources for every kind of proxy', { skip }, () => {
  const files = [
    ...readdirSync(path.join(ISTIO_COMPAT, 'validation')).filter((f) => f.endsWith('-valid.yaml')).map((f) => path.join(ISTIO_COMPAT, 'validation', f)),
    ...readdirSync(path.join(ISTIO_COMPAT, 'bookinfo')).filter((f) => f.endsWith('.yaml')).map((f) => path.join(ISTIO_COMPAT, 'bookinfo', f)),
    path.join(FIXTURES, 'bookinfo-registry.yaml'),
  ];
  const push = generators.buildPushContext(readResources(...files));
  assert.ok(push.stats.services > 4);
  const namespaces = [...new Set(push.resources.map((r) => r.metadata.namespace))];
  let generated = 0;
  for (const ns of namespaces) {
    const proxies = [
      sidecar('10.0.0.10', 'productpage-v1', ns, { app: 'productpage', version: 'v1' }),
      sidecar('127.0.1.9', 'app', ns, { app: 'reviews' }, { INTERCEPTION_MODE: 'NONE' }),
      sidecar('127.0.1.10', 'client', ns, { app: 'client' }, { GENERATOR: 'grpc' }),
    ];
    for (const proxy of proxies) {
      for (const type of PUSH_ORDER) generated += generate(push, proxy, type).size;
    }
  }
  assert.ok(generated > 100, `generated ${generated}`);
});
