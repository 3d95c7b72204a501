// Benchmark (not a test): what the access-log stream costs and how fast the sink takes it in.
//
// 1. Sidecar throughput with ALS on and off, in the same run: a real pilot (its sink writing
//    node:sqlite) and two client sidecars in front of one origin, configured from Istio YAML, one
//    selected by a Telemetry with the built-in `sextant` provider (every request streamed to the
//    pilot), the other by none. wrk rounds alternate between them (median of the rounds, each
//    after one unmeasured second); both sidecars' drops are read after the runs.
// 2. Sink ingest: entries from several ALS streams (HTTPAccessLogEntry batches as the proxy
//    encodes them) into the pilot's AccessLogSink, writing node:sqlite, then PostgreSQL (Debian's,
//    started here, durable commits); entries/s from the first entry sent to the last one stored.
//
//   node bench/als.ts [--rounds 5] [--round-seconds 3] [--connections 16] [--entries 200000] [--streams 4] [--only throughput|ingest]
//
// Writes bench/results/als.json (full runs only).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { encodeMessage, messageType } from '../src/envoy/index.ts';
import { HTTP_ACCESS_LOG_ENTRY, STREAM_ACCESS_LOGS_METHOD } from '../src/envoy/access-log.ts';
import { compileGrpcAccessLog, encodeHttpEntry } from '../src/proxy/telemetry/als.ts';
import type { AccessLogRecord } from '../src/proxy/telemetry/access-log.ts';
import { AccessLogSink } from '../src/telemetry/sink.ts';
import { PostgresLogStore, SqliteLogStore } from '../src/telemetry/index.ts';
import type { LogStore } from '../src/telemetry/index.ts';
import { egressSidecar } from '../test/helpers/istio-yaml.ts';
import { freePort } from '../test/helpers/ports.ts';
import { postgresUnavailableReason, startPostgres } from '../test/helpers/postgres.ts';
import { pilotRun, sample, sidecar } from '../test/e2e/access-log-helpers.ts';
import { median, processCpuSeconds } from './proc.ts';

const argv = process.argv.slice(2);
const arg = (name: string, dflt: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const ROUNDS = Number(arg('rounds', '5'));
const ROUND_SECONDS = Number(arg('round-seconds', '3'));
const CONNECTIONS = Number(arg('connections', '16'));
const ENTRIES = Number(arg('entries', '200000'));
const STREAMS = Number(arg('streams', '4'));
const ONLY = arg('only', '');
const root = path.resolve(import.meta.dirname, '..');
const work = mkdtempSync(path.join(tmpdir(), 'sextant-bench-als-'));
const logger = pino({ level: 'silent' });

interface Wrk { rps: number; requests: number; p50Ms: number; p99Ms: number; errors: number; cpuMicrosEach?: number }

function parseMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v);
  if (m === null) return NaN;
  return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1);
}

/** wrk as a child process, not spawnSync: the origin runs in this process and must keep answering. */
async function wrk(url: string, host: string, seconds: number): Promise<Wrk> {
  const child = spawn('wrk', ['-t', '1', '-c', String(CONNECTIONS), '-d', `${seconds}s`, '--latency', '-H', `Host: ${host}`, url]);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`wrk failed: ${err}`);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN),
    p50Ms: parseMs(/^\s+50%\s+(\S+)$/m.exec(out)?.[1] ?? ''),
    p99Ms: parseMs(/^\s+99%\s+(\S+)$/m.exec(out)?.[1] ?? ''),
    errors: non2xx + (sock === null ? 0 : sock.slice(1).reduce((a, b) => a + Number(b), 0)),
  };
}

