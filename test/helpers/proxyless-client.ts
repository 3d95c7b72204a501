// For tests that drive test/e2e/pilot-xds-client.ts (a proxyless gRPC client run as a child
// process): its xDS bootstrap, and the lines it prints read one at a time.
import type { Readable } from 'node:stream';
import { createInterface, type Interface } from 'node:readline';

/** GRPC_XDS_BOOTSTRAP_CONFIG for the greeter client: these xDS server URIs, insecure, xDS v3. */
export function greeterBootstrap(serverUris: readonly string[]): string {
  return JSON.stringify({
    xds_servers: serverUris.map((server_uri) => ({ server_uri, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] })),
    node: { id: 'sidecar~127.0.0.1~greeter-client.default~default.svc.cluster.local', locality: {}, metadata: { GENERATOR: 'grpc', NAMESPACE: 'default', CLUSTER_ID: 'Kubernetes' } },
  });
}

export interface LineQueue {
  lines: Interface;
  /** The next line not taken yet, waiting for it if none has come. */
  next(): Promise<string>;
}

/** Queues the lines of `input` so that each is taken once, in order. */
export function lineQueue(input: Readable): LineQueue {
  const lines = createInterface({ input });
  const queue: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  lines.on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else queue.push(l);
  });
  return { lines, next: () => (queue.length > 0 ? Promise.resolve(queue.shift()!) : new Promise((r) => waiters.push(r))) };
}
