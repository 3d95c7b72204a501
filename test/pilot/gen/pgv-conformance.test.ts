// Every resource the pilot serves satisfies the validation rules in Envoy's own protos
// (protoc-gen-validate: `(validate.rules)`, `(validate.required)`), which Envoy enforces on
// each xDS update, Any payloads included: the bookinfo golden files, every bookinfo workload,
// gateway and proxyless client, each of Istio's bookinfo samples, Istio's valid networking
// samples, the demo's config and the benchmark mesh. The generator tests check their own
// output the same way (helpers.ts `generate`). No Envoy binary runs here: this is the proof
// that can be made without one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { validateResource } from '../../../src/api/index.ts';
import type { Resource } from '../../../src/api/resource.ts';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SHORT_TYPE_NAMES, checkResource } from '../../../src/envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import type { Proxy, PushContext } from '../../../src/pilot/model.ts';
import { generate as vmMesh } from '../../../bench/config-load.ts';
import { FIXTURES, istioCompatFile, readResources, resources, ruleProblems, sidecar } from './helpers.ts';

const TYPES: readonly XdsTypeUrl[] = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE];
const REGISTRY = path.join(FIXTURES, 'bookinfo-registry.yaml');
const bookinfoDir = istioCompatFile('bookinfo');
const noBookinfo = bookinfoDir ? false : 'istio-compat bookinfo samples not found at ../shared/istio-compat';
const validationDir = istioCompatFile('validation');
const noValidation = validationDir ? false : 'istio-compat validation samples not found at ../shared/istio-compat';

interface Served { resources: number; evaluated: number; problems: string[] }

/** Everything `proxies` are served from `push` (all four types, every name), checked once per distinct object. */
function serve(push: PushContext, proxies: readonly Proxy[]): Served {
  const out: Served = { resources: 0, evaluated: 0, problems: [] };
  const seen = new WeakSet<ProtoJson>();
  for (const proxy of proxies) {
    for (const type of TYPES) {
      for (const [name, r] of generators.generate(push, proxy, type)) {
        out.resources++;
        if (seen.has(r)) continue;
        seen.add(r);
        out.evaluated += checkResource(type, r).evaluated;
        for (const p of ruleProblems(type, r)) out.problems.push(`${proxy.id} ${SHORT_TYPE_NAMES[type]} ${name}: ${p}`);
      }
    }
  }
  return out;
}

/** A sidecar per WorkloadEntry, the ingress gateway, a proxyless gRPC client and a sidecar with a locality. */
function proxiesOf(rs: readonly Resource[]): Proxy[] {
  const proxies = rs.filter((r) => r.kind === 'WorkloadEntry').map((we) => {
    const spec = we.spec as { address: string; labels?: Record<string, string> };
    return sidecar(spec.address, we.metadata.name, we.metadata.namespace ?? 'default', spec.labels ?? {});
  });
  proxies.push(
    generators.proxyFromNode({ id: 'router~10.0.0.2~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local', metadata: { NAMESPACE: 'istio-system', LABELS: { istio: 'ingressgateway' } } }),
    generators.proxyFromNode({ id: 'sidecar~10.0.0.99~grpc-client-1.default~default.svc.cluster.local', metadata: { NAMESPACE: 'default', GENERATOR: 'grpc' } }),
    generators.proxyFromNode({ id: 'sidecar~10.0.0.98~located-1.default~default.svc.cluster.local', metadata: { NAMESPACE: 'default', LABELS: { app: 'located' } }, locality: { region: 'dc1', zone: 'zone-a' } }),
  );
  return proxies;
}

/** Only what the config store would accept: resources that pass validation. */
function valid(rs: readonly Resource[]): Resource[] {
  return rs.filter((r) => validateResource(r).length === 0);
}

function assertClean(label: string, served: Served): void {
  assert.deepEqual(served.problems, [], label);
  assert.ok(served.resources > 0 && served.evaluated > 0, `${label}: nothing was served or checked`);
}

test('the bookinfo golden files satisfy every rule', { skip: noBookinfo }, () => {
  const golden = path.join(import.meta.dirname, 'golden');
  let evaluated = 0;
  for (const type of TYPES) {
    const file = path.join(golden, `bookinfo-productpage-${SHORT_TYPE_NAMES[type].toLowerCase()}.json`);
    const all = JSON.parse(readFileSync(file, 'utf8')) as Record<string, ProtoJson>;
    assert.ok(Object.keys(all).length > 0, file);
    for (const [name, r] of Object.entries(all)) {
      assert.deepEqual(ruleProblems(type, r), [], `${path.basename(file)} ${name}`);
      evaluated += checkResource(type, r).evaluated;
    }
  }
  assert.ok(evaluated > 500, `only ${evaluated} rules evaluated`);
});

test('the golden bookinfo mesh: every workload, the ingress gateway and a proxyless client', { skip: noBookinfo }, () => {
  const dir = bookinfoDir as string;
  const rs = readResources(REGISTRY, ...['destination-rule-all.yaml', 'virtual-service-reviews-jason-v2-v3.yaml', 'virtual-service-ratings-test-delay.yaml', 'bookinfo-gateway.yaml'].map((f) => path.join(dir, f)));
  assertClean('bookinfo', serve(generators.buildPushContext(rs), proxiesOf(rs)));
});

