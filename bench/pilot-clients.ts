// Simulated proxies for bench/pilot-scale.ts, run as their own process: N ADS streams (half
// state-of-the-world, half delta) that subscribe like Envoy (CDS and LDS wildcard, then EDS for
// the EDS clusters and RDS for the listeners' routes) and ACK every response. Responses are
// scanned at the protobuf level (names, types) rather than fully decoded, so the measurement is
// the pilot's work rather than this process's.
//
// stdout: JSON lines ({event: 'synced' | 'all-synced' | 'report', ...}); stdin: JSON commands
// {cmd: 'mark', id} (start timing the next response per type) and {cmd: 'report', id}.
import * as grpc from '@grpc/grpc-js';
import { createInterface } from 'node:readline';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, decodeMessage, encodeMessage } from '../src/envoy/index.ts';
import type { ProtoJson } from '../src/envoy/index.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const xdsAddress = args.get('xds') ?? '127.0.0.1:15010';
const proxies = Number(args.get('proxies') ?? '1000');
const namespaces = Number(args.get('namespaces') ?? '100');
const channels = Number(args.get('channels') ?? '20');

// --- protobuf scanning ---
function varint(buf: Buffer, pos: number): [number, number] {
  let result = 0;
  let shift = 1;
  for (;;) {
    const b = buf[pos++]!;
    result += (b & 0x7f) * shift;
    if (b < 0x80) return [result, pos];
    shift *= 128;
  }
}

/** Calls `fn(fieldNo, start, end, varintValue)` for each top-level field in buf[start, end). */
function scan(buf: Buffer, start: number, end: number, fn: (no: number, s: number, e: number, v: number) => void): void {
  let pos = start;
  while (pos < end) {
    const [tag, p1] = varint(buf, pos);
    const no = Math.floor(tag / 8);
    const wt = tag & 7;
    if (wt === 0) {
      const [v, p2] = varint(buf, p1);
      fn(no, p1, p2, v);
      pos = p2;
    } else if (wt === 2) {
      const [len, p2] = varint(buf, p1);
      fn(no, p2, p2 + len, 0);
      pos = p2 + len;
    } else if (wt === 1) pos = p1 + 8;
    else if (wt === 5) pos = p1 + 4;
    else throw new Error(`unsupported wire type ${wt}`);
  }
}

interface Resource { name: string; value: Buffer }
interface Response { typeUrl: string; version: string; nonce: string; resources: Resource[]; removed: string[] }

function parseResponse(buf: Buffer, delta: boolean): Response {
  const r: Response = { typeUrl: '', version: '', nonce: '', resources: [], removed: [] };
  scan(buf, 0, buf.length, (no, s, e) => {
    if (no === 1) r.version = buf.toString('utf8', s, e);
    else if (no === 4) r.typeUrl = buf.toString('utf8', s, e);
    else if (no === 5) r.nonce = buf.toString('utf8', s, e);
    else if (no === 6 && delta) r.removed.push(buf.toString('utf8', s, e));
    else if (no === 2) {
      let name = '';
      let any: [number, number] | undefined;
      if (delta) {
        scan(buf, s, e, (n2, s2, e2) => {
          if (n2 === 3) name = buf.toString('utf8', s2, e2);
          else if (n2 === 2) any = [s2, e2];
        });
      } else any = [s, e];
      let value: Buffer = Buffer.alloc(0);
      if (any) scan(buf, any[0], any[1], (n3, s3, e3) => {
        if (n3 === 2) value = buf.subarray(s3, e3);
      });
      if (name === '') scan(value, 0, value.length, (n4, s4, e4) => {
        if (n4 === 1 && name === '') name = value.toString('utf8', s4, e4);
      });
      r.resources.push({ name, value });
    }
  });
  return r;
}

/** Cluster.type (field 2) is EDS (3). */
function isEdsCluster(value: Buffer): boolean {
  let eds = false;
  scan(value, 0, value.length, (no, _s, _e, v) => {
    if (no === 2 && v === 3) eds = true;
  });
  return eds;
}

function routeNamesOf(listener: Buffer): string[] {
  const json = decodeMessage(LISTENER_TYPE, listener);
  const out: string[] = [];
  const walk = (x: unknown): void => {
    if (Array.isArray(x)) x.forEach(walk);
    else if (x !== null && typeof x === 'object') {
      const o = x as Record<string, unknown>;
      const rds = o['rds'] as { routeConfigName?: string } | undefined;
      if (rds?.routeConfigName) out.push(rds.routeConfigName);
      for (const v of Object.values(o)) walk(v);
    }
  };
  walk(json);
  return out;
}