async function throughput(): Promise<Record<string, unknown>> {
  const HOST = 'orders.default.svc.cluster.local';
  const ORIGIN_IP = '127.0.63.9';
  const ON_IP = '127.0.63.2';
  const OFF_IP = '127.0.63.3';
  const PORT = 8080;
  const origin = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'));
  await new Promise<void>((r) => origin.listen(PORT, ORIGIN_IP, r));
  const configDir = path.join(work, 'config');
  mkdirSync(configDir);
  writeFileSync(path.join(configDir, 'mesh.yaml'), `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: als-on, namespace: default}
spec:
  selector: {matchLabels: {app: client-als}}
  accessLogging:
  - providers: [{name: sextant}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: default}
spec:
  hosts: [${HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  endpoints: [{address: ${ORIGIN_IP}}]
---
${egressSidecar({ name: 'client-als', bind: ON_IP, port: PORT })}
---
${egressSidecar({ name: 'client-plain', bind: OFF_IP, port: PORT })}
`);
  const pilot = await pilotRun(configDir, path.join(work, 'access-log.db'));
  const on = await sidecar(pilot.xds, ON_IP, 'client-als-v1', { app: 'client-als' });
  const off = await sidecar(pilot.xds, OFF_IP, 'client-plain-v1', { app: 'client-plain' });
  try {
    const targets = { off: `http://${OFF_IP}:${PORT}/`, on: `http://${ON_IP}:${PORT}/` } as const;
    const rounds: Record<'on' | 'off', Wrk[]> = { on: [], off: [] };
    /** The pilot's CPU per request of the ALS sidecar (its sink: decode, names, store). */
    const pilotCpu: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      // alternate which goes first, so neither always follows the other's garbage
      for (const name of (r % 2 === 0 ? ['off', 'on'] : ['on', 'off']) as ('on' | 'off')[]) {
        await wrk(targets[name], `${HOST}:${PORT}`, 1);
        const pid = (name === 'on' ? on : off).pid;
        const cpu0 = processCpuSeconds(pid);
        const pilotCpu0 = processCpuSeconds(pilot.proc!.child.pid!);
        const w = await wrk(targets[name], `${HOST}:${PORT}`, ROUND_SECONDS);
        w.cpuMicrosEach = ((processCpuSeconds(pid) - cpu0) * 1e6) / w.requests;
        if (name === 'on') pilotCpu.push(((processCpuSeconds(pilot.proc!.child.pid!) - pilotCpu0) * 1e6) / w.requests);
        rounds[name].push(w);
      }
    }
    // every entry of the ALS sidecar reaches the store (or is counted as dropped)
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && sample(await on.stats(), 'sextant_accesslog_buffered') > 0) await new Promise((r) => setTimeout(r, 200));
    const onStats = await on.stats();
    const pilotMetrics = await pilot.metrics();
    const summary = (list: Wrk[]) => ({ rps: Math.round(median(list.map((w) => w.rps))), sidecarCpuMicrosEach: Math.round(median(list.map((w) => w.cpuMicrosEach ?? NaN)) * 10) / 10, p50Ms: median(list.map((w) => w.p50Ms)), p99Ms: median(list.map((w) => w.p99Ms)), errors: list.reduce((a, w) => a + w.errors, 0), rounds: list.map((w) => Math.round(w.rps)) });
    const off_ = summary(rounds.off);
    const on_ = summary(rounds.on);
    return {
      connections: CONNECTIONS, rounds: ROUNDS, roundSeconds: ROUND_SECONDS,
      alsOff: off_,
      alsOn: { ...on_, sent: sample(onStats, 'sextant_accesslog_sent_total'), dropped: sample(onStats, 'sextant_accesslog_dropped_total') },
      throughputChangePercent: Math.round((on_.rps / off_.rps - 1) * 1000) / 10,
      sidecarCpuChangePercent: Math.round((on_.sidecarCpuMicrosEach / off_.sidecarCpuMicrosEach - 1) * 1000) / 10,
      pilotCpuMicrosPerEntry: Math.round(median(pilotCpu) * 10) / 10,
      sink: { received: sample(pilotMetrics, 'sextant_accesslog_sink_received_total'), stored: sample(pilotMetrics, 'sextant_accesslog_sink_stored_total'), dropped: sample(pilotMetrics, 'sextant_accesslog_sink_dropped_total') },
    };
  } finally {
    await on.kill();
    await off.kill();
    await pilot.stop();
    origin.close();
  }
}

