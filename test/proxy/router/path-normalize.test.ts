// Request path normalization as Envoy does it for Istio's pathNormalization modes: exact
// outputs for Envoy's own vectors (path_utility_test.cc), Istio's (tests/integration/
// security/normalization_test.go), and the bypasses a prefix route must not allow.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HCM_TYPE, ROUTER_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { compileListener } from '../../../src/proxy/listener/listener-spec.ts';
import { NO_PATH_NORMALIZATION, PATH_REJECTED, canonicalizePath, mergeSlashes, normalizeTarget } from '../../../src/proxy/router/path-normalize.ts';
import type { PathNormalization } from '../../../src/proxy/router/path-normalize.ts';

// Istio's meshConfig.pathNormalization.normalization, as its pilot sets the HCM fields.
const NONE = NO_PATH_NORMALIZATION;
const BASE: PathNormalization = { normalizePath: true, mergeSlashes: false, escapedSlashes: 'KEEP_UNCHANGED' };
const MERGE_SLASHES: PathNormalization = { normalizePath: true, mergeSlashes: true, escapedSlashes: 'KEEP_UNCHANGED' };
const DECODE_AND_MERGE_SLASHES: PathNormalization = { normalizePath: true, mergeSlashes: true, escapedSlashes: 'UNESCAPE_AND_FORWARD' };

function table(mode: PathNormalization, cases: [string, string][]): void {
  for (const [input, want] of cases) assert.equal(normalizeTarget(input, mode), want, `${JSON.stringify(input)} → ${JSON.stringify(want)}`);
}

test("Envoy's canonicalPath vectors: dot segments, %2e, backslashes, escapes kept as written", () => {
  const cases: [string, string][] = [
    ['/xyz', '/xyz'],
    ['/x/y/z', '/x/y/z'],
    ['/a/b/../c', '/a/c'],
    ['/a/b/./c', '/a/b/c'],
    ['a/b/../c', '/a/c'],
    ['/a/b/../../../../c', '/c'],
    ['/a/..\\c', '/c'],
    ['/%c0%af', '/%c0%af'],
    ['/%5c%25', '/%5c%25'],
    ['/a/b/%2E%2E/c', '/a/c'],
    ['/a/b/%2E./c', '/a/c'],
    ['/a/b/%2E/c', '/a/b/c'],
    ['..', '/'],
    ['/../a/b', '/a/b'],
    ['/./a/b', '/a/b'],
    ['/A/B/C', '/A/B/C'],
    ['/a/b/%2e%2e/c', '/a/c'],
    ['/a/%2F%2f/c', '/a/%2F%2f/c'],
    ['', '/'],
  ];
  for (const [input, want] of cases) assert.equal(canonicalizePath(input), want, JSON.stringify(input));
  for (const invalid of ['/xyz/.%00../abc', '/xyz/%00.%00./abc', '/xyz/AAAAA%%0000/abc', '/a\u0000b']) {
    assert.equal(canonicalizePath(invalid), undefined, JSON.stringify(invalid));
  }
});

test("Envoy's mergeSlashes vectors", () => {
  const cases: [string, string][] = [
    ['', ''],
    ['a//b/c', 'a/b/c'],
    ['/a//b/c/', '/a/b/c/'],
    ['a//b/c/', 'a/b/c/'],
    ['/a', '/a'],
    ['//a/b/c', '/a/b/c'],
    ['/a//b/c', '/a/b/c'],
    ['/a/b/c//', '/a/b/c/'],
    ['/a///b/c', '/a/b/c'],
    ['/a////b/c', '/a/b/c'],
    // Envoy's quirk: nothing but slashes keeps a slash at each end.
    ['//', '//'],
  ];
  for (const [input, want] of cases) assert.equal(mergeSlashes(input), want, JSON.stringify(input));
  // the query is never merged
  table(MERGE_SLASHES, [['/a//b?a=///c', '/a/b?a=///c'], ['/a//b?', '/a/b?'], ['//a/?b', '/a/?b']]);
});

// Istio's integration test: the path the app receives, per normalization mode.
const ISTIO_INPUTS = [
  '/', '/app#foo', '/app/', '/app/../admin', '/app', '/app//', '/app/%2f', '/app%2f/', '/xyz%30..//abc', '/app/%2E./admin',
  '/app\\admin', '/app/\\/\\/\\admin', '/%2Fapp%5cadmin%5Cabc', '/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc', '/app//../admin', '/app//../../admin',
];

test("Istio's NONE: only a #fragment is dropped", () => {
  const want = ['/', '/app', '/app/', '/app/../admin', '/app', '/app//', '/app/%2f', '/app%2f/', '/xyz%30..//abc', '/app/%2E./admin',
    '/app\\admin', '/app/\\/\\/\\admin', '/%2Fapp%5cadmin%5Cabc', '/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc', '/app//../admin', '/app//../../admin'];
  table(NONE, ISTIO_INPUTS.map((input, i) => [input, want[i]!]));
});

