// Where Sextant's validation is stricter than Istio's: values Istio accepts and Envoy's protos
// refuse (a status of 600, header names and values over 16384 bytes, over 1000 headers to add
// on one route or destination, an SNI over 255 bytes). Envoy would reject the whole route
// configuration or cluster carrying one, so they are refused at the boundary, naming the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateResource, type Resource } from '../../src/api/index.ts';

const HOST = 'reviews.default.svc.cluster.local';

function vs(http: unknown[]): Resource {
  return { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'reviews', namespace: 'default' }, spec: { hosts: [HOST], http } };
}

function dr(spec: object): Resource {
  return { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'reviews', namespace: 'default' }, spec: { host: HOST, ...spec } };
}

/** "path: detail" of each error. */
const problems = (r: Resource): string[] => validateResource(r).map((e) => `${e.path}: ${e.detail}`);
const route = [{ destination: { host: HOST } }];
const headers = (n: number, prefix = 'x-h'): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, 'v']));

test('HTTP statuses Envoy sends are 200 to 599: Istio\'s check lets 600 through, Sextant\'s does not', () => {
  assert.deepEqual(problems(vs([{ directResponse: { status: 599 } }])), []);
  assert.deepEqual(problems(vs([{ directResponse: { status: 200 } }])), []);
  assert.deepEqual(problems(vs([{ directResponse: { status: 600 } }])), ['spec.http[0].directResponse.status: HTTP status 600 is not in range 200-599']);
  assert.deepEqual(problems(vs([{ directResponse: { status: 199 } }])), ['spec.http[0].directResponse.status: HTTP status 199 is not in range 200-599']);
  const abort = (httpStatus: number): Resource => vs([{ fault: { abort: { httpStatus, percentage: { value: 50 } } }, route }]);
  assert.deepEqual(problems(abort(599)), []);
  assert.deepEqual(problems(abort(600)), ['spec.http[0].fault.abort.httpStatus: HTTP status 600 is not in range 200-599']);
  assert.deepEqual(problems(abort(601)), ['spec.http[0].fault.abort.httpStatus: HTTP status 601 is not in range 200-599']);
});

test('header names and values set or added are at most 16384 bytes, counted in UTF-8', () => {
  assert.deepEqual(problems(vs([{ headers: { request: { set: { 'x-big': 'v'.repeat(16384) } }, response: { add: { 'x-big': 'é'.repeat(8192) } } }, route }])), []);
  assert.deepEqual(problems(vs([{ headers: { request: { set: { 'x-big': 'v'.repeat(16385) } } }, route }])),
    ['spec.http[0].headers.request.set[x-big]: header value is 16385 bytes: Envoy accepts at most 16384']);
  assert.deepEqual(problems(vs([{ headers: { response: { add: { 'x-big': 'é'.repeat(8193) } } }, route }])),
    ['spec.http[0].headers.response.add[x-big]: header value is 16386 bytes: Envoy accepts at most 16384']);
  // On a destination, as on the route.
  assert.deepEqual(problems(vs([{ route: [{ destination: { host: HOST }, headers: { request: { add: { 'x-big': 'v'.repeat(20000) } } } }] }])),
    ['spec.http[0].route[0].headers.request.add[x-big]: header value is 20000 bytes: Envoy accepts at most 16384']);
  // A long name is quoted by its first 128 characters and its size, never whole.
  const name = 'n'.repeat(16385);
  assert.deepEqual(problems(vs([{ headers: { response: { set: { [name]: 'v' } } }, route }])),
    [`spec.http[0].headers.response.set[${'n'.repeat(128)}… (16385 bytes)]: header name is 16385 bytes: Envoy accepts at most 16384`]);
});

test('at most 1000 headers set and added together, per direction, per route and per destination', () => {
  assert.deepEqual(problems(vs([{ headers: { request: { add: headers(1000) }, response: { set: headers(500), add: headers(500, 'y-h') } }, route }])), []);
  assert.deepEqual(problems(vs([{ headers: { request: { add: headers(1001) } }, route }])),
    ['spec.http[0].headers.request: 1001 headers to set and add: Envoy accepts at most 1000']);
  assert.deepEqual(problems(vs([{ headers: { response: { set: headers(500), add: headers(501, 'y-h') } }, route }])),
    ['spec.http[0].headers.response: 1001 headers to set and add: Envoy accepts at most 1000']);
  // Removals are not additions, and the route's and its destination's are separate lists in Envoy.
  assert.deepEqual(problems(vs([{
    headers: { request: { add: headers(1000), remove: Object.keys(headers(1000, 'z-h')) } },
    route: [{ destination: { host: HOST }, headers: { request: { set: headers(1000) } } }],
  }])), []);
  assert.deepEqual(problems(vs([{ route: [{ destination: { host: HOST }, headers: { request: { set: headers(1500) } } }] }])),
    ['spec.http[0].route[0].headers.request: 1500 headers to set and add: Envoy accepts at most 1000']);
});

test('a client TLS SNI is at most 255 bytes, wherever the DestinationRule sets it', () => {
  const tls = (sni: string): object => ({ mode: 'SIMPLE', sni });
  assert.deepEqual(problems(dr({ trafficPolicy: { tls: tls('s'.repeat(255)) } })), []);
  assert.deepEqual(problems(dr({ trafficPolicy: { tls: tls('s'.repeat(256)) } })),
    ['spec.trafficPolicy.tls.sni: SNI is 256 bytes: Envoy accepts at most 255']);
  assert.deepEqual(problems(dr({ trafficPolicy: { tls: tls('é'.repeat(128)) } })),
    ['spec.trafficPolicy.tls.sni: SNI is 256 bytes: Envoy accepts at most 255']);
  assert.deepEqual(problems(dr({ trafficPolicy: { portLevelSettings: [{ port: { number: 9080 }, tls: tls('s'.repeat(300)) }] } })),
    ['spec.trafficPolicy.portLevelSettings[0].tls.sni: SNI is 300 bytes: Envoy accepts at most 255']);
  assert.deepEqual(problems(dr({ subsets: [{ name: 'v1', labels: { version: 'v1' }, trafficPolicy: { tls: { ...tls('s'.repeat(256)), credentialName: 'reviews-cert' } } }] })),
    ['spec.subsets[0].trafficPolicy.tls.sni: SNI is 256 bytes: Envoy accepts at most 255']);
});
