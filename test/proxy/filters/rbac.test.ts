// Envoy's RBAC filter as the proxy runs it: each matcher Istio generates, ALLOW/DENY/LOG
// semantics, the response code details of a denial, the client address from
// x-forwarded-for, and config the proxy cannot run refused (NACKed) with the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { compileRbac, evaluateRbac, httpSubject, remoteAddressOf } from '../../../src/proxy/filters/rbac/index.ts';
import type { HttpRequestFacts, RbacFilter } from '../../../src/proxy/filters/rbac/index.ts';
import { compileListener } from '../../../src/proxy/listener/listener-spec.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assignment, edsCluster, freePort, httpListener, meshWith, routeConfig, send, startBackend } from '../helpers/fixtures.ts';

function request(over: Partial<HttpRequestFacts> = {}): HttpRequestFacts {
  return {
    method: 'GET', target: '/reviews/1?x=1', path: '/reviews/1', authority: 'reviews:9080', scheme: 'http',
    headers: [{ name: 'Host', value: 'reviews:9080' }, { name: 'X-Debug', value: 'a' }, { name: 'x-debug', value: 'b' }],
    receivedXff: undefined, remoteAddress: '127.0.1.7', localAddress: '127.0.1.5', localPort: 9080,
    useRemoteAddress: false, xffNumTrustedHops: 0, ...over,
  };
}

function filter(action: string | undefined, policies: Record<string, ProtoJson>): RbacFilter {
  return compileRbac({ rules: action === undefined ? { policies } : { action, policies } }, 'rbac', true);
}

const anyone = [{ any: true }];

function allowWhen(permission: ProtoJson, principal: ProtoJson = { any: true }): RbacFilter {
  return filter(undefined, { p: { permissions: [permission], principals: [principal] } });
}

function allowed(f: RbacFilter, r: HttpRequestFacts): boolean {
  return evaluateRbac([f], httpSubject(r)).allowed;
}

test('ALLOW: a request passes only when a policy matches; no policy denies all with details "none"', () => {
  const denyAll = filter(undefined, {});
  assert.deepEqual(evaluateRbac([denyAll], httpSubject(request())), { allowed: false, policy: undefined, details: 'rbac_access_denied_matched_policy[none]' });
  const f = allowWhen({ header: { name: ':method', stringMatch: { exact: 'GET' } } });
  assert.equal(allowed(f, request()), true);
  assert.equal(allowed(f, request({ method: 'POST' })), false);
});

test('DENY: the first matching policy (by name) is named in the details; LOG never denies', () => {
  const f = filter('DENY', {
    'ns[shop]-policy[b]-rule[0]': { permissions: anyone, principals: [{ remoteIp: { addressPrefix: '203.0.113.0', prefixLen: 24 } }] },
    'ns[shop]-policy[a]-rule[0]': { permissions: anyone, principals: [{ remoteIp: { addressPrefix: '203.0.113.9', prefixLen: 32 } }] },
  });
  assert.deepEqual(evaluateRbac([f], httpSubject(request({ receivedXff: '203.0.113.9' }))),
    { allowed: false, policy: 'ns[shop]-policy[a]-rule[0]', details: 'rbac_access_denied_matched_policy[ns[shop]-policy[a]-rule[0]]' });
  assert.equal(evaluateRbac([f], httpSubject(request())).allowed, true);
  const log = filter('LOG', { p: { permissions: anyone, principals: anyone } });
  assert.equal(evaluateRbac([log], httpSubject(request())).allowed, true);
  // A filter without rules enforces nothing; with rules: {} (ALLOW, no policy) it denies.
  assert.equal(evaluateRbac([compileRbac({}, 'rbac', true)], httpSubject(request())).allowed, true);
  assert.equal(evaluateRbac([compileRbac({ rules: {} }, 'rbac', true)], httpSubject(request())).allowed, false);
});

test('DENY filters run before ALLOW filters in chain order', () => {
  const deny = filter('DENY', { d: { permissions: [{ urlPath: { path: { prefix: '/admin' } } }], principals: anyone } });
  const allow = filter(undefined, { a: { permissions: anyone, principals: anyone } });
  assert.equal(evaluateRbac([deny, allow], httpSubject(request({ path: '/admin/x', target: '/admin/x' }))).allowed, false);
  assert.equal(evaluateRbac([deny, allow], httpSubject(request())).allowed, true);
});