// --- request encoding ---
// Requests after the first (which carries the node) are written at the wire level: a SotW
// ACK of a full-mesh EDS response names 10,000 clusters, and this process should not spend
// its CPU (shared with the pilot) in a general-purpose encoder.
function lengthDelimited(no: number, bytes: Buffer): Buffer[] {
  const head: number[] = [no * 8 + 2];
  let n = bytes.length;
  while (n >= 0x80) { head.push((n & 0x7f) | 0x80); n = Math.floor(n / 128); }
  head.push(n);
  return [Buffer.from(head), bytes];
}

function stringFields(no: number, values: readonly string[] | undefined): Buffer[] {
  const out: Buffer[] = [];
  for (const v of values ?? []) if (v !== '') out.push(...lengthDelimited(no, Buffer.from(v, 'utf8')));
  return out;
}

function encodeRequest(type: string, r: ProtoJson): Buffer {
  if (r['node'] !== undefined) return Buffer.from(encodeMessage(type, r));
  const str = (k: string): string[] => (typeof r[k] === 'string' ? [r[k]] : []);
  const list = (k: string): string[] | undefined => r[k] as string[] | undefined;
  if (type.endsWith('DeltaDiscoveryRequest')) {
    return Buffer.concat([...stringFields(2, str('typeUrl')), ...stringFields(3, list('resourceNamesSubscribe')), ...stringFields(4, list('resourceNamesUnsubscribe')), ...stringFields(6, str('responseNonce'))]);
  }
  return Buffer.concat([...stringFields(1, str('versionInfo')), ...stringFields(3, list('resourceNames')), ...stringFields(4, str('typeUrl')), ...stringFields(5, str('responseNonce'))]);
}

// --- streams ---
const identity = (b: Buffer): Buffer => b;
const Ads = grpc.makeGenericClientConstructor({
  StreamAggregatedResources: {
    path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', requestStream: true, responseStream: true,
    requestSerialize: (r: ProtoJson) => encodeRequest('envoy.service.discovery.v3.DiscoveryRequest', r), requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: identity,
  },
  DeltaAggregatedResources: {
    path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources', requestStream: true, responseStream: true,
    requestSerialize: (r: ProtoJson) => encodeRequest('envoy.service.discovery.v3.DeltaDiscoveryRequest', r), requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: identity,
  },
}, 'Ads');

// HTTP/2 receive windows as Envoy's defaults (initial stream and connection window 256 MiB):
// with grpc-js's 64 KiB a 13 MB full-mesh response crawls through hundreds of WINDOW_UPDATE
// round trips, which measures the window size, not the pilot.
const ENVOY_HTTP2_WINDOW = 256 * 1024 * 1024;
const clients = Array.from({ length: channels }, (_, i) => new Ads(xdsAddress, grpc.credentials.createInsecure(), {
  'grpc-node.flow_control_window': ENVOY_HTTP2_WINDOW,
  'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1, 'grpc.channel_id': i, 'grpc.use_local_subchannel_pool': 1,
}));

const TYPES = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE];
let syncedCount = 0;
let mark: { id: string; at: number } | undefined;
const markTimes = new Map<string, { proxy: number; type: string; at: number; resources: number }[]>();

class SimProxy {
  readonly acked = new Set<string>();
  readonly names = new Map<string, Set<string>>([[ENDPOINT_TYPE, new Set()], [ROUTE_TYPE, new Set()]]);
  bytes = 0;
  syncedAt: number | undefined;
  private readonly call: grpc.ClientDuplexStream<ProtoJson, Buffer>;
  private readonly index: number;
  private readonly delta: boolean;
  private readonly marked = new Set<string>();

  constructor(index: number, delta: boolean, namespace: string) {
    this.index = index;
    this.delta = delta;
    const client = clients[index % clients.length]! as unknown as Record<string, () => grpc.ClientDuplexStream<ProtoJson, Buffer>>;
    this.call = client[delta ? 'DeltaAggregatedResources' : 'StreamAggregatedResources']!.call(client);
    this.call.on('data', (buf: Buffer) => this.onResponse(buf));
    this.call.on('error', (err: Error) => process.stderr.write(`proxy ${index}: ${err.message}\n`));
    const node = { id: `sidecar~10.${Math.floor(index / 250)}.${index % 250}.1~app-${index}.${namespace}~${namespace}.svc.cluster.local`, metadata: { NAMESPACE: namespace, LABELS: { app: `app-${index % 10}` }, CLUSTER_ID: 'Kubernetes' } };
    this.call.write({ node, typeUrl: CLUSTER_TYPE });
    this.call.write({ typeUrl: LISTENER_TYPE });
  }

