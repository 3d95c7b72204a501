// Istio's semantic rules and the error format users rely on: each case names the rule,
// gives a spec, and asserts the exact field path and message (or that it is accepted).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, validateResource, type Resource } from '../../src/api/index.ts';

const API: Record<string, string> = {
  EnvoyFilter: 'networking.istio.io/v1alpha3',
  Telemetry: 'telemetry.istio.io/v1',
};

function resource(kind: string, spec: unknown, name = 'r', namespace = 'default'): Resource {
  return { apiVersion: API[kind] ?? 'networking.istio.io/v1', kind, metadata: { name, namespace }, spec };
}

/** "path: detail" of each error, for exact comparisons. */
function problems(kind: string, spec: unknown): string[] {
  return validateResource(resource(kind, spec)).map((e) => (e.path === '' ? e.detail : `${e.path}: ${e.detail}`));
}

function accepts(kind: string, spec: unknown): void {
  assert.deepEqual(problems(kind, spec), []);
}

function rejects(kind: string, spec: unknown, expected: string): void {
  const got = problems(kind, spec);
  assert.ok(got.includes(expected), `expected ${JSON.stringify(expected)} among ${JSON.stringify(got, null, 1)}`);
}

const route = (host: string, extra: object = {}) => ({ destination: { host }, ...extra });

describe('error format', () => {
  test('names file, document index, Kind/namespace/name, field path and what is expected', () => {
    const r = resource('VirtualService', { hosts: ['reviews'], http: [{ route: [route('reviews', { weight: -1 }), route('reviews')] }] }, 'reviews', 'shop');
    const errors = validateResource(r, { file: 'routes/reviews.yaml', index: 2 });
    assert.equal(errors.length, 1);
    const e = errors[0]!;
    assert.ok(e instanceof ConfigError && e instanceof Error);
    assert.equal(e.file, 'routes/reviews.yaml');
    assert.equal(e.index, 2);
    assert.equal(e.resource, 'VirtualService/shop/reviews');
    assert.equal(e.path, 'spec.http[0].route[0].weight');
    assert.equal(e.toString(), 'routes/reviews.yaml:2 VirtualService/shop/reviews: spec.http[0].route[0].weight: weight -1 < 0');
    assert.equal(e.message, e.toString());
  });

  test('without an origin the line starts with the resource', () => {
    const [e] = validateResource(resource('DestinationRule', {}, 'ratings'));
    assert.equal(e?.toString(), 'DestinationRule/default/ratings: spec.host: Required value');
  });

  test('a multi-line detail is folded onto one line', () => {
    const e = new ConfigError({ file: 'a.yaml', index: 0, resource: '', path: '', detail: 'bad\n  indentation' });
    assert.equal(e.toString(), 'a.yaml:0: bad indentation');
  });

  test('unknown fields are rejected at their path', () => {
    assert.deepEqual(problems('DestinationRule', { host: 'ratings', trafficPolicy: { loadBalancer: { simpel: 'RANDOM' } } }),
      ['spec.trafficPolicy.loadBalancer.simpel: unknown field "simpel"']);
    const r = { ...resource('Gateway', { servers: [] }), extra: 1 } as unknown as Resource;
    assert.ok(validateResource(r).some((e) => e.path === 'extra' && e.detail === 'unknown field "extra"'));
  });

  test('wrong types and enums say what is expected', () => {
    assert.deepEqual(problems('ServiceEntry', { hosts: 'a.com' }), ['spec.hosts: Invalid value: "a.com": expected array, got string']);
    assert.deepEqual(problems('ServiceEntry', { hosts: ['a.com'], resolution: 'DNZ' }),
      ['spec.resolution: Unsupported value: "DNZ": supported values: "NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"']);
  });

  test('metadata: names must be DNS-1123, labels valid', () => {
    const r = resource('WorkloadEntry', { address: '10.0.0.1' }, 'Bad_Name');
    r.metadata.labels = { 'app': 'ok', 'bad key!': 'x' };
    const paths = validateResource(r).map((e) => e.path);
    assert.deepEqual(paths, ['metadata.name', 'metadata.labels[bad key!]']);
  });

  test('Istio-reserved annotations: dry-run is for AuthorizationPolicy only', () => {
    const r = resource('DestinationRule', { host: 'ratings' }, 'ratings', 'shop');
    r.metadata.annotations = { 'istio.io/dry-run': 'true' };
    assert.deepEqual(validateResource(r).map(String), ['DestinationRule/shop/ratings: metadata.annotations[istio.io/dry-run]: shop/ratings has unsupported annotation istio.io/dry-run, please remove the annotation']);
  });

  test('unknown and unsupported kinds are errors', () => {
    const [e] = validateResource({ apiVersion: 'networking.istio.io/v1beta1', kind: 'ProxyConfig', metadata: { name: 'p', namespace: 'default' }, spec: {} });
    assert.match(e!.detail, /^unsupported kind ProxyConfig/);
    const [v] = validateResource({ apiVersion: 'networking.istio.io/v2', kind: 'VirtualService', metadata: { name: 'p', namespace: 'default' }, spec: {} });
    assert.equal(v!.detail, 'unsupported version networking.istio.io/v2 of VirtualService: expected one of networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3');
  });

  test('older served versions are accepted as aliases', () => {
    for (const v of ['v1', 'v1beta1', 'v1alpha3']) {
      const r = resource('DestinationRule', { host: 'ratings' });
      r.apiVersion = `networking.istio.io/${v}`;
      assert.deepEqual(validateResource(r), [], v);
    }
    const t = resource('Telemetry', {});
    t.apiVersion = 'telemetry.istio.io/v1alpha1';
    assert.deepEqual(validateResource(t), []);
  });
});