function record(i: number): AccessLogRecord {
  const status = i % 20 === 0 ? 404 : i % 50 === 0 ? 503 : 200;
  return {
    startTime: Date.now() - 60_000 + (i % 60_000), method: i % 5 === 0 ? 'POST' : 'GET', path: `/orders/${i % 5000}/items?page=${i % 7}`, originalPath: undefined,
    protocol: 'HTTP/1.1', responseCode: status, responseFlags: status === 503 ? 'UF,URX' : '-', responseCodeDetails: status === 503 ? 'upstream_reset_before_response_started' : 'via_upstream',
    bytesReceived: 120, bytesSent: 800, durationMs: 3 + (i % 40), upstreamServiceTimeMs: 2, xForwardedFor: undefined, userAgent: 'bench', requestId: `r-${i}`,
    authority: 'orders.default.svc.cluster.local:8080', upstreamHost: `127.0.1.${10 + (i % 4)}:8080`, upstreamCluster: 'outbound|8080||orders.default.svc.cluster.local',
    upstreamLocalAddress: undefined, upstreamTransportFailureReason: undefined, downstreamLocalAddress: '127.0.2.2:8080', downstreamRemoteAddress: '127.0.0.1:40000',
    routeName: undefined, requestHeader: () => undefined,
    upstreamPeer: { name: `orders-v${1 + (i % 4)}`, namespace: 'default', canonicalService: 'orders', canonicalRevision: 'v1', cluster: 'Kubernetes' },
  };
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) { out.push((n & 0x7f) | 0x80); n = Math.floor(n / 128); }
  out.push(n);
  return out;
}

/** StreamAccessLogsMessage batches of 1,000 entries per stream, the identifier on each stream's first. */
function messages(stream: number, entries: Uint8Array[]): Buffer[] {
  const node = { id: `sidecar~127.0.1.${2 + stream}~client-v1-abcde.default~default.svc.cluster.local`, metadata: { NAMESPACE: 'default', WORKLOAD_NAME: `client-${stream}`, INSTANCE_IPS: `127.0.1.${2 + stream}` } };
  const ident = Buffer.from(encodeMessage('envoy.service.accesslog.v3.StreamAccessLogsMessage.Identifier', { node, logName: 'sextant' }));
  const out: Buffer[] = [];
  for (let i = 0; i < entries.length; i += 1000) {
    const parts: Buffer[] = [];
    for (const e of entries.slice(i, i + 1000)) parts.push(Buffer.from([0x0a, ...varint(e.length)]), Buffer.from(e));
    const body = Buffer.concat(parts);
    out.push(Buffer.concat([...(i === 0 ? [Buffer.from([0x0a, ...varint(ident.length)]), ident] : []), Buffer.from([0x12, ...varint(body.length)]), body]));
  }
  return out;
}

async function ingest(store: LogStore, encoded: Uint8Array[][]): Promise<Record<string, unknown>> {
  const sink = new AccessLogSink({ store, logger });
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  sink.register(server);
  const port = await freePort();
  await new Promise<void>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  const batches = encoded.map((entries, s) => messages(s, entries));
  const total = encoded.reduce((a, e) => a + e.length, 0);
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 5000, (e) => (e ? reject(e) : resolve())));
  const started = performance.now();
  const calls = batches.map((list) => new Promise<void>((resolve) => {
    const call = client.makeClientStreamRequest<Buffer, Buffer>(STREAM_ACCESS_LOGS_METHOD, (b) => b, (b) => b, () => resolve());
    let i = 0;
    const write = (): void => {
      while (i < list.length) if (!call.write(list[i++]!)) { call.once('drain', write); return; }
      call.end();
    };
    write();
  }));
  await Promise.all(calls);
  await sink.drained();
  while (sink.stats().stored + sink.stats().dropped < total) { await new Promise((r) => setTimeout(r, 5)); await sink.drained(); }
  const seconds = (performance.now() - started) / 1000;
  const st = sink.stats();
  await sink.close();
  client.close();
  server.forceShutdown();
  return { entries: total, streams: encoded.length, seconds: Math.round(seconds * 100) / 100, entriesPerSecond: Math.round(st.stored / seconds), stored: st.stored, dropped: st.dropped, rows: (await store.stats()).rows };
}

