// Access-log filters: the CEL expressions Istio's Telemetry `filter.expression` produces (the
// common ones run, anything else is refused naming the expression and what is supported) and
// Envoy's own status, flag, duration and and/or filters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileCel, compileLogFilter } from '../../../src/proxy/telemetry/log-filter.ts';
import { compileAccessLogs } from '../../../src/proxy/telemetry/access-log.ts';
import type { AccessLogRecord } from '../../../src/proxy/telemetry/access-log.ts';

function record(over: Partial<AccessLogRecord> = {}): AccessLogRecord {
  return {
    startTime: 0, method: 'GET', path: '/orders/7?x=1', originalPath: undefined, protocol: 'HTTP/1.1', responseCode: 200,
    responseFlags: '-', responseCodeDetails: 'via_upstream', bytesReceived: 0, bytesSent: 10, durationMs: 5,
    upstreamServiceTimeMs: undefined, xForwardedFor: undefined, userAgent: 'curl/8', requestId: 'r', authority: 'orders:8080',
    upstreamHost: '127.0.1.9:8080', upstreamCluster: 'outbound|8080||orders.default.svc.cluster.local', upstreamLocalAddress: undefined,
    upstreamTransportFailureReason: undefined, downstreamLocalAddress: '127.0.2.1:8080', downstreamRemoteAddress: '127.0.0.1:40000',
    routeName: undefined, requestHeader: (n) => (n === 'x-tenant' ? 'blue' : undefined),
    ...over,
  };
}

const cases: [string, Partial<AccessLogRecord>, boolean][] = [
  ['response.code >= 400', { responseCode: 404 }, true],
  ['response.code >= 400', { responseCode: 200 }, false],
  ['response.code == 404', { responseCode: 404 }, true],
  ['response.code == 404', { responseCode: 503 }, false],
  ['response.flags != "-"', { responseFlags: 'NR' }, true],
  ['response.flags != "-"', { responseFlags: '-' }, false],
  ['response.flags != 0', { responseFlags: 'UF,URX' }, true],
  ['response.flags == 0', { responseFlags: '-' }, true],
  ['response.flags == "NR"', { responseFlags: 'NR' }, true],
  ['response.flags == "NR"', { responseFlags: 'UH' }, false],
  ['request.path.startsWith("/orders/")', {}, true],
  ['request.path.startsWith("/items/")', {}, false],
  ['request.url_path == "/orders/7"', {}, true],
  ['response.code >= 500 || response.flags != "-"', { responseCode: 404, responseFlags: 'NR' }, true],
  ['response.code >= 500 || response.flags != "-"', { responseCode: 404 }, false],
  ['response.code >= 400 && request.method == "POST"', { responseCode: 404 }, false],
  ['response.code >= 400 && request.method == "GET"', { responseCode: 404 }, true],
  ['!(response.code < 400) && (request.path.contains("orders") || request.host == "x")', { responseCode: 500 }, true],
  ["request.headers['x-tenant'] == 'blue'", {}, true],
  ['response.code_details == "route_not_found"', { responseCodeDetails: 'route_not_found' }, true],
  ['xds.cluster_name.endsWith("orders.default.svc.cluster.local")', {}, true],
  ['request.path.matches("^/orders/[0-9]+")', {}, true],
  ['source.address == "127.0.0.1" && destination.port == 8080', {}, true],
  ['connection.mtls', { downstreamPeerUriSan: 'spiffe://cluster.local/ns/default/sa/x' }, true],
];

test('the common CEL expressions: comparisons, flags, string methods, && || ! and parentheses', () => {
  for (const [expr, over, want] of cases) {
    assert.equal(compileCel(expr, 'f')(record(over)), want, `${expr} on ${JSON.stringify(over)}`);
  }
});