describe('VirtualService', () => {
  test('bookinfo-style weighted routes are accepted', () => {
    accepts('VirtualService', {
      hosts: ['reviews'],
      http: [{
        match: [{ headers: { 'end-user': { exact: 'jason' } } }],
        route: [route('reviews', { weight: 80 }), { destination: { host: 'reviews', subset: 'v2' }, weight: 20 }],
        timeout: '10s',
        retries: { attempts: 3, perTryTimeout: '2s', retryOn: 'gateway-error,connect-failure,503' },
        fault: { delay: { fixedDelay: '7s', percentage: { value: 100 } } },
      }],
    });
  });

  test('hosts: invalid names, mesh wildcard, duplicates', () => {
    rejects('VirtualService', { hosts: ['foo_bar'], http: [{ route: [route('a')] }] }, 'spec.hosts[0]: domain name "foo_bar" invalid (label "foo_bar" invalid)');
    rejects('VirtualService', { hosts: ['*'], http: [{ route: [route('a')] }] }, 'spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway');
    accepts('VirtualService', { hosts: ['*'], gateways: ['istio-system/ingress'], http: [{ route: [route('a')] }] });
    rejects('VirtualService', { hosts: ['*.foo.com', 'bar.foo.com'], http: [{ route: [route('a')] }] }, 'spec.hosts[1]: duplicate hosts in virtual service: *.foo.com & bar.foo.com');
    accepts('VirtualService', { hosts: ['10.0.0.1'], http: [{ route: [route('a')] }] });
  });

  test('a route, redirect, directResponse or delegate is required; conflicts are rejected', () => {
    rejects('VirtualService', { hosts: ['a'], http: [{}] }, 'spec.http[0]: HTTP route, redirect or direct_response is required');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], redirect: { uri: '/x' } }] }, 'spec.http[0]: HTTP route cannot contain both route and redirect');
    rejects('VirtualService', { hosts: ['a'] }, 'spec: http, tcp or tls must be provided in virtual service');
    rejects('VirtualService', { hosts: ['a'], http: [{ redirect: { redirectCode: 200, uri: '/' } }] }, 'spec.http[0].redirect.redirectCode: 200 is not a valid redirect code, must be 3xx');
    rejects('VirtualService', { hosts: ['a'], http: [{ directResponse: { status: 700 } }] }, 'spec.http[0].directResponse.status: HTTP status 700 is not in range 200-599');
  });

  test('weights must not be negative and must not all be zero', () => {
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a', { weight: 0 }), route('b', { weight: 0 })] }] }, 'spec.http[0].route: total destination weight = 0');
    accepts('VirtualService', { hosts: ['a'], http: [{ route: [route('a', { weight: 30 }), route('b', { weight: 30 })] }] });
  });

  test('destinations: host required and valid, subset a DNS label, port in range', () => {
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [{ destination: {} }] }] }, 'spec.http[0].route[0].destination.host: Required value');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [{ destination: { host: 'a', subset: 'V_1' } }] }] }, 'spec.http[0].route[0].destination.subset: subset name is invalid: V_1: must be a DNS-1123 label');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [{ destination: { host: 'a', port: { number: 70000 } } }] }] }, 'spec.http[0].route[0].destination.port.number: port number 70000 must be in the range 1..65535');
  });

  test('regexes must be valid RE2: lookarounds and backreferences are rejected', () => {
    accepts('VirtualService', { hosts: ['a'], http: [{ match: [{ uri: { regex: '^/api/v[0-9]+/.*' } }], route: [route('a')] }] });
    rejects('VirtualService', { hosts: ['a'], http: [{ match: [{ uri: { regex: '^(?!/admin).*' } }], route: [route('a')] }] },
      'spec.http[0].match[0].uri.regex: invalid regex "^(?!/admin).*": lookahead and lookbehind are not supported by RE2; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)');
    rejects('VirtualService', { hosts: ['a'], http: [{ match: [{ headers: { 'x-id': { regex: '(a)\\1' } } }], route: [route('a')] }] },
      'spec.http[0].match[0].headers[x-id].regex: invalid regex "(a)\\\\1": backreferences are not supported by RE2; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)');
    assert.match(problems('VirtualService', { hosts: ['a'], http: [{ match: [{ uri: { regex: '([a-z' } }], route: [route('a')] }] })[0]!, /^spec\.http\[0\]\.match\[0\]\.uri\.regex: invalid regex "\(\[a-z"/);
  });

  test('durations: proto style, at least 1ms, ms precision', () => {
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], timeout: '0.5ms' }] }, 'spec.http[0].timeout: Invalid value: "0.5ms": must be a valid duration greater than 1ms');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], timeout: '10 seconds' }] }, 'spec.http[0].timeout: Invalid value: "10 seconds": must be a duration such as "100ms", "1s" or "1m30s"');
    accepts('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], timeout: '1m30s' }] });
  });

  test('faults: abort status 200-599, percentages 0-100, at least one of abort and delay', () => {
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], fault: { abort: { httpStatus: 100, percentage: { value: 10 } } } }] }, 'spec.http[0].fault.abort.httpStatus: HTTP status 100 is not in range 200-599');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], fault: { abort: { httpStatus: 500, percentage: { value: 101 } } } }] }, 'spec.http[0].fault.abort.percentage.value: percentage 101 is neither 0.0, nor in range [0.0001, 100.0]');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], fault: {} }] }, 'spec.http[0].fault: HTTP fault injection must have an abort and/or a delay');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], fault: { abort: { grpcStatus: 'NOPE' } } }] }, 'spec.http[0].fault.abort.grpcStatus: gRPC status "NOPE" is not supported: expected a code such as NOT_FOUND (OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, UNAUTHENTICATED)');
  });

  test('retries: known retryOn policies or status codes; attempts 0 with a policy is rejected', () => {
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], retries: { attempts: 2, retryOn: '5xx,sometimes' } }] }, 'spec.http[0].retries.retryOn: "sometimes" is not a valid retryOn policy: expected HTTP status codes or 5xx, gateway-error, reset, reset-before-request, connect-failure, envoy-ratelimited, retriable-4xx, refused-stream, retriable-status-codes, retriable-headers, http3-post-connect-failure, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], retries: { attempts: 0, retryOn: '5xx' } }] }, 'spec.http[0].retries: http retry policy configured when attempts are set to 0 (disabled)');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], retries: { attempts: -1 } }] }, 'spec.http[0].retries.attempts: attempts cannot be negative');
  });

  test('mirror, CORS and header operations', () => {
        rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], mirror: { host: 'b' }, mirrorPercentage: { value: 150 } }] }, 'spec.http[0].mirrorPercentage.value: mirror_percentage must have a max value of 100 (it has 150)');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], corsPolicy: { allowMethods: ['FETCH'] } }] }, 'spec.http[0].corsPolicy.allowMethods[0]: "FETCH" is not a supported HTTP method');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], headers: { response: { set: { host: 'x' } } } }] }, 'spec.http[0].headers.response.set[host]: invalid header "host": cannot set Host header');
  });

  test('TLS routes: SNI hosts must fall within the virtual service hosts', () => {
    rejects('VirtualService', { hosts: ['*.example.com'], tls: [{ match: [{ sniHosts: ['other.org'] }], route: [route('a')] }] },
      'spec.tls[0].match[0].sniHosts[0]: SNI host "other.org" is not a compatible subset of any of the virtual service hosts: [*.example.com]');
    accepts('VirtualService', { hosts: ['*.example.com'], tls: [{ match: [{ sniHosts: ['api.example.com'] }], route: [route('a')] }] });
    rejects('VirtualService', { hosts: ['a'], tcp: [{ match: [{ destinationSubnets: ['10.0.0.0/33'] }], route: [route('a')] }] }, 'spec.tcp[0].match[0].destinationSubnets[0]: 10.0.0.0/33 is not a valid CIDR block');
    rejects('VirtualService', { hosts: ['a'], tcp: [{}] }, 'spec.tcp[0].route: TCP route is required');
  });

  test('delegates: a delegate virtual service has no hosts, gateways, tls or tcp', () => {
    accepts('VirtualService', { http: [{ route: [route('a')] }] });
    rejects('VirtualService', { gateways: ['gw'], http: [{ route: [route('a')] }] }, 'spec.gateways: delegate virtual service must have no gateways specified');
    accepts('VirtualService', { hosts: ['a'], http: [{ delegate: { name: 'reviews-delegate', namespace: 'shop' } }] });
  });

  test('exportTo: namespaces, "." and "*", no duplicates', () => {
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')] }], exportTo: ['default', '.'] }, 'spec.exportTo: duplicate entries in exportTo: . and current namespace default');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')] }], exportTo: ['shop', 'shop'] }, 'spec.exportTo: duplicate entries in exportTo for entry shop');
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')] }], exportTo: ['~'] }, 'spec.exportTo: exportTo "~" is invalid: expected ".", "*" or a namespace name');
    accepts('ServiceEntry', { hosts: ['a.com'], exportTo: ['~'] });
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')] }], exportTo: ['*', 'foo'] }, 'spec.exportTo: cannot have both public (*) and non-public exportTo values for a resource');
  });
});

