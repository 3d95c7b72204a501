// A small but real gRPC ADS server for the proxy's tests: serves given Envoy resources over
// both delta and state-of-the-world streams, pushes updates on `set`, and records every
// ACK and NACK it receives, so tests can drive the proxy exactly as a control plane would.
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { encodeMessage, decodeMessage, messageType, CLUSTER_TYPE, LISTENER_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';

export interface AckRecord {
  typeUrl: string;
  nonce: string;
  nack: boolean;
  message?: string;
  protocol: 'delta' | 'sotw';
}

interface Conn {
  protocol: 'delta' | 'sotw';
  call: grpc.ServerDuplexStream<ProtoJson, ProtoJson>;
  /** Per type: subscribed names ('*' for wildcard) and what was sent (name → version). */
  subs: Map<string, { names: Set<string>; sent: Map<string, string> }>;
  node?: ProtoJson;
}

export class TestAdsServer {
  private readonly server = new grpc.Server();
  private readonly resources = new Map<string, Map<string, ProtoJson>>();
  private readonly conns = new Set<Conn>();
  private nonce = 0;
  readonly acks: AckRecord[] = [];
  readonly nodes: ProtoJson[] = [];
  /** Every request received, in order, as decoded. */
  readonly requests: { protocol: 'delta' | 'sotw'; request: ProtoJson }[] = [];
  port = 0;

  constructor(opts: { delta?: boolean } = {}) {
    const delta = opts.delta ?? true;
    const codec = (name: string) => ({
      serialize: (m: ProtoJson) => Buffer.from(encodeRaw(name, m)),
      deserialize: (b: Buffer) => decodeMessage(name, b),
    });
    const dreq = codec('envoy.service.discovery.v3.DeltaDiscoveryRequest');
    const sreq = codec('envoy.service.discovery.v3.DiscoveryRequest');
    const def: grpc.ServiceDefinition = {
      StreamAggregatedResources: {
        path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
        requestStream: true, responseStream: true,
        requestSerialize: sreq.serialize, requestDeserialize: sreq.deserialize,
        responseSerialize: (m: ProtoJson) => Buffer.from(encodeRaw('envoy.service.discovery.v3.DiscoveryResponse', m)),
        responseDeserialize: (b: Buffer) => decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', b),
      },
      DeltaAggregatedResources: {
        path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
        requestStream: true, responseStream: true,
        requestSerialize: dreq.serialize, requestDeserialize: dreq.deserialize,
        responseSerialize: (m: ProtoJson) => Buffer.from(encodeRaw('envoy.service.discovery.v3.DeltaDiscoveryResponse', m)),
        responseDeserialize: (b: Buffer) => decodeMessage('envoy.service.discovery.v3.DeltaDiscoveryResponse', b),
      },
    };
    const impl: grpc.UntypedServiceImplementation = {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<ProtoJson, ProtoJson>) => this.serve(call, 'sotw'),
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<ProtoJson, ProtoJson>) => {
        if (!delta) {
          call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'delta not served' });
          return;
        }
        this.serve(call, 'delta');
      },
    };
    this.server.addService(def, impl);
  }

  async start(port = 0): Promise<number> {
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    return this.port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.call.end();
    this.conns.clear();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    this.server.forceShutdown();
  }

  /** Stops at once, as a crashed control plane does: open streams break, nothing is said. */
  kill(): void {
    this.conns.clear();
    this.server.forceShutdown();
  }

  /** Replaces every resource of a type and pushes to connected proxies. */
  set(typeUrl: string, list: ProtoJson[]): void {
    const m = new Map<string, ProtoJson>();
    for (const r of list) {
      // Fail here, in the test, rather than as a stream error the proxy retries forever.
      encodeMessage(typeUrl, r);
      m.set(String(r['name'] ?? r['clusterName']), r);
    }
    this.resources.set(typeUrl, m);
    for (const c of this.conns) this.push(c, typeUrl);
  }

  /** Resolves when a record matching `pred` arrives (checks records from index `from` on). */
  async waitFor(pred: (a: AckRecord) => boolean, timeoutMs = 10_000, from = 0): Promise<AckRecord> {
    const deadline = Date.now() + timeoutMs;
    let seen = from;
    while (Date.now() < deadline) {
      for (; seen < this.acks.length; seen++) {
        const a = this.acks[seen]!;
        if (pred(a)) return a;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('timed out waiting for an xDS ACK/NACK');
  }

  private serve(call: grpc.ServerDuplexStream<ProtoJson, ProtoJson>, protocol: 'delta' | 'sotw'): void {
    const conn: Conn = { protocol, call, subs: new Map() };
    this.conns.add(conn);
    call.on('data', (req: ProtoJson) => this.onRequest(conn, req));
    call.on('end', () => { this.conns.delete(conn); call.end(); });
    call.on('error', () => this.conns.delete(conn));
    call.on('cancelled', () => this.conns.delete(conn));
  }

  private onRequest(conn: Conn, req: ProtoJson): void {
    this.requests.push({ protocol: conn.protocol, request: req });
    if (req['node']) {
      conn.node = req['node'] as ProtoJson;
      this.nodes.push(conn.node);
    }
    const typeUrl = String(req['typeUrl']);
    const nonce = String(req['responseNonce'] ?? '');
    const err = req['errorDetail'] as ProtoJson | undefined;
    if (nonce) {
      const rec: AckRecord = { typeUrl, nonce, nack: !!err, protocol: conn.protocol };
      if (err) rec.message = String(err['message'] ?? '');
      this.acks.push(rec);
    }
    let sub = conn.subs.get(typeUrl);
    const isNew = !sub;
    if (!sub) {
      sub = { names: new Set(), sent: new Map() };
      conn.subs.set(typeUrl, sub);
    }
    const wildcard = typeUrl === CLUSTER_TYPE || typeUrl === LISTENER_TYPE;
    if (conn.protocol === 'delta') {
      if (wildcard) sub.names.add('*');
      const before = new Set(sub.names);
      for (const n of (req['resourceNamesSubscribe'] as string[] | undefined) ?? []) sub.names.add(n);
      for (const n of (req['resourceNamesUnsubscribe'] as string[] | undefined) ?? []) { sub.names.delete(n); sub.sent.delete(n); }
      if (isNew) for (const [n, v] of Object.entries((req['initialResourceVersions'] as Record<string, string>) ?? {})) sub.sent.set(n, v);
      const changed = [...sub.names].some((n) => !before.has(n));
      if (isNew || changed) this.push(conn, typeUrl);
    } else {
      const names = new Set<string>(wildcard ? ['*'] : ((req['resourceNames'] as string[] | undefined) ?? []));
      const changed = names.size !== sub.names.size || [...names].some((n) => !sub.names.has(n));
      sub.names = names;
      if (isNew || changed) this.push(conn, typeUrl);
    }
  }

  private push(conn: Conn, typeUrl: string): void {
    const sub = conn.subs.get(typeUrl);
    if (!sub) return;
    const all = this.resources.get(typeUrl) ?? new Map<string, ProtoJson>();
    const wanted = [...all].filter(([n]) => sub.names.has('*') || sub.names.has(n));
    const nonce = String(++this.nonce);
    if (conn.protocol === 'sotw') {
      const version = hash(JSON.stringify(wanted));
      conn.call.write({ versionInfo: version, typeUrl, nonce, resources: wanted.map(([, r]) => ({ '@type': typeUrl, ...r })) });
      return;
    }
    const resources: ProtoJson[] = [];
    for (const [name, r] of wanted) {
      const version = hash(JSON.stringify(r));
      if (sub.sent.get(name) === version) continue;
      sub.sent.set(name, version);
      resources.push({ name, version, resource: { '@type': typeUrl, ...r } });
    }
    const removedResources: string[] = [];
    for (const name of [...sub.sent.keys()]) {
      if (!all.has(name)) { sub.sent.delete(name); removedResources.push(name); }
    }
    if (resources.length === 0 && removedResources.length === 0 && sub.sent.size > 0) return;
    conn.call.write({ systemVersionInfo: String(this.nonce), typeUrl, nonce, resources, removedResources });
  }
}

function encodeRaw(name: string, m: ProtoJson): Uint8Array {
  messageType(name);
  return encodeMessage(name, m);
}

function hash(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 12);
}
