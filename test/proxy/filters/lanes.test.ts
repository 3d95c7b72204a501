// The lanes filter on its own: the trace table's bound and expiry, trace ids in every format,
// lane carriers read, written and stripped, the outbound order (header, carrier, trace id, own
// lane, baseline), the inbound side (recording, minting a traceparent, stripping untrusted
// callers), the response headers and the bounded counters.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RawHeader } from '../../../src/proxy/http/index.ts';
import {
  LaneState, TraceTable, carrierLane, compileLanes, decodeInbound, decodeOutbound, encodeLane, laneRequest, markMeshPeer, stripCarriers, traceKeys, writeCarriers,
} from '../../../src/proxy/filters/lanes/index.ts';
import type { LaneFilter } from '../../../src/proxy/filters/lanes/index.ts';

const h = (pairs: Record<string, string>): RawHeader[] => Object.entries(pairs).map(([name, value]) => ({ name, value }));
const get = (headers: readonly RawHeader[], name: string): string | undefined => headers.find((x) => x.name.toLowerCase() === name)?.value;

function filter(direction: 'inbound' | 'outbound', ownLane = 'baseline', extra: Record<string, unknown> = {}): LaneFilter {
  return compileLanes({ value: { direction, ownLane, baseline: 'baseline', lanes: ['s2', 's2.alice', 's3'], strictHosts: ['c.default.svc.cluster.local'], traceTable: { maxEntries: 100, ttlMs: 60_000 }, trustedSources: ['10.1.0.0/16'], ...extra } }, 'f');
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const TP = `00-${TRACE}-00f067aa0ba902b7-01`;

describe('trace table', () => {
  test('bounded: the least recently written ids go first; expired ids are never read', () => {
    const t = new TraceTable(3, 1000);
    t.record(['a'], { lane: 's2', originDc: undefined }, 0);
    t.record(['b', 'c'], { lane: 's3', originDc: undefined }, 0);
    t.record(['a'], { lane: 's2', originDc: undefined }, 10); // rewritten: now the newest
    t.record(['d'], { lane: 's2', originDc: undefined }, 20);
    assert.equal(t.size, 3);
    assert.equal(t.evictions, 1);
    assert.equal(t.get('b', 30), undefined);
    assert.equal(t.get('c', 30)?.lane, 's3');
    assert.equal(t.get('a', 1009)?.lane, 's2');
    assert.equal(t.get('a', 1010), undefined, 'expired');
    t.resize(1, 1000);
    assert.equal(t.size, 1);
  });
});

describe('trace ids', () => {
  test('every format, one namespace for hex ids, in lookup order', () => {
    assert.deepEqual(traceKeys(h({ 'x-request-id': 'r-1', traceparent: TP })), [`t:${TRACE}`, 'rid:r-1']);
    // B3 multi and single headers, 64-bit ids zero-padded; the same trace as a traceparent is one key
    assert.deepEqual(traceKeys(h({ 'X-B3-TraceId': 'a3ce929d0e0e4736' })), ['t:0000000000000000a3ce929d0e0e4736']);
    assert.deepEqual(traceKeys(h({ b3: `${TRACE}-00f067aa0ba902b7-1`, traceparent: TP })), [`t:${TRACE}`]);
    assert.deepEqual(traceKeys(h({ sw8: '1-YWJjLjEyMy4x-c2VnLjE=-3-c2Vydg==-aW5zdA==-L2FwaQ==-aG9zdDo4MA==' })), ['sw:YWJjLjEyMy4x']);
    assert.deepEqual(traceKeys(h({ 'uber-trace-id': 'a3ce929d0e0e4736%3A00f067aa0ba902b7%3A0%3A1' })), ['t:0000000000000000a3ce929d0e0e4736']);
    // Datadog's decimal id is the low 64 bits of the same trace
    assert.deepEqual(traceKeys(h({ 'x-datadog-trace-id': BigInt('0xa3ce929d0e0e4736').toString() })), ['t:0000000000000000a3ce929d0e0e4736']);
    assert.deepEqual(traceKeys(h({ traceparent: `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`, 'x-b3-traceid': 'nothex' })), []);
  });
});

describe('carriers', () => {
  test('the lane key in baggage, tracestate, sw8-correlation, uberctx-, ot-baggage-', () => {
    assert.equal(carrierLane(h({ baggage: 'userId=alice,sextant-lane=s2;ttl=1' })), 's2');
    assert.equal(carrierLane(h({ tracestate: 'congo=t61rcWkgMzE,sextant-lane=s3' })), 's3');
    assert.equal(carrierLane(h({ 'sw8-correlation': `${Buffer.from('sextant-lane').toString('base64')}:${Buffer.from('s2.alice').toString('base64')}` })), 's2.alice');
    assert.equal(carrierLane(h({ 'uberctx-sextant-lane': 's2' })), 's2');
    assert.equal(carrierLane(h({ 'ot-baggage-sextant-lane': 's3' })), 's3');
    assert.equal(carrierLane(h({ baggage: 'sextant-lanes=s2' })), undefined);
  });

  test('written where the app\'s tracer will forward them; stripped from untrusted callers', () => {
    const headers = h({ traceparent: TP, baggage: 'userId=alice,sextant-lane=s9', sw8: '1-YQ==-Yg==-1-c-d-e-f', 'uber-trace-id': 'a:b:0:1' });
    writeCarriers(headers, 's2');
    assert.equal(get(headers, 'baggage'), 'userId=alice,sextant-lane=s2');
    assert.equal(get(headers, 'tracestate'), 'sextant-lane=s2');
    assert.equal(get(headers, 'sw8-correlation'), `${Buffer.from('sextant-lane').toString('base64')}:${Buffer.from('s2').toString('base64')}`);
    assert.equal(get(headers, 'uberctx-sextant-lane'), 's2');
    assert.equal(get(headers, 'ot-baggage-sextant-lane'), undefined, 'no OpenTracing id: not written');
    const stripped = stripCarriers(headers);
    assert.equal(carrierLane(stripped), undefined);
    assert.equal(get(stripped, 'baggage'), 'userId=alice');
    assert.equal(get(stripped, 'tracestate'), undefined);
  });
});

describe('outbound: the lane of a request', () => {
  test('header, then carrier, then trace id, then own lane, then baseline; the lane header is set (or removed)', () => {
    const state = new LaneState(100, 60_000);
    const f = filter('outbound');
    const byHeader = decodeOutbound(f, state, h({ 'x-sextant-lane': 's3', baggage: 'sextant-lane=s2' }));
    assert.deepEqual([byHeader.decision.lane, byHeader.decision.reason, get(byHeader.headers, 'x-sextant-lane')], ['s3', 'header', 's3']);
    const byCarrier = decodeOutbound(f, state, h({ baggage: 'sextant-lane=s2' }));
    assert.deepEqual([byCarrier.decision.lane, byCarrier.decision.reason, get(byCarrier.headers, 'x-sextant-lane')], ['s2', 'carrier', 's2']);
    state.table.record([`t:${TRACE}`], { lane: 's2.alice', originDc: undefined });
    const byTrace = decodeOutbound(f, state, h({ traceparent: `00-${TRACE}-1111111111111111-01` }));
    assert.deepEqual([byTrace.decision.lane, byTrace.decision.reason, get(byTrace.headers, 'x-sextant-lane')], ['s2.alice', 'trace', 's2.alice']);
    const own = decodeOutbound(filter('outbound', 's3'), state, h({ traceparent: `00-${'1'.repeat(32)}-1111111111111111-01` }));
    assert.deepEqual([own.decision.lane, own.decision.reason], ['s3', 'own']);
    const none = decodeOutbound(f, state, h({}));
    assert.deepEqual([none.decision.lane, none.decision.reason, get(none.headers, 'x-sextant-lane')], ['baseline', 'baseline', undefined]);
    // a lane not declared counts as the baseline: the header goes
    const undeclared = decodeOutbound(f, state, h({ 'x-sextant-lane': 's9' }));
    assert.deepEqual([undeclared.decision.lane, undeclared.decision.reason, get(undeclared.headers, 'x-sextant-lane')], ['baseline', 'header', undefined]);
  });

  test('a proxy in a data centre restores the first hop\'s data centre from the trace table', () => {
    const state = new LaneState(100, 60_000);
    state.table.record([`t:${TRACE}`], { lane: undefined, originDc: 'sh/dc-b' });
    const f = filter('outbound', 'baseline', { dataCentre: 'sh/dc-a' });
    assert.equal(get(decodeOutbound(f, state, h({ traceparent: TP })).headers, 'x-sextant-origin-dc'), 'sh/dc-b');
    assert.equal(get(decodeOutbound(f, state, h({ traceparent: TP, 'x-sextant-origin-dc': 'x' })).headers, 'x-sextant-origin-dc'), 'x');
  });
});

describe('inbound: recording and carriers', () => {
  test('a laned request is recorded under its trace ids and written into the carriers the app gets', () => {
    const state = new LaneState(100, 60_000);
    const f = filter('inbound', 's2');
    const r = decodeInbound(f, state, h({ 'x-sextant-lane': 's2', traceparent: TP, 'x-request-id': 'abc' }), true);
    assert.deepEqual([r.decision.lane, r.decision.reason], ['s2', 'header']);
    assert.equal(state.table.get(`t:${TRACE}`)?.lane, 's2');
    assert.equal(state.table.get('rid:abc')?.lane, 's2');
    assert.equal(get(r.headers, 'baggage'), 'sextant-lane=s2');
    // no trace id: a traceparent is minted so that a tracer can carry the trace on
    const minted = decodeInbound(f, state, h({ 'x-sextant-lane': 's3' }), true);
    const tp = get(minted.headers, 'traceparent')!;
    assert.match(tp, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    assert.equal(state.table.get(`t:${tp.slice(3, 35)}`)?.lane, 's3');
    // a baseline request is not recorded
    const before = state.table.size;
    decodeInbound(f, state, h({ traceparent: `00-${'2'.repeat(32)}-1111111111111111-01` }), true);
    assert.equal(state.table.size, before);
  });

  test('an untrusted caller\'s lane header and carriers are stripped; mesh peers, principals and trusted ranges keep theirs', () => {
    const state = new LaneState(100, 60_000);
    const f = filter('inbound');
    const req = { remoteAddress: '192.0.2.1' };
    const stripped = laneRequest({ filter: f, state }, req, h({ 'x-sextant-lane': 's2', baggage: 'sextant-lane=s2', 'x-sextant-origin-dc': 'forged' }));
    assert.deepEqual([stripped.decision.lane, get(stripped.headers, 'x-sextant-lane'), get(stripped.headers, 'baggage'), get(stripped.headers, 'x-sextant-origin-dc')], ['baseline', undefined, undefined, undefined]);
    assert.equal(laneRequest({ filter: f, state }, { remoteAddress: '10.1.2.3' }, h({ 'x-sextant-lane': 's2' })).decision.lane, 's2');
    assert.equal(laneRequest({ filter: f, state }, { remoteAddress: '192.0.2.1', peerPrincipal: 'spiffe://cluster.local/ns/default/sa/a' }, h({ 'x-sextant-lane': 's2' })).decision.lane, 's2');
    const peer = { remoteAddress: '192.0.2.1' };
    markMeshPeer(peer);
    assert.equal(laneRequest({ filter: f, state }, peer, h({ 'x-sextant-lane': 's2' })).decision.lane, 's2');
  });
});

describe('responses', () => {
  test('inbound names the lane that served; outbound says why, counts, and names a strict lane\'s missing service', () => {
    const state = new LaneState(100, 60_000);
    const inbound = decodeInbound(filter('inbound', 's2'), state, h({ 'x-sextant-lane': 's2.alice' }), true);
    assert.deepEqual(encodeLane(inbound.decision, h({ 'x-sextant-served-lane': 'spoofed' }), 200, 'inbound|9080||'), h({ 'x-sextant-served-lane': 's2' }));
    const out = decodeOutbound(filter('outbound'), state, h({ 'x-sextant-lane': 's2' }));
    assert.deepEqual(encodeLane(out.decision, h({ 'x-sextant-served-lane': 'baseline' }), 200, 'outbound|9080|lane~s2|b.default.svc.cluster.local'), h({
      'x-sextant-served-lane': 'baseline', 'x-sextant-requested-lane': 's2', 'x-sextant-lane-reason': 'header',
    }));
    const miss = encodeLane(out.decision, h({}), 503, 'outbound|9080|lane~s2|c.default.svc.cluster.local');
    assert.equal(get(miss, 'x-sextant-lane-miss'), 'c.default.svc.cluster.local');
    encodeLane(out.decision, h({ 'x-sextant-served-lane': 'no-such-lane' }), 200, 'outbound|9080|lane~s2|b.default.svc.cluster.local');
    assert.match(state.expose(), /sextant_lane_requests_total\{lane="s2",served_lane="baseline",reason="header"\} 1\n/);
    assert.match(state.expose(), /sextant_lane_requests_total\{lane="s2",served_lane="unknown",reason="header"\} 1\n/);
    assert.match(state.expose(), /sextant_lane_requests_total\{lane="s2",served_lane="other",reason="header"\} 1\n/);
  });

  test('config errors name the field', () => {
    assert.throws(() => compileLanes({ value: { direction: 'sideways' } }, 'L'), /L\.value\.direction: expected inbound or outbound/);
    assert.throws(() => compileLanes({ value: { direction: 'inbound', traceTable: { maxEntries: 0 } } }, 'L'), /L\.value\.traceTable\.maxEntries: expected 1\.\.1000000/);
    assert.throws(() => compileLanes({ value: { direction: 'inbound', trustedSources: ['nope'] } }, 'L'), /L\.value\.trustedSources\[0\]/);
  });
});