describe('VirtualService: gateways, delegation, JWT claims', () => {
  test('JWT claim header matches only on gateway-bound virtual services', () => {
    const spec = (gateways?: string[]) => ({ hosts: ['a.example.com'], ...(gateways ? { gateways } : {}),
      http: [{ match: [{ headers: { '@request.auth.claims.group': { exact: 'admin' } } }], route: [route('a')] }] });
    accepts('VirtualService', spec(['istio-system/ingress']));
    rejects('VirtualService', spec(), 'spec.http[0].match[0].headers[@request.auth.claims.group]: JWT claim based routing (key: @request.auth.claims.group) is only supported for gateway, found no gateways: []');
  });

  test('header names in matches are letters, digits, - and _', () => {
    rejects('VirtualService', { hosts: ['a'], http: [{ match: [{ headers: { 'x.id': { exact: '1' } } }], route: [route('a')] }] },
      "spec.http[0].match[0].headers[x.id]: header name x.id is not a valid header name: use letters, digits, '-' and '_'");
  });

  test('string matches: no empty prefixes except for the URI; "*" in withoutHeaders means present', () => {
    rejects('VirtualService', { hosts: ['a'], http: [{ match: [{ headers: { 'x-a': { prefix: '' } } }], route: [route('a')] }] }, 'spec.http[0].match[0].headers[x-a].prefix: prefix string match should not be empty');
    accepts('VirtualService', { hosts: ['a'], http: [{ match: [{ uri: { prefix: '' }, withoutHeaders: { 'x-b': { regex: '*' } } }], route: [route('a')] }] });
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], mirror: { host: 'b' }, mirrors: [{ destination: { host: 'c' } }] }] }, 'spec.http[0]: HTTP route cannot contain both mirror and mirrors');
  });

  test('a root route only delegates', () => {
    rejects('VirtualService', { hosts: ['a'], http: [{ delegate: { name: 'd' }, route: [route('a')] }] }, 'spec.http[0].route: root HTTP route  must not specify route');
  });

  test('the authority is rewritten in one place only', () => {
    rejects('VirtualService', { hosts: ['a'], http: [{ route: [route('a')], rewrite: { authority: 'x.com' }, headers: { request: { set: { host: 'y.com' } } } }] },
      'spec.http[0].headers.request.set[host]: authority header cannot be set multiple times: have "x.com", attempting to set "y.com"');
  });

  test('gateway names: namespace/name labels or an FQDN', () => {
    rejects('VirtualService', { hosts: ['a.com'], gateways: ['istio-system/'], http: [{ route: [route('a')] }] }, 'spec.gateways[0]: config namespace and gateway name cannot be empty');
    accepts('VirtualService', { hosts: ['a.com'], gateways: ['mesh', 'ingress', 'istio-system/ingress', 'ingress.istio-system.svc.cluster.local'], http: [{ route: [route('a')] }] });
  });

  test('all-numeric top-level domains are not host names, but IPs are accepted where Istio accepts them', () => {
    rejects('DestinationRule', { host: 'foo.123' }, 'spec.host: domain name "123" invalid (top level domain "123" cannot be all-numeric)');
    accepts('VirtualService', { hosts: ['192.168.1.10'], http: [{ route: [route('a')] }] });
  });
});

