// An EnvoyFilter that inserts an HTTP filter the sidecar does not implement, end to end with
// a real `sextant pilot`: the sidecar NACKs the listener update naming the listener and the
// filter, keeps serving its last good config, and `sextant proxy-status` (and the pilot's
// /debug/syncz) show the reason; the same filter marked `is_optional` is ACKed and skipped
// with one warning.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { LISTENER_TYPE } from '../../src/envoy/index.ts';
import { startProxy } from '../../src/proxy/index.ts';
import { send, startBackend } from './helpers/fixtures.ts';
import { spawnPilot, waitFor } from '../helpers/pilot-process.ts';
import { egressSidecar } from '../helpers/istio-yaml.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'sextant.mjs');
const CLIENT_IP = '127.0.46.1';
const PROXY_ID = `sidecar~${CLIENT_IP}~productpage-v1-aaaaa.default~default.svc.cluster.local`;
const LISTENER = `${CLIENT_IP}_9080`;
const BUFFER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer';
const REASON = `Listener ${LISTENER}.filterChains[0].filters[0].typedConfig.httpFilters[2]: ` +
  `HTTP filter "envoy.filters.http.buffer" (${BUFFER_TYPE}) is not supported by this proxy; set is_optional: true to run without it`;

interface TypeStatus { type: string; state: string; versionSent?: string; versionAcked?: string; lastNack?: { message: string; version: string } }
interface SyncStatus { proxy: string; types: TypeStatus[] }

function envoyFilter(optional: boolean): string {
  return `
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: buffer, namespace: default}
spec:
  workloadSelector: {labels: {app: productpage}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_OUTBOUND
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.buffer
${optional ? '        is_optional: true\n' : ''}        typed_config:
          "@type": ${BUFFER_TYPE}
          max_request_bytes: 1024
`;
}

test('an unsupported HTTP filter is NACKed with its listener and name, the last good config serves, proxy-status shows why; is_optional is ACKed', async () => {
  const app = await startBackend('reviews');
  cleanups.push(app.close);
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-filter-nack-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const configDir = path.join(dir, 'config');
  mkdirSync(configDir);
  const write = (file: string, yaml: string): void => {
    // Aside, then renamed into place: the store never reads half a file.
    writeFileSync(path.join(dir, `.${file}.tmp`), yaml);
    renameSync(path.join(dir, `.${file}.tmp`), path.join(configDir, file));
  };
  write('mesh.yaml', `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${app.port}}}]
---
${egressSidecar({ name: 'productpage', bind: CLIENT_IP })}
`);

  const pilot = await spawnPilot({ configDir, cli: CLI, args: ['--debounce-after', '10ms'] });
  cleanups.push(pilot.close);
  const pilotUrl = pilot.url;

  const logLines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'warn' }, new Writable({ write(chunk: Buffer, _enc, done) { logLines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done(); } }));
  const proxy = await startProxy({ xds: pilot.xds, id: PROXY_ID, labels: { app: 'productpage', version: 'v1' }, adminAddress: '127.0.0.1:0', logger, drainMs: 100 });
  cleanups.push(() => proxy.drain(100));
  await proxy.whenReady();
  const request = async (): Promise<number> => (await send(9080, '/reviews/1', { Host: 'reviews.default.svc.cluster.local:9080' }, { host: CLIENT_IP })).status;
  assert.equal(await request(), 200);

  const syncz = async (): Promise<TypeStatus> => {
    const all = (await (await fetch(`${pilotUrl}/debug/syncz?proxy=${encodeURIComponent(PROXY_ID)}`)).json()) as SyncStatus[];
    return all[0]!.types.find((t) => t.type === 'LDS')!;
  };
  const lastLds = () => proxy.xds.history.filter((h) => h.typeUrl === LISTENER_TYPE).at(-1);
  const before = await syncz();
  assert.equal(before.state, 'SYNCED');

  // The filter as Envoy would get it: the sidecar has no buffer filter, so it refuses.
  write('buffer.yaml', envoyFilter(false));
  const nacked = await waitFor('the NACK in proxy status', async () => {
    const s = await syncz();
    return s.state === 'NACKED' ? s : undefined;
  });
  assert.equal(nacked.lastNack?.message, REASON);
  assert.equal(nacked.versionAcked, before.versionAcked, 'the last good listeners are still what the proxy runs');
  assert.deepEqual([lastLds()?.accepted, lastLds()?.error], [false, REASON]);
  assert.ok(proxy.config.listeners.has(LISTENER));
  for (let i = 0; i < 3; i++) assert.equal(await request(), 200, 'the previous routes keep serving (no outage)');

  const status = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [CLI, 'proxy-status', '--pilot', pilotUrl], { encoding: 'utf8' }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }));
  });
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`^${PROXY_ID.replaceAll('.', '\\.')}\\s+DELTA\\s+SYNCED\\s+NACKED\\s+`, 'm'));
  assert.ok(status.stdout.endsWith(`\n\n${PROXY_ID} LDS NACKED version ${nacked.versionSent}: ${REASON}\n`), status.stdout);

  // Marked optional, the filter may be left out: the update is ACKed and the filter skipped.
  write('buffer.yaml', envoyFilter(true));
  const synced = await waitFor('the ACK in proxy status', async () => {
    const s = await syncz();
    return s.state === 'SYNCED' && s.versionAcked !== before.versionAcked ? s : undefined;
  });
  assert.equal(synced.versionAcked, synced.versionSent);
  assert.equal(lastLds()?.accepted, true);
  for (let i = 0; i < 3; i++) assert.equal(await request(), 200, 'the skipped filter changes nothing');
  const skipped = logLines.filter((l) => l['msg'] === 'optional HTTP filter not supported by this proxy; running without it');
  assert.deepEqual(skipped.map((l) => [l['listener'], l['filter'], l['type']]), [[LISTENER, 'envoy.filters.http.buffer', BUFFER_TYPE]]);
});
