// A plain ADS client over real gRPC for tests: sends requests as JSON objects and decodes
// every response with Envoy's protos (resources expanded from Any), one queue per stream.
import * as grpc from '@grpc/grpc-js';
import { decodeMessage, encodeMessage } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';

// Requests are written in proto3 JSON form (node metadata as a plain object), as Envoy logs them.
const encoder = (typeName: string) => (req: ProtoJson): Buffer => Buffer.from(encodeMessage(typeName, req));

const ADS_CLIENT = grpc.makeGenericClientConstructor({
  StreamAggregatedResources: {
    path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
    requestStream: true, responseStream: true,
    requestSerialize: encoder('envoy.service.discovery.v3.DiscoveryRequest'),
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', b),
  },
  DeltaAggregatedResources: {
    path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
    requestStream: true, responseStream: true,
    requestSerialize: encoder('envoy.service.discovery.v3.DeltaDiscoveryRequest'),
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => decodeMessage('envoy.service.discovery.v3.DeltaDiscoveryResponse', b),
  },
}, 'AggregatedDiscoveryService');

const CSDS_CLIENT = grpc.makeGenericClientConstructor({
  FetchClientStatus: {
    path: '/envoy.service.status.v3.ClientStatusDiscoveryService/FetchClientStatus',
    requestStream: false, responseStream: false,
    requestSerialize: encoder('envoy.service.status.v3.ClientStatusRequest'),
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => decodeMessage('envoy.service.status.v3.ClientStatusResponse', b),
  },
}, 'ClientStatusDiscoveryService');

export function nodeFor(pod: string, namespace = 'default', metadata: Record<string, unknown> = {}): ProtoJson {
  return {
    id: `sidecar~127.0.0.1~${pod}.${namespace}~${namespace}.svc.cluster.local`,
    cluster: pod,
    metadata: { NAMESPACE: namespace, CLUSTER_ID: 'Kubernetes', ...metadata },
  };
}

/** One ADS stream: `send` a request, `next` awaits the next response (decoded). */
export class AdsStream {
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<ProtoJson, ProtoJson>;
  private readonly queue: ProtoJson[] = [];
  private waiters: ((r: ProtoJson) => void)[] = [];
  error: grpc.ServiceError | undefined;
  private errorWaiters: ((e: grpc.ServiceError) => void)[] = [];

  /** `secure`: TLS credentials and channel options (a closed control plane); default plaintext. */
  constructor(address: string, mode: 'sotw' | 'delta', secure?: { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions }) {
    this.client = new ADS_CLIENT(address, secure?.credentials ?? grpc.credentials.createInsecure(), { ...secure?.options, 'grpc.max_receive_message_length': -1 });
    const method = mode === 'sotw' ? 'StreamAggregatedResources' : 'DeltaAggregatedResources';
    this.call = (this.client as unknown as Record<string, () => grpc.ClientDuplexStream<ProtoJson, ProtoJson>>)[method]!.call(this.client);
    this.call.on('data', (r: ProtoJson) => {
      const w = this.waiters.shift();
      if (w) w(r);
      else this.queue.push(r);
    });
    this.call.on('error', (e: grpc.ServiceError) => {
      this.error = e;
      for (const w of this.errorWaiters) w(e);
    });
  }

  send(req: ProtoJson): void {
    this.call.write(req);
  }

  next(): Promise<ProtoJson> {
    const r = this.queue.shift();
    if (r !== undefined) return Promise.resolve(r);
    return new Promise((resolve, reject) => {
      this.waiters.push(resolve);
      this.errorWaiters.push(reject);
    });
  }

  /** Responses received and not yet taken. */
  get buffered(): number {
    return this.queue.length;
  }

  failed(): Promise<grpc.ServiceError> {
    if (this.error) return Promise.resolve(this.error);
    return new Promise((resolve) => this.errorWaiters.push(resolve));
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

export function fetchClientStatus(address: string, nodeId?: string): Promise<ProtoJson> {
  const client = new CSDS_CLIENT(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const req: ProtoJson = nodeId === undefined ? {} : { node: { id: nodeId } };
    (client as unknown as Record<string, (r: ProtoJson, cb: (e: grpc.ServiceError | null, v?: ProtoJson) => void) => void>)['FetchClientStatus']!.call(client, req, (err, value) => {
      client.close();
      if (err) reject(err);
      else resolve(value ?? {});
    });
  });
}

/** Resource names of a decoded response, in order. */
export function resourceNames(response: ProtoJson): string[] {
  const resources = (response['resources'] ?? []) as ProtoJson[];
  return resources.map((r) => {
    const inner = (r['resource'] as ProtoJson | undefined) ?? r; // delta wraps each in Resource
    return String(inner['name'] ?? inner['clusterName'] ?? '');
  });
}