/** The sink's own work per entry (decode, names, origin, operation), without a store: µs each. */
function convertCost(entries: Uint8Array[]): number {
  const type = messageType(HTTP_ACCESS_LOG_ENTRY);
  const sink = new AccessLogSink({ store: undefined as unknown as LogStore, logger });
  const node = { id: 'sidecar~127.0.1.2~client-v1-abcde.default~default.svc.cluster.local', type: 'sidecar', ip: '127.0.1.2', workload: 'client-v1', namespace: 'default' };
  let n = 0;
  const started = performance.now();
  for (let round = 0; round < 3; round++) {
    for (const e of entries) {
      sink.entryOf(type.decode(e) as unknown as Record<string, unknown>, node);
      n++;
    }
  }
  const micros = ((performance.now() - started) * 1000) / n;
  void sink.close();
  return Math.round(micros * 10) / 10;
}

async function ingestAll(): Promise<Record<string, unknown>> {
  const per = Math.ceil(ENTRIES / STREAMS);
  const spec = compileGrpcAccessLog({ commonConfig: { logName: 'sextant', grpcService: { envoyGrpc: { clusterName: 'xds-grpc' } }, filterStateObjectsToLog: ['upstream_peer', 'downstream_peer'], customTags: [{ tag: 'reporter', literal: { value: 'source' } }] } }, 'bench');
  const encoded = Array.from({ length: STREAMS }, (_, s) => Array.from({ length: per }, (_, i) => encodeHttpEntry(spec, record(s * per + i))));
  const out: Record<string, unknown> = {};
  out['sinkCpuMicrosEach'] = convertCost(encoded[0]!.slice(0, 20_000));
  const sqlite = new SqliteLogStore({ path: path.join(work, 'ingest.db'), retentionIntervalMs: 0 });
  try {
    out['sqlite'] = await ingest(sqlite, encoded);
  } finally {
    await sqlite.close();
  }
  const why = postgresUnavailableReason();
  if (why !== undefined) {
    out['postgres'] = { skipped: why };
    return out;
  }
  const pgp = await startPostgres({ durable: true });
  try {
    const store = await PostgresLogStore.open({ url: await pgp.createDatabase('als_bench'), retentionIntervalMs: 0 });
    try {
      out['postgres'] = await ingest(store, encoded);
    } finally {
      await store.close();
    }
  } finally {
    await pgp.stop();
  }
  return out;
}

try {
  const results: Record<string, unknown> = {
    date: new Date().toISOString(),
    host: { cpus: cpus().length, model: cpus()[0]?.model ?? '', loadavg: loadavg().map((l) => Math.round(l * 100) / 100) },
  };
  if (ONLY === '' || ONLY === 'throughput') {
    results['sidecarThroughput'] = await throughput();
    console.log(JSON.stringify(results['sidecarThroughput']));
  }
  if (ONLY === '' || ONLY === 'ingest') {
    results['sinkIngest'] = await ingestAll();
    console.log(JSON.stringify(results['sinkIngest']));
  }
  if (ONLY === '') {
    mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
    writeFileSync(path.join(root, 'bench', 'results', 'als.json'), JSON.stringify(results, null, 2) + '\n');
  } else {
    console.log('partial run (--only): bench/results/als.json not written');
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
