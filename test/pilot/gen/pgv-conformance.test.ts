// Every resource the pilot serves satisfies the validation rules in Envoy's own protos
// (protoc-gen-validate: `(validate.rules)`, `(validate.required)`), which Envoy enforces on
// each xDS update, Any payloads included: the bookinfo golden files, every bookinfo workload,
// gateway and proxyless client, each of Istio's bookinfo samples, Istio's valid networking
// samples, the demo's config and the benchmark meshes; and config at the limits of Envoy's
// rules is served within them, while config beyond them (which Istio accepts) is refused by
// validation. The generator tests check their own output the same way (helpers.ts `generate`).
// No Envoy binary runs here: this is the proof that can be made without one.
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
import { meshFiles as scaleMesh } from '../../../bench/pilot-scale.ts';
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

test('the pilot scale benchmark mesh (bench/pilot-scale.ts), with each of its Sidecar scopes', () => {
  // The same generator at a smaller size: ServiceEntries with inline endpoints, a VirtualService
  // and the Sidecars of both scopes, served to proxies as the benchmark's clients announce them.
  for (const scope of ['namespace', 'mesh-default'] as const) {
    const rs = [...scaleMesh({ services: 200, endpointsPerService: 5, namespaces: 10, scope }).values()].flatMap(resources);
    assert.equal(rs.filter((r) => r.kind === 'ServiceEntry').length, 200);
    assert.deepEqual(rs.flatMap((r) => validateResource(r)).map(String), [], scope);
    const proxies = [
      ...['ns-0', 'ns-1', 'ns-2'].map((ns, i) => sidecar(`10.0.${i}.1`, `app-${i}`, ns, { app: `app-${i}` })),
      sidecar('10.10.0.1', 'svc-0-1', 'ns-0', { app: 'svc-0' }), // at svc-0's first endpoint: inbound too
      ...proxiesOf([]),
    ];
    const served = serve(generators.buildPushContext(rs), proxies);
    assertClean(`pilot-scale mesh, ${scope} scope`, served);
    assert.ok(served.resources > 1000, `${scope}: only ${served.resources} resources`);
  }
});

// Istio's validation accepts these and Envoy's rules refuse them: an Istio control plane serves
// them and Envoy NACKs the whole route configuration or cluster. Sextant's validation refuses
// them, naming the field (docs/istio-support.md).
const ROUTE = 'route: [{destination: {host: reviews.default.svc.cluster.local}}]';
const headerMap = (n: number): string => `{${Array.from({ length: n }, (_, i) => `x-h${i}: v`).join(', ')}}`;

function reviewsVirtualService(http: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  ${http}
`;
}

function reviewsDestinationRule(trafficPolicy: string): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: ${trafficPolicy}
`;
}

/** What validation says of each input beyond Envoy's limits, exactly. */
const BEYOND_ENVOY_LIMITS: [what: string, yaml: string, errors: string[]][] = [
  ['direct response status 600 (Istio checks status > 600, its message says 200-599)',
    reviewsVirtualService('- directResponse: {status: 600}'),
    ['VirtualService/default/reviews: spec.http[0].directResponse.status: HTTP status 600 is not in range 200-599']],
  ['fault abort status 600',
    reviewsVirtualService(`- fault: {abort: {httpStatus: 600, percentage: {value: 50}}}\n    ${ROUTE}`),
    ['VirtualService/default/reviews: spec.http[0].fault.abort.httpStatus: HTTP status 600 is not in range 200-599']],
  ['a header value over 16384 bytes',
    reviewsVirtualService(`- headers: {request: {set: {x-big: "${'v'.repeat(16385)}"}}}\n    ${ROUTE}`),
    ['VirtualService/default/reviews: spec.http[0].headers.request.set[x-big]: header value is 16385 bytes: Envoy accepts at most 16384']],
  ['a destination\'s response header value over 16384 bytes (multi-byte characters)',
    reviewsVirtualService(`- route: [{destination: {host: reviews.default.svc.cluster.local}, headers: {response: {add: {x-big: "${'é'.repeat(8193)}"}}}}]`),
    ['VirtualService/default/reviews: spec.http[0].route[0].headers.response.add[x-big]: header value is 16386 bytes: Envoy accepts at most 16384']],
  ['more than 1000 request headers to add',
    reviewsVirtualService(`- headers: {request: {add: ${headerMap(1001)}}}\n    ${ROUTE}`),
    ['VirtualService/default/reviews: spec.http[0].headers.request: 1001 headers to set and add: Envoy accepts at most 1000']],
  ['more than 1000 response headers to set and add together',
    reviewsVirtualService(`- headers: {response: {set: ${headerMap(600)}, add: {${Array.from({ length: 401 }, (_, i) => `y-h${i}: v`).join(', ')}}}}\n    ${ROUTE}`),
    ['VirtualService/default/reviews: spec.http[0].headers.response: 1001 headers to set and add: Envoy accepts at most 1000']],
  ['an SNI over 255 bytes',
    reviewsDestinationRule(`{tls: {mode: SIMPLE, sni: "${'s'.repeat(256)}"}}`),
    [`DestinationRule/default/reviews: spec.trafficPolicy.tls.sni: SNI is 256 bytes: Envoy accepts at most 255`]],
  ['a port\'s SNI over 255 bytes',
    reviewsDestinationRule(`{portLevelSettings: [{port: {number: 9080}, tls: {mode: SIMPLE, sni: "${'s'.repeat(300)}"}}]}`),
    [`DestinationRule/default/reviews: spec.trafficPolicy.portLevelSettings[0].tls.sni: SNI is 300 bytes: Envoy accepts at most 255`]],
];