describe('DestinationRule', () => {
  test('subsets: DNS-label names, no duplicates', () => {
    rejects('DestinationRule', { host: 'r', subsets: [{ name: 'v1' }, { name: 'v1' }] }, 'spec.subsets[1].name: duplicate subset names: v1');
    rejects('DestinationRule', { host: 'r', subsets: [{ name: 'V1' }] }, 'spec.subsets[0].name: subset name is invalid: V1: must be a DNS-1123 label');
  });

  test('traffic policy: not empty, one load balancer kind, maglev prime, locality weights sum to 100', () => {
    rejects('DestinationRule', { host: 'r', trafficPolicy: {} }, 'spec.trafficPolicy: traffic policy must have at least one field');
    rejects('DestinationRule', { host: 'r', trafficPolicy: { loadBalancer: { simple: 'RANDOM', consistentHash: { useSourceIp: true } } } },
      'spec.trafficPolicy.loadBalancer: Invalid value: "object": only one of simple, consistentHash, backendUtilization may be set');
    rejects('DestinationRule', { host: 'r', trafficPolicy: { loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 100 } } } } },
      'spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize must be a prime number for maglev (got 100)');
    rejects('DestinationRule', { host: 'r', trafficPolicy: { loadBalancer: { localityLbSetting: { distribute: [{ from: 'us-east/*', to: { 'us-east/*': 60, 'us-west/*': 30 } }] } } } },
      'spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: total locality weight 90 != 100');
  });

  test('outlier detection and connection pool bounds', () => {
    rejects('DestinationRule', { host: 'r', trafficPolicy: { outlierDetection: { maxEjectionPercent: 120 } } }, 'spec.trafficPolicy.outlierDetection.maxEjectionPercent: percentage 120 is not in range 0..100');
    rejects('DestinationRule', { host: 'r', trafficPolicy: { connectionPool: { http: { maxRetries: -1 } } } }, 'spec.trafficPolicy.connectionPool.http.maxRetries: max retries must be non-negative');
    rejects('DestinationRule', { host: 'r', trafficPolicy: { outlierDetection: { outlierDetectionHttpErrorCodes: [600] } } }, 'spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[0]: Invalid value: 600: should be less than or equal to 599');
  });

  test('client TLS: MUTUAL needs a certificate and key unless credentialName is set', () => {
    rejects('DestinationRule', { host: 'r', trafficPolicy: { tls: { mode: 'MUTUAL' } } }, 'spec.trafficPolicy.tls.clientCertificate: client certificate required for mutual tls');
    accepts('DestinationRule', { host: 'r', trafficPolicy: { tls: { mode: 'MUTUAL', credentialName: 'client-creds' } } });
  });

  test('port level settings need a port and a setting', () => {
    rejects('DestinationRule', { host: 'r', trafficPolicy: { portLevelSettings: [{ port: { number: 80 } }] } }, 'spec.trafficPolicy.portLevelSettings[0]: port traffic policy must have at least one field');
  });
});