test('principals: authenticated principal name from the peer certificate, absent without mTLS', () => {
  const f = allowWhen({ any: true }, { authenticated: { principalName: { exact: 'spiffe://cluster.local/ns/shop/sa/frontend' } } });
  assert.equal(allowed(f, request()), false);
  assert.equal(allowed(f, request({ principal: 'spiffe://cluster.local/ns/shop/sa/frontend' })), true);
  assert.equal(allowed(f, request({ principal: 'spiffe://cluster.local/ns/shop/sa/other' })), false);
  const ns = allowWhen({ any: true }, { authenticated: { principalName: { safeRegex: { regex: '.*/ns/shop/.*' } } } });
  assert.equal(allowed(ns, request({ principal: 'spiffe://cluster.local/ns/shop/sa/x' })), true);
  assert.equal(allowed(ns, request({ principal: 'spiffe://cluster.local/ns/shopping/sa/x' })), false);
  const anyPeer = allowWhen({ any: true }, { authenticated: {} });
  assert.equal(allowed(anyPeer, request()), false);
  assert.equal(allowed(anyPeer, request({ principal: 'spiffe://cluster.local/ns/a/sa/b' })), true);
});

test('direct_remote_ip is the peer; remote_ip follows x-forwarded-for and its trusted hops', () => {
  const direct = allowWhen({ any: true }, { directRemoteIp: { addressPrefix: '127.0.1.0', prefixLen: 24 } });
  assert.equal(allowed(direct, request()), true);
  assert.equal(allowed(direct, request({ remoteAddress: '10.1.2.3' })), false);
  assert.equal(allowed(direct, request({ remoteAddress: '::ffff:127.0.1.9' })), true);
  const remote = allowWhen({ any: true }, { remoteIp: { addressPrefix: '198.51.100.7', prefixLen: 32 } });
  assert.equal(allowed(remote, request({ receivedXff: '198.51.100.7' })), true);
  assert.equal(allowed(remote, request({ receivedXff: '198.51.100.7, 10.0.0.1' })), false);
  assert.equal(allowed(remote, request({ receivedXff: '198.51.100.7, 10.0.0.1', xffNumTrustedHops: 1 })), true);
  assert.equal(remoteAddressOf('127.0.0.9', '1.1.1.1, 2.2.2.2', true, 0), '127.0.0.9');
  assert.equal(remoteAddressOf('127.0.0.9', '1.1.1.1, 2.2.2.2', true, 1), '2.2.2.2');
  assert.equal(remoteAddressOf('127.0.0.9', '1.1.1.1, 2.2.2.2', false, 5), '127.0.0.9');
  assert.equal(remoteAddressOf('127.0.0.9', 'garbage', false, 0), '127.0.0.9');
  const v6 = allowWhen({ any: true }, { directRemoteIp: { addressPrefix: '2001:db8::', prefixLen: 32 } });
  assert.equal(allowed(v6, request({ remoteAddress: '2001:db8:0:1::5' })), true);
  assert.equal(allowed(v6, request({ remoteAddress: '2001:db9::5' })), false);
});

test('headers (pseudo-headers, repeated values joined by ","), url_path without query, ports, SNI, and/or/not', () => {
  assert.equal(allowed(allowWhen({ header: { name: 'x-debug', stringMatch: { exact: 'a,b' } } }), request()), true);
  assert.equal(allowed(allowWhen({ header: { name: ':authority', stringMatch: { prefix: 'REVIEWS', ignoreCase: true } } }), request()), true);
  assert.equal(allowed(allowWhen({ header: { name: ':path', stringMatch: { exact: '/reviews/1?x=1' } } }), request()), true);
  assert.equal(allowed(allowWhen({ header: { name: 'x-absent', presentMatch: true } }), request()), false);
  assert.equal(allowed(allowWhen({ header: { name: 'x-absent', presentMatch: true, invertMatch: true } }), request()), true);
  assert.equal(allowed(allowWhen({ urlPath: { path: { exact: '/reviews/1' } } }), request()), true);
  assert.equal(allowed(allowWhen({ urlPath: { path: { safeRegex: { regex: '/reviews/[^/]+' } } } }), request()), true);
  assert.equal(allowed(allowWhen({ destinationPort: 9080 }), request()), true);
  assert.equal(allowed(allowWhen({ destinationPort: 9081 }), request()), false);
  assert.equal(allowed(allowWhen({ destinationPortRange: { start: 9000, end: 9081 } }), request()), true);
  assert.equal(allowed(allowWhen({ destinationIp: { addressPrefix: '127.0.1.5', prefixLen: 32 } }), request()), true);
  assert.equal(allowed(allowWhen({ requestedServerName: { exact: 'reviews' } }), request()), false);
  assert.equal(allowed(allowWhen({ requestedServerName: { exact: 'reviews' } }), request({ requestedServerName: 'reviews' })), true);
  const combined = allowWhen({ andRules: { rules: [
    { orRules: { rules: [{ header: { name: ':method', stringMatch: { exact: 'POST' } } }, { header: { name: ':method', stringMatch: { exact: 'GET' } } }] } },
    { notRule: { urlPath: { path: { prefix: '/admin' } } } },
  ] } });
  assert.equal(allowed(combined, request()), true);
  assert.equal(allowed(combined, request({ path: '/admin', target: '/admin' })), false);
  assert.equal(allowed(combined, request({ method: 'PUT' })), false);
  const notId = allowWhen({ any: true }, { notId: { orIds: { ids: [{ directRemoteIp: { addressPrefix: '127.0.1.7', prefixLen: 32 } }] } } });
  assert.equal(allowed(notId, request()), false);
});