/** Inputs at Envoy's limits, and a string the served config must carry (so the check is not vacuous). */
const AT_ENVOY_LIMITS: [what: string, yaml: string, carried: string][] = [
  ['direct response status 599', reviewsVirtualService('- directResponse: {status: 599}'), '"status":599'],
  ['fault abort status 599', reviewsVirtualService(`- fault: {abort: {httpStatus: 599, percentage: {value: 50}}}\n    ${ROUTE}`), '"httpStatus":599'],
  ['a header value of 16384 bytes', reviewsVirtualService(`- headers: {request: {set: {x-big: "${'v'.repeat(16384)}"}}}\n    ${ROUTE}`), `"${'v'.repeat(16384)}"`],
  ['a destination\'s header value of 16384 bytes',
    reviewsVirtualService(`- route: [{destination: {host: reviews.default.svc.cluster.local}, headers: {response: {add: {x-big: "${'é'.repeat(8192)}"}}}}]`), `"${'é'.repeat(8192)}"`],
  ['1000 request headers to add', reviewsVirtualService(`- headers: {request: {add: ${headerMap(1000)}}}\n    ${ROUTE}`), '"x-h999"'],
  ['1000 response headers to set and add',
    reviewsVirtualService(`- headers: {response: {set: ${headerMap(600)}, add: {${Array.from({ length: 400 }, (_, i) => `y-h${i}: v`).join(', ')}}}}\n    ${ROUTE}`), '"y-h399"'],
  ['an SNI of 255 bytes', reviewsDestinationRule(`{tls: {mode: SIMPLE, sni: "${'s'.repeat(255)}"}}`), `"sni":"${'s'.repeat(255)}"`],
];

test('config beyond Envoy\'s limits, which Istio accepts, is refused by validation naming the field', () => {
  for (const [what, yaml, errors] of BEYOND_ENVOY_LIMITS) {
    assert.deepEqual(resources(yaml).flatMap((r) => validateResource(r)).map(String), errors, what);
  }
});

test('config at Envoy\'s limits is accepted and served within Envoy\'s rules', () => {
  const registry = readResources(REGISTRY);
  const productpage = sidecar('10.0.0.10', 'productpage-v1-1', 'default', { app: 'productpage', version: 'v1' });
  for (const [what, yaml, carried] of AT_ENVOY_LIMITS) {
    const rs = resources(yaml);
    assert.deepEqual(rs.flatMap((r) => validateResource(r)).map(String), [], what);
    const push = generators.buildPushContext([...registry, ...rs]);
    assertClean(what, serve(push, [productpage]));
    const json = TYPES.map((type) => JSON.stringify([...generators.generate(push, productpage, type).values()])).join('');
    assert.ok(json.includes(carried), `${what}: the served config does not carry ${carried.slice(0, 40)}`);
  }
});