test("Istio's BASE (the default): RFC 3986 dot segments after decoding, %2F kept", () => {
  const want = ['/', '/app', '/app/', '/admin', '/app', '/app//', '/app/%2f', '/app%2f/', '/xyz0..//abc', '/admin',
    '/app/admin', '/app//////admin', '/%2Fapp%5cadmin%5Cabc', '/%5Capp%2f%5c%2F..%2fadmin%5c/abc', '/app/admin', '/admin'];
  table(BASE, ISTIO_INPUTS.map((input, i) => [input, want[i]!]));
});

test("Istio's MERGE_SLASHES", () => {
  const want = ['/', '/app', '/app/', '/admin', '/app', '/app/', '/app/%2f', '/app%2f/', '/xyz0../abc', '/admin',
    '/app/admin', '/app/admin', '/%2Fapp%5cadmin%5Cabc', '/%5Capp%2f%5c%2F..%2fadmin%5c/abc', '/app/admin', '/admin'];
  table(MERGE_SLASHES, ISTIO_INPUTS.map((input, i) => [input, want[i]!]));
});

test("Istio's DECODE_AND_MERGE_SLASHES: escaped slashes and backslashes decoded, then normalized", () => {
  const want = ['/', '/app', '/app/', '/admin', '/app', '/app/', '/app/', '/app/', '/xyz0../abc', '/admin',
    '/app/admin', '/app/admin', '/app/admin/abc', '/app/admin/abc', '/app/admin', '/admin'];
  table(DECODE_AND_MERGE_SLASHES, ISTIO_INPUTS.map((input, i) => [input, want[i]!]));
  table(DECODE_AND_MERGE_SLASHES, [
    ['/%c0%2e%c0%2e/admin', '/%c0.%c0./admin'],
    ['/%c0%2fadmin', '/%c0/admin'],
    // not normalized: double encodings, overlong UTF-8, dot runs, path parameters, case
    ['/%252e%252e/admin', '/%252e%252e/admin'],
    ['/%c0%ae%c0%ae/admin', '/%c0%ae%c0%ae/admin'],
    ['/.../admin', '/.../admin'],
    ['/..;/admin', '/..;/admin'],
    ['/admin;a=b/xyz', '/admin;a=b/xyz'],
    ['/ADMIN', '/ADMIN'],
  ]);
  assert.equal(normalizeTarget('/admin%00', DECODE_AND_MERGE_SLASHES), PATH_REJECTED);
});

test('every escape %01..%ff: unreserved characters, slash and backslash decoded; the rest kept as written', () => {
  // Istio's PercentEncoded table under DECODE_AND_MERGE_SLASHES
  const decoded = (i: number) => i === 0x2d || i === 0x2e || i === 0x2f || i === 0x5c || i === 0x5f || i === 0x7e ||
    (i >= 0x30 && i <= 0x39) || (i >= 0x41 && i <= 0x5a) || (i >= 0x61 && i <= 0x7a);
  for (let i = 1; i <= 0xff; i++) {
    const input = `/admin%${i.toString(16).padStart(2, '0')}`;
    const want = decoded(i) ? `/admin${i === 0x5c ? '/' : String.fromCharCode(i)}` : input;
    assert.equal(normalizeTarget(input, DECODE_AND_MERGE_SLASHES), want, input);
  }
});

test('the bypasses of a prefix route are closed under BASE', () => {
  table(BASE, [
    ['/public/../admin', '/admin'],
    ['/public/%2e%2e/admin', '/admin'],
    ['/public/%2E%2e/admin', '/admin'],
    ['/public/..%5cadmin', '/public/..%5cadmin'], // an escaped backslash is not a separator under BASE
    ['/public/..\\admin', '/admin'],
    ['/../../etc/passwd', '/etc/passwd'],
    ['/%2e%2e/x', '/x'],
    ['/a/./b', '/a/b'],
    ['/a/%2E/b', '/a/b'],
    ['/../', '/'],
    ['/foo/../bar', '/bar'],
    ['/foo%2Fbar', '/foo%2Fbar'],
    ['//evil/x', '//evil/x'],
    ['/%61dmin', '/admin'],
    ['/%7Euser', '/~user'],
  ]);
  table(MERGE_SLASHES, [['//evil/x', '/evil/x'], ['/foo//bar', '/foo/bar']]);
});

test('the query is kept byte for byte; a fragment is dropped', () => {
  table(BASE, [
    ['/a/../b?x=/../y&z=%2e#frag', '/b?x=/../y&z=%2e'],
    ['/a?x=1#frag', '/a?x=1'],
    ['/a#frag?x=1', '/a'],
    ['/?', '/?'],
    ['/static/app.js?v=1.2', '/static/app.js?v=1.2'],
  ]);
});