test('expressions outside the subset are refused with the expression and the reason', () => {
  const refused: [string, RegExp][] = [
    ['response.total_size > 10', /"response.total_size > 10": unsupported attribute response.total_size/],
    ['response.code >= "4xx"', /cannot compare a int with a string/],
    ['response.code', /the expression is not a condition/],
    ['size(request.path) > 3', /unsupported function size\(\)/],
    ['request.path.lowerAscii() == "/"', /lowerAscii\(\) takes one string literal|unsupported method/],
    ['response.flags > 0', /response.flags compares only with == or !=/],
    ['response.code >= 400 &&', /unexpected end of expression/],
    ['request.path.matches("(")', /invalid regular expression/],
    ['', /empty expression/],
  ];
  for (const [expr, re] of refused) assert.throws(() => compileCel(expr, 'Listener l.accessLog[0].filter'), re, expr);
  assert.throws(() => compileCel('response.size()', 'at'), /^ConfigError: at: "response.size\(\)": /);
});

test("Envoy's own filters: status code, response flags (any or listed), duration, and/or", () => {
  const f = compileLogFilter({ orFilter: { filters: [
    { statusCodeFilter: { comparison: { op: 'GE', value: { defaultValue: 500, runtimeKey: '' } } } },
    { andFilter: { filters: [{ responseFlagFilter: { flags: ['NR', 'UH'] } }, { durationFilter: { comparison: { op: 'LE', value: { defaultValue: 100 } } } }] } },
  ] } }, 'f')!;
  assert.equal(f(record({ responseCode: 503 })), true);
  assert.equal(f(record({ responseCode: 404, responseFlags: 'NR' })), true);
  assert.equal(f(record({ responseCode: 404, responseFlags: 'NR', durationMs: 500 })), false);
  assert.equal(f(record({ responseCode: 503, responseFlags: 'UF' })), true);
  assert.equal(f(record({ responseCode: 200, responseFlags: 'UF' })), false);
  const any = compileLogFilter({ responseFlagFilter: {} }, 'f')!;
  assert.equal(any(record({ responseFlags: 'DC' })), true);
  assert.equal(any(record()), false);
  assert.throws(() => compileLogFilter({ runtimeFilter: { runtimeKey: 'x' } }, 'L.accessLog[0].filter'), /L.accessLog\[0\].filter.runtimeFilter: access log filter runtimeFilter is not supported by this proxy/);
  assert.throws(() => compileLogFilter({ responseFlagFilter: { flags: ['XX'] } }, 'f'), /f.responseFlagFilter.flags\[0\]: unknown response flag "XX"/);
  assert.throws(() => compileLogFilter({ statusCodeFilter: { comparison: { value: { defaultValue: 1, runtimeKey: 'k' } } } }, 'f'), /runtime values are not supported/);
});

test('an access log with a filter logs only what it accepts; an unknown logger type is refused', () => {
  const specs = compileAccessLogs([{
    name: 'envoy.access_loggers.file',
    filter: { extensionFilter: { name: 'envoy.access_loggers.extension_filters.cel', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter', expression: 'response.code == 404' } } },
    typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog', path: '/dev/null' },
  }], 'Listener l.hcm.accessLog');
  assert.equal(specs.length, 1);
  assert.equal(specs[0]!.filter!(record({ responseCode: 404 })), true);
  assert.equal(specs[0]!.filter!(record({ responseCode: 200 })), false);
  assert.throws(() => compileAccessLogs([{ name: 'otel', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig' } }], 'Listener l.hcm.accessLog'),
    /Listener l.hcm.accessLog\[0\].typedConfig: access logger "type.googleapis.com\/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig" is not supported by this proxy/);
  assert.throws(() => compileAccessLogs([{ name: 'x', filter: { extensionFilter: { typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter', expression: 'response.headers["a"] == "b"' } } }, typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog', path: '/dev/null' } }], 'L'),
    /L\[0\].filter.extensionFilter.typedConfig.expression: .*response.headers is not supported/);
});