describe('ServiceEntry', () => {
  test('resolution vs endpoints and hosts', () => {
    rejects('ServiceEntry', { hosts: ['*.example.com'], resolution: 'DNS' }, 'spec.hosts[0]: hosts must be FQDN if no endpoints are provided for resolution mode DNS');
    accepts('ServiceEntry', { hosts: ['db.internal'], resolution: 'STATIC' }); // endpoints may come from WorkloadEntries
    rejects('ServiceEntry', { hosts: ['a.example.com', 'b.example.com'], resolution: 'DNS', ports: [{ name: 'tcp', number: 5432, protocol: 'TCP' }] },
      'spec.ports[0]: multiple hosts provided with non-HTTP, non-TLS ports');
    rejects('ServiceEntry', { hosts: ['db.internal'], resolution: 'STATIC', ports: [{ name: 'tcp', number: 5432 }], endpoints: [{ address: 'db.example.com' }] },
      'spec.endpoints[0].address: endpoint address "db.example.com" is not a valid IP address');
    rejects('ServiceEntry', { hosts: ['db.internal'], resolution: 'STATIC', ports: [{ name: 'tcp', number: 5432 }], endpoints: [{ address: '10.0.0.1', ports: { mysql: 3306 } }] },
      'spec.endpoints[0].ports[mysql]: endpoint port mysql is not defined by the service entry');
    accepts('ServiceEntry', { hosts: ['db.internal'], addresses: ['240.0.0.1'], resolution: 'STATIC', ports: [{ name: 'tcp', number: 5432, protocol: 'TCP' }], endpoints: [{ address: '10.0.0.1' }, { address: 'unix:///var/run/db.sock' }] });
  });

  test('ports: names are DNS labels, protocols known', () => {
    rejects('ServiceEntry', { hosts: ['a.com'], ports: [{ name: 'HTTP', number: 80 }] }, 'spec.ports[0].name: invalid port name: HTTP: must be a DNS-1123 label (lower case alphanumerics and \'-\')');
    rejects('ServiceEntry', { hosts: ['a.com'], ports: [{ name: 'x', number: 80, protocol: 'FTP' }] },
      'spec.ports[0].protocol: unsupported protocol: FTP: expected one of TCP, UDP, GRPC, GRPC-WEB, HTTP, HTTP_PROXY, HTTP2, HTTPS, TLS, MONGO, REDIS, MYSQL, HBONE, THRIFT');
  });

  test('addresses must be IPs or CIDRs', () => {
    rejects('ServiceEntry', { hosts: ['a.com'], addresses: ['1.2.3.4/99'] }, 'spec.addresses[0]: 1.2.3.4/99 is not a valid CIDR block');
  });
});