test('characters not allowed in a path are escaped; other escapes keep their hex case', () => {
  table(BASE, [
    ['/a"b<c>d`e{f|g}h^i', '/a%22b%3Cc%3Ed%60e%7Bf%7Cg%7Dh%5Ei'],
    ['/caf\u00e9', '/caf%E9'],
    ['/a%3fb%3Fc', '/a%3fb%3Fc'],
    ['/a%zzb', '/a%zzb'], // not an escape: kept, as Envoy does
    ['/100%', '/100%'],
  ]);
});

test('a decoded escape never completes a stray %: that % becomes %25', () => {
  table(BASE, [
    ['/%%30%30', '/%2500'],
    ['/%%300', '/%2500'],
    ['/%3%30', '/%2530'],
  ]);
});

test('path_with_escaped_slashes_action: reject, redirect to the unescaped path, forward unescaped, keep', () => {
  const mode = (escapedSlashes: PathNormalization['escapedSlashes'], normalizePath = true): PathNormalization => ({ normalizePath, mergeSlashes: false, escapedSlashes });
  assert.equal(normalizeTarget('/a%2Fb', mode('REJECT_REQUEST')), PATH_REJECTED);
  assert.equal(normalizeTarget('/a%5cb', mode('REJECT_REQUEST')), PATH_REJECTED);
  assert.equal(normalizeTarget('/a/b?x=%2F', mode('REJECT_REQUEST')), '/a/b?x=%2F', 'the query is not looked at');
  assert.deepEqual(normalizeTarget('/a%2fb/..%2Fc?q=%2F', mode('UNESCAPE_AND_REDIRECT')), { kind: 'redirect', location: '/a/c?q=%2F' });
  assert.equal(normalizeTarget('/a/../c', mode('UNESCAPE_AND_REDIRECT')), '/c', 'normalization alone forwards');
  assert.equal(normalizeTarget('/a%5Cb', mode('UNESCAPE_AND_FORWARD')), '/a/b');
  assert.equal(normalizeTarget('/a%5Cb', mode('UNESCAPE_AND_FORWARD', false)), '/a\\b');
  assert.equal(normalizeTarget('/%%2Fa/', mode('UNESCAPE_AND_FORWARD', false)), '/%/a/');
  assert.equal(normalizeTarget('/a%2Fb', mode('KEEP_UNCHANGED')), '/a%2Fb');
});

const listener = (hcm: ProtoJson): ProtoJson => ({
  name: 'l', address: { socketAddress: { address: '127.0.0.1', portValue: 9080 } },
  filterChains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typedConfig: {
    '@type': HCM_TYPE, statPrefix: 'l', rds: { configSource: { ads: {} }, routeConfigName: '9080' },
    httpFilters: [{ name: 'envoy.filters.http.router', typedConfig: { '@type': ROUTER_TYPE } }], ...hcm,
  } }] }],
});

const compiled = (hcm: ProtoJson): PathNormalization => {
  const network = compileListener(listener(hcm), 'Listener l').filterChains[0]!.network;
  assert.equal(network.kind, 'http');
  return network.pathNormalization;
};

test("the connection manager's fields compile; absent ones take Envoy's defaults; an unknown action is a NACK", () => {
  assert.deepEqual(compiled({}), NO_PATH_NORMALIZATION);
  // what the pilot sends (Istio's BASE)
  assert.deepEqual(compiled({ normalizePath: true, pathWithEscapedSlashesAction: 'KEEP_UNCHANGED' }), BASE);
  assert.deepEqual(compiled({ normalizePath: true, mergeSlashes: true, pathWithEscapedSlashesAction: 'UNESCAPE_AND_FORWARD' }), DECODE_AND_MERGE_SLASHES);
  assert.deepEqual(compiled({ pathWithEscapedSlashesAction: 'IMPLEMENTATION_SPECIFIC_DEFAULT' }), NO_PATH_NORMALIZATION);
  assert.equal(compiled({ pathWithEscapedSlashesAction: 'UNESCAPE_AND_REDIRECT' }).escapedSlashes, 'UNESCAPE_AND_REDIRECT');
  assert.throws(() => compiled({ pathWithEscapedSlashesAction: 'DECODE_EVERYTHING' }), {
    message: 'Listener l.filterChains[0].filters[0].typedConfig.pathWithEscapedSlashesAction: unsupported action "DECODE_EVERYTHING"',
  });
  assert.throws(() => compiled({ pathWithEscapedSlashesAction: 7 }), /pathWithEscapedSlashesAction: unsupported action 7$/);
});