  private onResponse(buf: Buffer): void {
    const now = Date.now();
    this.bytes += buf.length;
    const r = parseResponse(buf, this.delta);
    if (mark !== undefined && !this.marked.has(`${mark.id}|${r.typeUrl}`)) {
      this.marked.add(`${mark.id}|${r.typeUrl}`);
      markTimes.get(mark.id)!.push({ proxy: this.index, type: r.typeUrl.slice(r.typeUrl.lastIndexOf('.') + 1), at: now, resources: r.resources.length });
    }
    // ACK first, as Envoy does once it has applied the response.
    if (this.delta) this.call.write({ typeUrl: r.typeUrl, responseNonce: r.nonce });
    else {
      const names = this.names.get(r.typeUrl);
      this.call.write({ typeUrl: r.typeUrl, versionInfo: r.version, responseNonce: r.nonce, ...(names ? { resourceNames: [...names] } : {}) });
    }
    this.acked.add(r.typeUrl);
    if (r.typeUrl === CLUSTER_TYPE && (!this.delta || r.resources.length > 0)) {
      const eds = this.names.get(ENDPOINT_TYPE)!;
      const next = new Set(this.delta ? eds : []);
      for (const x of r.resources) if (isEdsCluster(x.value)) next.add(x.name);
      for (const x of r.removed) next.delete(x);
      this.resubscribe(ENDPOINT_TYPE, next);
    } else if (r.typeUrl === LISTENER_TYPE && r.resources.length > 0) {
      const routes = new Set(this.delta ? this.names.get(ROUTE_TYPE)! : []);
      for (const x of r.resources) for (const n of routeNamesOf(x.value)) routes.add(n);
      this.resubscribe(ROUTE_TYPE, routes);
    }
    if (this.syncedAt === undefined && TYPES.every((t) => this.acked.has(t) || (this.names.get(t)?.size === 0 && this.acked.has(CLUSTER_TYPE) && this.acked.has(LISTENER_TYPE)))) {
      this.syncedAt = now;
      syncedCount++;
      process.stdout.write(JSON.stringify({ event: 'synced', proxy: this.index, delta: this.delta, at: now, bytes: this.bytes }) + '\n');
      if (syncedCount === proxies) process.stdout.write(JSON.stringify({ event: 'all-synced', at: now }) + '\n');
    }
  }

  private resubscribe(typeUrl: string, next: Set<string>): void {
    const current = this.names.get(typeUrl)!;
    const added = [...next].filter((n) => !current.has(n));
    const removed = [...current].filter((n) => !next.has(n));
    if (added.length === 0 && removed.length === 0) return;
    this.names.set(typeUrl, next);
    if (this.delta) this.call.write({ typeUrl, resourceNamesSubscribe: added, resourceNamesUnsubscribe: removed });
    else this.call.write({ typeUrl, resourceNames: [...next] });
  }

  close(): void {
    this.call.cancel();
  }
}

// Like Envoy, keep trying until the pilot listens (it may still be starting).
await Promise.all(clients.map((c) => new Promise<void>((resolve, reject) => c.waitForReady(Date.now() + 300_000, (err) => (err ? reject(err) : resolve())))));
const sims: SimProxy[] = [];
for (let i = 0; i < proxies; i++) sims.push(new SimProxy(i, i % 2 === 1, `ns-${i % namespaces}`));

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as { cmd: string; id: string };
  if (cmd.cmd === 'mark') {
    mark = { id: cmd.id, at: Date.now() };
    markTimes.set(cmd.id, []);
    process.stdout.write(JSON.stringify({ event: 'marked', id: cmd.id, at: mark.at }) + '\n');
  } else if (cmd.cmd === 'report') {
    process.stdout.write(JSON.stringify({ event: 'report', id: cmd.id, times: markTimes.get(cmd.id) ?? [] }) + '\n');
  }
}
for (const s of sims) s.close();
for (const c of clients) c.close();