describe('WorkloadEntry and WorkloadGroup', () => {
  test('addresses: IP, FQDN or unix socket', () => {
    accepts('WorkloadEntry', { address: 'vm-1.example.com' });
    rejects('WorkloadEntry', { address: 'not a host' }, 'spec.address: endpoint address "not a host" is not a valid FQDN or an IP address');
  });

  test('a WorkloadGroup probe has exactly one method', () => {
    rejects('WorkloadGroup', { template: {}, probe: { periodSeconds: 5 } }, 'spec.probe: unknown health check method: set one of httpGet, tcpSocket, exec or grpc');
    rejects('WorkloadGroup', { template: {}, probe: { httpGet: { port: 80 }, tcpSocket: { port: 80 } } }, 'spec.probe: Invalid value: "object": only one of httpGet, tcpSocket, exec, grpc may be set');
  });
});

describe('Sidecar', () => {
  test('egress hosts are namespace/host; one catch-all listener, last', () => {
    accepts('Sidecar', { egress: [{ hosts: ['./*', 'istio-system/*', '~/*', '*/reviews.default.svc.cluster.local'] }] });
    rejects('Sidecar', { egress: [{ hosts: ['reviews'] }] }, 'spec.egress[0].hosts[0]: host "reviews" must be of form namespace/dnsName');
    rejects('Sidecar', { egress: [{ hosts: ['*/*'] }, { port: { number: 80, protocol: 'HTTP', name: 'http' }, hosts: ['*/*'] }] },
      'spec.egress[0]: sidecar: the egress listener with empty port should be the last listener in the list');
    rejects('Sidecar', {}, 'spec: sidecar: empty configuration provided');
  });

  test('ingress defaultEndpoint forms and unique ports', () => {
    for (const ep of ['127.0.0.1:8080', '0.0.0.0:8080', '[::1]:8080', 'unix:///var/run/app.sock']) {
      accepts('Sidecar', { ingress: [{ port: { number: 9080, protocol: 'HTTP', name: 'http' }, defaultEndpoint: ep }] });
    }
    rejects('Sidecar', { ingress: [{ port: { number: 9080, protocol: 'HTTP', name: 'http' }, defaultEndpoint: '10.0.0.1:8080' }] },
      'spec.ingress[0].defaultEndpoint: sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset');
    rejects('Sidecar', { ingress: [{ port: { number: 9080, name: 'a' } }, { port: { number: 9080, name: 'b' } }] }, 'spec.ingress[1].port.number: sidecar: ports on IP bound listeners must be unique');
    rejects('Sidecar', { egress: [{ hosts: ['*/*'], captureMode: 'SOMETIMES' }] }, 'spec.egress[0].captureMode: Unsupported value: "SOMETIMES": supported values: "DEFAULT", "IPTABLES", "NONE"');
  });

  test('egressProxy only with ALLOW_ANY', () => {
    rejects('Sidecar', { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY', egressProxy: { host: 'proxy.example.com', port: { number: 3128 } } } },
      'spec.outboundTrafficPolicy.egressProxy: sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode');
  });
});

describe('hosts in Sidecars and Gateways', () => {
  test('FQDNs or "*" only: no short names, no partial wildcards', () => {
    rejects('Sidecar', { egress: [{ hosts: ['./reviews'] }] }, 'spec.egress[0].hosts[0]: short names (non FQDN) are not allowed: "reviews"');
    rejects('Gateway', { servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['*x.example.com'] }] }, 'spec.servers[0].hosts[0]: partial wildcard "*x.example.com" not allowed');
    accepts('Gateway', { servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['10.0.0.1'] }] });
  });

  test('Gateway names are DNS labels; plain HTTP servers only carry an HTTPS redirect', () => {
    const r = { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'my.gateway', namespace: 'default' },
      spec: { servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['a.com'], tls: { httpsRedirect: true } }] } };
    assert.deepEqual(validateResource(r).map((e) => `${e.path}: ${e.detail}`), ['metadata.name: invalid gateway name: "my.gateway": Gateway names must be DNS-1123 labels (no dots)']);
    rejects('Gateway', { servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['a.com'], tls: { mode: 'SIMPLE', credentialName: 'c' } }] },
      'spec.servers[0].tls: server cannot have TLS settings for plain text HTTP ports');
    rejects('Gateway', { servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP', targetPort: 8080 }, hosts: ['a.com'] }] }, 'spec.servers[0].port.targetPort: targetPort has no impact on Gateways');
  });
});

