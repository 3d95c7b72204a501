// A NACK's error_detail message is kept, logged and shown (syncz, CSDS) whole up to 4096
// characters; a longer one is cut there and followed by its size, so a proxy's megabyte of
// error text costs the pilot 4 KiB per type, not a megabyte per log line and status page.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { openDirectoryStore } from '../../../src/config/file/store.ts';
import { CLUSTER_TYPE, LISTENER_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { startPilot } from '../../../src/pilot/index.ts';
import type { Pilot } from '../../../src/pilot/index.ts';
import { NACK_MESSAGE_MAX_CHARS } from '../../../src/pilot/xds/ads.ts';
import { AdsStream, fetchClientStatus, nodeFor } from './ads-client.ts';
import { quietLogger, serviceEntry, testGenerators } from './fixtures.ts';

let pilot: Pilot;
let dir: string;
const logged: ProtoJson[] = [];
const streams: AdsStream[] = [];

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sextant-pilot-nack-'));
  const store = await openDirectoryStore({ dir, watchFiles: false, logger: quietLogger });
  await store.create(serviceEntry('a', 'a.default.svc.cluster.local', 8080, ['10.0.0.1']));
  const logger = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line) as ProtoJson) });
  pilot = await startPilot({ store, generators: testGenerators, xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', debounceAfterMs: 20, logger });
  await pilot.ready;
});

after(async () => {
  for (const s of streams) s.close();
  await pilot.close();
  rmSync(dir, { recursive: true, force: true });
});

async function lastNack(proxyId: string, type: string): Promise<unknown> {
  for (let i = 0; i < 500; i++) {
    const status = (await (await fetch(`http://${pilot.httpAddress}/debug/syncz`)).json()) as ProtoJson[];
    const types = (status.find((s) => s['proxy'] === proxyId)?.['types'] ?? []) as ProtoJson[];
    const st = types.find((x) => x['type'] === type);
    if (st?.['state'] === 'NACKED') return (st['lastNack'] as ProtoJson)['message'];
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${type} never became NACKED`);
}

async function csdsDetails(proxyId: string, typeUrl: string): Promise<unknown> {
  const csds = await fetchClientStatus(pilot.xdsAddress, proxyId);
  const configs = (csds['config'] as ProtoJson[])[0]!['genericXdsConfigs'] as ProtoJson[];
  return (configs.find((g) => g['typeUrl'] === typeUrl)!['errorState'] as ProtoJson)['details'];
}

function loggedErrors(proxyId: string): unknown[] {
  return logged.filter((e) => e['msg'] === 'xDS response rejected (NACK)' && e['proxy'] === proxyId).map((e) => e['error']);
}

test('a NACK message of up to 4096 characters is kept, logged and shown whole; a longer one cut, with its size', async () => {
  assert.equal(NACK_MESSAGE_MAX_CHARS, 4096);
  const node = nodeFor('nacker-big');
  const id = String(node['id']);
  const s = new AdsStream(pilot.xdsAddress, 'sotw');
  streams.push(s);

  // At the bound: whole.
  const whole = `Error adding/updating listener(s) 0.0.0.0_8080: ${'x'.repeat(4096 - 48)}`;
  assert.equal(whole.length, 4096);
  s.send({ node, typeUrl: LISTENER_TYPE });
  const lds = await s.next();
  s.send({ typeUrl: LISTENER_TYPE, versionInfo: '', responseNonce: lds['nonce'], errorDetail: { code: 3, message: whole } });
  assert.equal(await lastNack(id, 'LDS'), whole);
  assert.equal(await csdsDetails(id, LISTENER_TYPE), whole);

  // Beyond it: the first 4096 characters, never half a surrogate pair, then "… (N bytes)".
  const long = `Error adding/updating cluster(s) ${'c'.repeat(4062)}😀${'é'.repeat(100_000)}`;
  const cut = `Error adding/updating cluster(s) ${'c'.repeat(4062)}… (${4095 + 4 + 200_000} bytes)`;
  s.send({ typeUrl: CLUSTER_TYPE });
  const cds = await s.next();
  s.send({ typeUrl: CLUSTER_TYPE, versionInfo: '', responseNonce: cds['nonce'], errorDetail: { code: 3, message: long } });
  assert.equal(await lastNack(id, 'CDS'), cut);
  assert.equal(await csdsDetails(id, CLUSTER_TYPE), cut);

  assert.deepEqual(loggedErrors(id), [whole, cut]);
});

test('a NACK with only a code is recorded as the code', async () => {
  const node = nodeFor('nacker-code');
  const id = String(node['id']);
  const s = new AdsStream(pilot.xdsAddress, 'sotw');
  streams.push(s);
  s.send({ node, typeUrl: LISTENER_TYPE });
  const lds = await s.next();
  s.send({ typeUrl: LISTENER_TYPE, versionInfo: '', responseNonce: lds['nonce'], errorDetail: { code: 13 } });
  assert.equal(await lastNack(id, 'LDS'), 'code 13');
  assert.deepEqual(loggedErrors(id), ['code 13']);
});