test('request principals come from the istio_authn metadata: without a JWT nothing matches', () => {
  const f = allowWhen({ any: true }, { metadata: { filter: 'istio_authn', path: [{ key: 'request.auth.principal' }], value: { stringMatch: { exact: 'https://issuer/alice' } } } });
  assert.equal(allowed(f, request()), false);
  assert.equal(allowed(f, request({ metadata: { istio_authn: { 'request.auth.principal': 'https://issuer/alice' } } })), true);
  const claims = allowWhen({ any: true }, { metadata: { filter: 'istio_authn', path: [{ key: 'request.auth.claims' }, { key: 'groups' }], value: { listMatch: { oneOf: { stringMatch: { exact: 'admins' } } } } } });
  assert.equal(allowed(claims, request({ metadata: { istio_authn: { 'request.auth.claims': { groups: ['users', 'admins'] } } } })), true);
});

test('config the proxy cannot run is refused with the field, never ignored', () => {
  const cases: [ProtoJson, RegExp][] = [
    [{ rules: { policies: { p: { permissions: anyone, principals: anyone, condition: { constExpr: { boolValue: true } } } } } }, /rbac\.rules\.policies\["p"\]\.condition: CEL conditions are not supported/],
    [{ rules: { policies: { p: { permissions: [{ uriTemplate: { pathTemplate: '/{x}' } }], principals: anyone } } } }, /permissions\[0\]\.uriTemplate: the RBAC permission uriTemplate is not supported/],
    [{ rules: { policies: { p: { permissions: anyone, principals: [{ filterState: { key: 'k' } }] } } } }, /principals\[0\]\.filterState: the RBAC principal filterState is not supported/],
    [{ matcher: {} }, /rbac\.matcher: the matcher-tree form of RBAC is not supported/],
    [{ rules: { policies: { p: { permissions: [], principals: anyone } } } }, /permissions: at least one permission is required/],
    [{ rules: { policies: { p: { permissions: anyone, principals: [{ directRemoteIp: { addressPrefix: 'nope' } }] } } } }, /addressPrefix: "nope" is not an IP address/],
  ];
  for (const [cfg, message] of cases) assert.throws(() => compileRbac(cfg, 'rbac', true), message);
});