test('each of Istio\'s bookinfo samples, applied to the bookinfo registry', { skip: noBookinfo }, () => {
  const dir = bookinfoDir as string;
  const registry = readResources(REGISTRY);
  const samples = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
  assert.ok(samples.length >= 20, `only ${samples.length} samples`);
  for (const f of samples) {
    const rs = [...registry, ...valid(readResources(path.join(dir, 'destination-rule-all.yaml'), path.join(dir, f)))];
    assertClean(f, serve(generators.buildPushContext(rs), proxiesOf(rs)));
  }
});

test('Istio\'s valid DestinationRule, ServiceEntry, WorkloadEntry and EnvoyFilter samples, one at a time', { skip: noValidation }, () => {
  const registry = readResources(REGISTRY);
  let applied = 0;
  for (const kind of ['destinationrule', 'serviceentry', 'workloadentry', 'envoyfilter']) {
    for (const r of valid(readResources(path.join(validationDir as string, `${kind}-valid.yaml`)))) {
      applied++;
      const rs = [...registry, r];
      assertClean(`${kind}-valid.yaml ${r.kind}/${r.metadata.name}`, serve(generators.buildPushContext(rs), proxiesOf(rs)));
    }
  }
  assert.ok(applied >= 15, `only ${applied} samples applied`);
});

test('the demo\'s bookinfo config (examples/bookinfo), each workload in capture mode NONE', () => {
  const dir = path.resolve(import.meta.dirname, '../../../examples/bookinfo');
  const rs = readResources(...readdirSync(dir).filter((f) => f.endsWith('.yaml')).map((f) => path.join(dir, f)));
  assertClean('examples/bookinfo', serve(generators.buildPushContext(rs), proxiesOf(rs)));
});

test('the benchmark mesh (bench/config-load.ts): ServiceEntries selecting WorkloadEntries on VMs, with localities', () => {
  // The same generator at a smaller size: every shape it makes, in every namespace it uses.
  const rs = vmMesh(200, 600);
  const workloads = rs.filter((r) => r.kind === 'WorkloadEntry');
  const proxies = proxiesOf([workloads[0]!, workloads[1]!, workloads[52]!]);
  const served = serve(generators.buildPushContext(rs), proxies);
  assertClean('bench mesh', served);
  assert.ok(served.resources > 2000, `only ${served.resources} resources`);
});

test('a consistent-hash ring above Envoy\'s 8M entries is served at Envoy\'s maximum', () => {
  const rs = [...readResources(REGISTRY), ...resources(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 10000000}}}}
`)];
  assert.deepEqual(rs.flatMap((r) => validateResource(r)), []);
  const push = generators.buildPushContext(rs);
  const productpage = sidecar('10.0.0.10', 'productpage-v1-1', 'default', { app: 'productpage', version: 'v1' });
  const cluster = generators.generate(push, productpage, CLUSTER_TYPE).get('outbound|9080||reviews.default.svc.cluster.local');
  assert.deepEqual(cluster?.['ringHashLbConfig'], { minimumRingSize: 8388608 });
  assertClean('ring size', serve(push, [productpage]));
});

// Istio's validation (and so Sextant's) accepts these, and Envoy refuses them: an Istio
// control plane serves them and Envoy NACKs the whole resource. The fix belongs in the
// config validation (src/api), which should refuse them; until it does this test is a todo.
const BEYOND_ENVOY_LIMITS: Record<string, string> = {
  'direct response status 600 (Istio checks status > 600, its message says 200-599)': '- directResponse: {status: 600}',
  'fault abort status 600': '- fault: {abort: {httpStatus: 600, percentage: {value: 50}}}\n    route: [{destination: {host: reviews.default.svc.cluster.local}}]',
  'a header value over 16384 bytes': `- headers: {request: {set: {x-big: "${'v'.repeat(16385)}"}}}\n    route: [{destination: {host: reviews.default.svc.cluster.local}}]`,
  'more than 1000 request headers to add': `- headers: {request: {add: {${Array.from({ length: 1001 }, (_, i) => `x-h${i}: v`).join(', ')}}}}\n    route: [{destination: {host: reviews.default.svc.cluster.local}}]`,
};

test('config Envoy would refuse is refused by validation, or served within Envoy\'s rules', { skip: noBookinfo, todo: 'src/api accepts a status of 600, header values over 16 KiB, over 1000 headers to add and an SNI over 255 bytes' }, () => {
  const registry = readResources(REGISTRY);
  const inputs: [string, string][] = Object.entries(BEYOND_ENVOY_LIMITS).map(([what, http]) => [what, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  ${http}
`]);
  inputs.push(['an SNI over 255 bytes', `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {tls: {mode: SIMPLE, sni: "${'s'.repeat(256)}"}}
`]);
  const served: string[] = [];
  for (const [what, yaml] of inputs) {
    const rs = resources(yaml);
    if (rs.some((r) => validateResource(r).length > 0)) continue; // refused, as it should be
    const push = generators.buildPushContext([...registry, ...rs]);
    const problems = serve(push, [sidecar('10.0.0.10', 'productpage-v1-1', 'default', { app: 'productpage', version: 'v1' })]).problems;
    if (problems.length > 0) served.push(`${what}: ${problems[0]}`);
  }
  assert.deepEqual(served, []);
});