describe('ServiceEntry endpoints', () => {
  test('a unix socket endpoint needs exactly one service port', () => {
    rejects('ServiceEntry', { hosts: ['db.internal'], resolution: 'STATIC', ports: [{ name: 'a', number: 1 }, { name: 'b', number: 2 }], endpoints: [{ address: 'unix:///var/run/db.sock' }] },
      'spec.endpoints[0]: exactly 1 service port required for unix endpoints');
  });

  test('outlier detection: local-origin failures need split errors', () => {
    rejects('DestinationRule', { host: 'r', trafficPolicy: { outlierDetection: { consecutiveLocalOriginFailures: 3 } } },
      'spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures: outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false');
  });
});

describe('Gateway', () => {
  test('servers: hosts, protocols, unique port names, TLS for HTTPS', () => {
    rejects('Gateway', { servers: [] }, 'spec.servers: gateway must have at least one server');
    rejects('Gateway', { servers: [{ port: { number: 443, name: 'https', protocol: 'HTTPS' }, hosts: ['*'] }] }, 'spec.servers[0].tls: server must have TLS settings for HTTPS/TLS protocols');
    rejects('Gateway', { servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['a.com'] }, { port: { number: 81, name: 'http', protocol: 'HTTP' }, hosts: ['b.com'] }] },
      'spec.servers[1].port.name: port names in servers must be unique: duplicate name http');
    rejects('Gateway', { servers: [{ port: { number: 443, name: 'https', protocol: 'HTTPS' }, hosts: ['a.com'], tls: { mode: 'SIMPLE' } }] },
      'spec.servers[0].tls.serverCertificate: SIMPLE TLS requires a server certificate');
    accepts('Gateway', { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 443, name: 'https', protocol: 'HTTPS' }, hosts: ['shop/*.example.com'], tls: { mode: 'SIMPLE', credentialName: 'example-cert' } }] });
    rejects('Gateway', { servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['Bad_NS/a.com'] }] }, 'spec.servers[0].hosts[0]: invalid namespace value "Bad_NS" in gateway');
  });
});