test('listeners: the HTTP RBAC filter compiles into the connection manager; a bad one NACKs the listener', () => {
  const listener = (rbac: ProtoJson): ProtoJson => ({
    name: 'l', address: { socketAddress: { address: '127.0.0.1', portValue: 9080 } },
    filterChains: [{ filters: [{
      name: 'envoy.filters.network.http_connection_manager',
      typedConfig: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
        statPrefix: 's', routeConfig: { name: 'r', virtualHosts: [] },
        httpFilters: [
          { name: 'envoy.filters.http.rbac', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC', ...rbac } },
          { name: 'envoy.filters.http.router', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
        ],
      },
    }] }],
  });
  const spec = compileListener(listener({ rules: { action: 'DENY', policies: { p: { permissions: anyone, principals: anyone } } } }), 'Listener l');
  const hcm = spec.filterChains[0]!.network;
  assert.equal(hcm.kind, 'http');
  assert.equal(hcm.kind === 'http' ? hcm.rbac.length : 0, 1);
  assert.throws(() => compileListener(listener({ rules: { policies: { p: { permissions: anyone, principals: [{ filterState: {} }] } } } }), 'Listener l'),
    /Listener l\.filterChains\[0\]\.filters\[0\]\.typedConfig\.httpFilters\[0\]\.typedConfig\.rules\.policies\["p"\]\.principals\[0\]\.filterState/);
});

test('through a sidecar listener: 403 "RBAC: access denied", flag RBAC and the matched policy in the access log; gRPC gets PERMISSION_DENIED', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-rbac-'));
  const logPath = path.join(dir, 'access.log');
  const app = await startBackend('app');
  const port = await freePort();
  const rbac = (action: string, policies: ProtoJson): ProtoJson => ({ name: 'envoy.filters.http.rbac', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC', rules: { action, policies } } });
  const m = await meshWith({
    clusters: [edsCluster('svc')],
    endpoints: [assignment('svc', [app.port])],
    listeners: [httpListener('l', port, 'r', { direction: 'INBOUND', accessLogPath: logPath, hcm: { normalizePath: true }, httpFilters: [
      rbac('DENY', { 'ns[shop]-policy[no-admin]-rule[0]': { permissions: [{ urlPath: { path: { prefix: '/admin' } } }], principals: anyone } }),
      rbac('ALLOW', { 'ns[shop]-policy[get-only]-rule[0]': { permissions: [{ header: { name: ':method', stringMatch: { exact: 'GET' } } }], principals: anyone } }),
    ] })],
    routes: [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{ name: 'all', match: { prefix: '/' }, route: { cluster: 'svc' } }] }])],
  });
  try {
    await m.proxy.whenReady();
    const ok = await send(port, '/reviews', { Host: 'svc' });
    assert.equal(ok.status, 200);
    // The policy sees the normalized path, as Envoy's filters do.
    const denied = await send(port, '/public/../admin/x', { Host: 'svc' });
    assert.deepEqual([denied.status, denied.body, denied.headers['content-type']], [403, 'RBAC: access denied', 'text/plain']);
    const post = await send(port, '/reviews', { Host: 'svc' }, { method: 'POST', body: '' });
    assert.deepEqual([post.status, post.body], [403, 'RBAC: access denied']);
    const grpc = await send(port, '/pkg.Svc/Call', { Host: 'svc', 'content-type': 'application/grpc' }, { method: 'POST', body: '' });
    assert.deepEqual([grpc.status, grpc.headers['grpc-status'], grpc.headers['grpc-message']], [200, '7', 'RBAC: access denied']);
    assert.equal(app.hits, 1);
    let lines: Record<string, unknown>[] = [];
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      try { lines = readFileSync(logPath, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>); } catch { /* not yet */ }
      if (lines.length >= 4) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(lines.map((l) => [l['response_code'], l['response_flags'], l['response_code_details']]), [
      [200, '-', 'via_upstream'],
      [403, 'RBAC', 'rbac_access_denied_matched_policy[ns[shop]-policy[no-admin]-rule[0]]'],
      [403, 'RBAC', 'rbac_access_denied_matched_policy[none]'],
      [200, 'RBAC', 'rbac_access_denied_matched_policy[none]'],
    ]);
  } finally {
    await m.close();
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a TCP chain\'s network RBAC filter closes a refused connection before tcp_proxy connects', async () => {
  let upstreamConnections = 0;
  const echo = net.createServer((s) => { upstreamConnections++; s.pipe(s); });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const port = await freePort();
  const tcpListener = (blocked: string): ProtoJson => ({
    name: 'tcp', address: { socketAddress: { address: '127.0.0.1', portValue: port } }, trafficDirection: 'INBOUND',
    filterChains: [{ filters: [
      { name: 'envoy.filters.network.rbac', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC', statPrefix: 'tcp.', rules: { action: 'DENY', policies: {
        'ns[shop]-policy[block]-rule[0]': { permissions: anyone, principals: [{ directRemoteIp: { addressPrefix: blocked, prefixLen: 32 } }] },
      } } } },
      { name: 'envoy.filters.network.tcp_proxy', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', statPrefix: 'echo', cluster: 'echo' } },
    ] }],
  });
  const m = await meshWith({
    clusters: [edsCluster('echo')],
    endpoints: [assignment('echo', [(echo.address() as net.AddressInfo).port])],
    listeners: [tcpListener('127.0.0.7')],
  });
  const roundTrip = (from: string): Promise<string> => new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from }, () => s.write('ping'));
    let got = '';
    s.on('data', (d: Buffer) => { got += d.toString(); if (got === 'ping') s.end(); });
    s.on('close', () => resolve(got));
    s.on('error', () => { /* closed by the proxy */ });
  });
  try {
    await m.proxy.whenReady();
    assert.equal(await roundTrip('127.0.0.8'), 'ping');
    assert.equal(await roundTrip('127.0.0.7'), '');
    assert.equal(upstreamConnections, 1);
  } finally {
    await m.close();
    echo.close();
  }
});