describe('EnvoyFilter', () => {
  const listenerMatch = { listener: { filterChain: { filter: { name: 'envoy.filters.network.http_connection_manager' } } } };
  test('patch: operation required, value required unless REMOVE', () => {
    rejects('EnvoyFilter', { configPatches: [{ applyTo: 'CLUSTER', patch: { operation: 'ADD' } }] }, 'spec.configPatches[0].patch.value: Envoy filter: missing patch value for non-remove operation');
    rejects('EnvoyFilter', { configPatches: [{ applyTo: 'CLUSTER' }] }, 'spec.configPatches[0].patch: Envoy filter: missing patch');
    accepts('EnvoyFilter', { configPatches: [{ applyTo: 'HTTP_FILTER', match: listenerMatch, patch: { operation: 'REMOVE' } }] });
  });

  test('applyTo and operation must fit: ROUTE_CONFIGURATION only merges', () => {
    rejects('EnvoyFilter', { configPatches: [{ applyTo: 'ROUTE_CONFIGURATION', patch: { operation: 'ADD', value: { name: 'x' } } }] },
      'spec.configPatches[0].patch.operation: Envoy filter: ROUTE_CONFIGURATION does not support operation ADD (it would never apply): expected one of MERGE, MERGE_AND_REPLACE_LIST');
    rejects('EnvoyFilter', { configPatches: [{ applyTo: 'CLUSTER', patch: { operation: 'INSERT_BEFORE', value: { name: 'x' } } }] },
      'spec.configPatches[0].patch.operation: Envoy filter: CLUSTER does not support operation INSERT_BEFORE (it would never apply): expected one of ADD, REMOVE, REPLACE, MERGE, MERGE_AND_REPLACE_LIST');
  });

  test('match must fit applyTo; subFilter only under the HTTP connection manager', () => {
    rejects('EnvoyFilter', { configPatches: [{ applyTo: 'CLUSTER', match: listenerMatch, patch: { operation: 'REMOVE' } }] },
      'spec.configPatches[0].match: Envoy filter: applyTo for cluster class objects cannot have non cluster match');
    rejects('EnvoyFilter', { configPatches: [{ applyTo: 'HTTP_FILTER', match: { listener: { filterChain: { filter: { name: 'envoy.filters.network.tcp_proxy', subFilter: { name: 'envoy.filters.http.router' } } } } }, patch: { operation: 'REMOVE' } }] },
      'spec.configPatches[0].match.listener.filterChain.filter.subFilter: Envoy filter: subfilter match requires filter match with envoy.filters.network.http_connection_manager');
    rejects('EnvoyFilter', { workloadSelector: { labels: { app: 'a' } }, targetRefs: [{ kind: 'Service', name: 'a' }], configPatches: [] },
      'spec: Invalid value: "object": only one of targetRefs or workloadSelector can be set');
  });
});

describe('EnvoyFilter patch values', () => {
  const patch = (applyTo: string, operation: string, value: unknown) => ({ configPatches: [{ applyTo, patch: { operation, value } }] });
  test('the value must be the Envoy message its applyTo patches', () => {
    rejects('EnvoyFilter', patch('CLUSTER', 'ADD', { name: 'c', connect_timeout: 5 }),
      'spec.configPatches[0].patch.value.connect_timeout: Envoy filter: patch value is not a valid envoy.config.cluster.v3.Cluster: expected a duration such as "1.5s", got 5');
    rejects('EnvoyFilter', patch('CLUSTER', 'MERGE', { type: 'STRICT_DNS', cluster_type: { name: 'x' } }),
      'spec.configPatches[0].patch.value.cluster_type: Envoy filter: patch value is not a valid envoy.config.cluster.v3.Cluster: only one of type and cluster_type may be set (oneof clusterDiscoveryType)');
    rejects('EnvoyFilter', patch('HTTP_ROUTE', 'MERGE', { route: { retry_policy: { num_retries: -1 } } }),
      'spec.configPatches[0].patch.value.route.retry_policy.num_retries: Envoy filter: patch value is not a valid envoy.config.route.v3.Route: expected a non-negative integer, got -1');
  });

  test('known typed_config payloads are checked; unknown types and unknown fields pass, as in Istio', () => {
    rejects('EnvoyFilter', patch('HTTP_FILTER', 'INSERT_FIRST', { name: 'r', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router', suppress_envoy_headers: 'yes' } }),
      'spec.configPatches[0].patch.value.typed_config.suppress_envoy_headers: Envoy filter: patch value is not a valid envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter: expected true or false, got "yes"');
    accepts('EnvoyFilter', patch('HTTP_FILTER', 'INSERT_FIRST', { name: 'x', typed_config: { '@type': 'type.googleapis.com/example.v1.Unknown', anything: [1] } }));
    accepts('EnvoyFilter', patch('CLUSTER', 'MERGE', { some_future_field: true, connect_timeout: '0.25s' }));
  });
});

describe('Telemetry', () => {
  test('sampling percentage, single tracing, selector exclusive with targetRef', () => {
    rejects('Telemetry', { tracing: [{ randomSamplingPercentage: 120 }] }, 'spec.tracing[0].randomSamplingPercentage: Invalid value: 120: should be less than or equal to 100');
    rejects('Telemetry', { targetRefs: [{ kind: 'Deployment', name: 'a' }] }, 'spec.targetRefs[0]: targetRef must be to one of Service, networking.istio.io/ServiceEntry, gateway.networking.k8s.io/Gateway but was /Deployment');
    rejects('Telemetry', { selector: { matchLabels: { app: 'a' } }, targetRef: { kind: 'Service', name: 'a' } }, 'spec: Invalid value: "object": only one of targetRefs or selector can be set');
    rejects('Telemetry', { metrics: [{ reportingInterval: '0s' }] }, 'spec.metrics[0].reportingInterval: Invalid value: "0s": must be a valid duration greater than 1ms');
  });
});
