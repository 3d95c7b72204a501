// gRPC through two sidecars, as a mesh app sees it: a grpc-js client → its sidecar (h2c,
// codec AUTO on the egress listener) → the server's sidecar → a grpc-js server, all real
// processes configured by a real pilot from Istio YAML (port protocol GRPC: HTTP/2 upstream
// on both hops). Statuses, metadata and trailers arrive as the server sent them; streams of
// every kind flow; deadlines cancel the server's call; routes split and match gRPC traffic.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { echoClient, startEchoServer, unary } from '../helpers/grpc-echo.ts';
import type { EchoClient, EchoServer } from '../helpers/grpc-echo.ts';
import { startSidecarMesh } from '../helpers/sidecar-processes.ts';
import type { Sidecar, SidecarMesh } from '../helpers/sidecar-processes.ts';
import { egressSidecar, ingressSidecar } from '../helpers/istio-yaml.ts';

const HOST = 'echo.default.svc.cluster.local';
const CLIENT_IP = '127.0.51.1';
const V1_IP = '127.0.51.3';
const V2_IP = '127.0.51.4';
const PORT = 50051;

let mesh: SidecarMesh;
let v1: EchoServer;
let v2: EchoServer;
let clientSidecar: Sidecar;
let v1Sidecar: Sidecar;
let v2Sidecar: Sidecar;
let client: EchoClient;

function config(v1Port: number, v2Port: number): string {
  return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [${HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec: {address: ${V1_IP}, labels: {app: echo, version: v1}, ports: {grpc: ${PORT}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v2, namespace: default}
spec: {address: ${V2_IP}, labels: {app: echo, version: v2}, ports: {grpc: ${PORT}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: ${HOST}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [${HOST}]
  http:
  - match: [{headers: {x-version: {exact: v2}}}]
    route: [{destination: {host: ${HOST}, subset: v2}}]
  - match: [{headers: {x-split: {exact: "yes"}}}]
    route:
    - {destination: {host: ${HOST}, subset: v1}, weight: 90}
    - {destination: {host: ${HOST}, subset: v2}, weight: 10}
  - match: [{uri: {prefix: /sextant.test.Echo/}}]
    route: [{destination: {host: ${HOST}, subset: v1}}]
    retries: {attempts: 3, retryOn: unavailable}
---
${egressSidecar({ name: 'client', bind: CLIENT_IP, port: PORT, protocol: 'GRPC', portName: 'grpc' })}
---
${ingressSidecar({ name: 'echo-v1', labels: { app: 'echo', version: 'v1' }, bind: V1_IP, port: PORT, protocol: 'GRPC', portName: 'grpc', defaultEndpoint: `127.0.0.1:${v1Port}` })}
---
${ingressSidecar({ name: 'echo-v2', labels: { app: 'echo', version: 'v2' }, bind: V2_IP, port: PORT, protocol: 'GRPC', portName: 'grpc', defaultEndpoint: `127.0.0.1:${v2Port}` })}
`;
}

before(async () => {
  v1 = await startEchoServer('v1');
  v2 = await startEchoServer('v2');
  mesh = await startSidecarMesh(config(v1.port, v2.port));
  [clientSidecar, v1Sidecar, v2Sidecar] = await Promise.all([
    mesh.sidecar(CLIENT_IP, 'client-v1', { app: 'client', version: 'v1' }),
    mesh.sidecar(V1_IP, 'echo-v1', { app: 'echo', version: 'v1' }),
    mesh.sidecar(V2_IP, 'echo-v2', { app: 'echo', version: 'v2' }),
  ]);
  // the app dials its sidecar's egress listener and names the service, as a mesh app does
  client = echoClient(`${CLIENT_IP}:${PORT}`, `${HOST}:${PORT}`);
});

after(async () => {
  client?.close();
  await mesh?.stop();
  await v1?.close();
  await v2?.close();
});

test('unary: the answer, the server\'s initial metadata and its trailers arrive as sent', async () => {
  const r = await unary(client, 'hello', { 'x-trailer-order': '42' });
  assert.equal(r.error, null);
  assert.equal(r.value?.toString(), 'v1:hello');
  assert.deepEqual(r.headers?.get('x-echo-server'), ['v1']);
  assert.deepEqual(r.trailers?.getMap(), { 'x-served-by': 'v1', 'x-trailer-order': '42' });
  // the app saw the caller's metadata
  assert.deepEqual(v1.lastMetadata?.get('x-trailer-order'), ['42']);
});

test('a server error keeps its status code, message and trailers', async () => {
  const r = await unary(client, 'x', { 'x-fail-code': String(grpc.status.NOT_FOUND), 'x-fail-message': 'no such order', 'x-trailer-t': '1' });
  assert.equal(r.error?.code, grpc.status.NOT_FOUND);
  assert.equal(r.error?.details, 'no such order');
  assert.deepEqual(r.trailers?.getMap(), { 'x-served-by': 'v1', 'x-trailer-t': '1' });
  const perm = await unary(client, 'x', { 'x-fail-code': String(grpc.status.PERMISSION_DENIED), 'x-fail-message': 'nope' });
  assert.equal(perm.error?.code, grpc.status.PERMISSION_DENIED);
  assert.equal(perm.error?.details, 'nope');
});

test('server streaming: 10,000 messages in order, then the status', async () => {
  const md = new grpc.Metadata();
  md.set('x-count', '10000');
  const got: string[] = [];
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    const call = client.serverStream(Buffer.from('go'), md);
    call.on('data', (b: Buffer) => got.push(b.toString()));
    call.on('error', () => { /* the status says it */ });
    call.on('status', resolve);
  });
  assert.equal(status.code, grpc.status.OK);
  assert.equal(got.length, 10_000);
  assert.ok(got.every((m, i) => m === String(i)), 'messages arrive in order');
  assert.deepEqual(status.metadata.get('x-served-by'), ['v1']);
});

test('client streaming and bidi streaming', async () => {
  const summary = await new Promise<string>((resolve, reject) => {
    const call = client.clientStream(new grpc.Metadata(), {}, (err, res) => (err ? reject(err) : resolve(res!.toString())));
    for (let i = 0; i < 1000; i++) call.write(Buffer.from(`message ${i}`));
    call.end();
  });
  const bytes = Array.from({ length: 1000 }, (_, i) => `message ${i}`.length).reduce((a, b) => a + b, 0);
  assert.equal(summary, `1000 messages ${bytes} bytes`);

  const echoed: string[] = [];
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    const call = client.bidi(new grpc.Metadata());
    let sent = 0;
    call.on('data', (b: Buffer) => {
      echoed.push(b.toString());
      // one at a time: each answer is read before the next message goes
      if (sent < 500) call.write(Buffer.from(`ping ${sent++}`));
      else call.end();
    });
    call.on('error', () => { /* the status says it */ });
    call.on('status', resolve);
    call.write(Buffer.from(`ping ${sent++}`));
  });
  assert.equal(status.code, grpc.status.OK);
  assert.equal(echoed.length, 500);
  assert.ok(echoed.every((m, i) => m === `ping ${i}`));
});

test('a 32 MiB message each way', async () => {
  const big = Buffer.alloc(32 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
  const r = await unary(client, big);
  assert.equal(r.error, null);
  assert.equal(r.value?.length, big.length + 3);
  assert.ok(r.value!.subarray(3).equals(big), 'the bytes are intact');
});

test('a deadline expiring mid-call ends DEADLINE_EXCEEDED at the client and cancels the server\'s call', async () => {
  const cancelledBefore = v1.cancelled;
  const md = new grpc.Metadata();
  md.set('x-count', '100');
  md.set('x-interval-ms', '50');
  let received = 0;
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    const call = client.serverStream(Buffer.from('slow'), md, { deadline: Date.now() + 600 });
    call.on('data', () => received++);
    call.on('error', () => { /* the status says it */ });
    call.on('status', resolve);
  });
  assert.equal(status.code, grpc.status.DEADLINE_EXCEEDED);
  assert.ok(received > 0 && received < 100, `some messages before the deadline (${received})`);
  // the cancellation travels through both sidecars as stream resets
  const deadline = Date.now() + 5000;
  while (v1.cancelled === cancelledBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(v1.cancelled, cancelledBefore + 1);
});

test('a header match and a 90/10 split route gRPC calls', async () => {
  const pinned = await unary(client, 'a', { 'x-version': 'v2' });
  assert.equal(pinned.value?.toString(), 'v2:a');
  const counts = { v1: 0, v2: 0 };
  for (let i = 0; i < 200; i++) {
    const r = await unary(client, 'b', { 'x-split': 'yes' });
    const who = r.value?.toString().split(':')[0] as 'v1' | 'v2';
    counts[who]++;
  }
  assert.equal(counts.v1 + counts.v2, 200);
  // 90/10 of 200: v2 gets 20 on average; 4..40 holds with overwhelming probability
  assert.ok(counts.v2 >= 4 && counts.v2 <= 40, `v2 got ${counts.v2} of 200`);
});

test('retries on unavailable recover from a flaky server', async () => {
  const before = v1.calls;
  v1.failNext = 2;
  const r = await unary(client, 'again');
  assert.equal(r.error, null);
  assert.equal(r.value?.toString(), 'v1:again');
  assert.equal(v1.calls - before, 3, 'two UNAVAILABLE answers, then the one that worked');
});

test('a killed server surfaces as UNAVAILABLE, and both sidecars count the call as gRPC', async () => {
  v2.kill();
  // In the same instant as the kill: the sidecar's pooled session to the app is closing and its
  // listener is gone. The deadline only bounds a hang (it would fail the assertion below).
  const r = await unary(client, 'anyone?', { 'x-version': 'v2' }, { deadline: Date.now() + 20_000 });
  assert.equal(r.error?.code, grpc.status.UNAVAILABLE);
  // the server's sidecar could not connect to its app: UF, answered as gRPC status 14
  const stats = await v2Sidecar.stats();
  assert.match(stats, /istio_requests_total\{reporter="destination",[^}]*request_protocol="grpc",response_code="200",response_flags="UF"\} [1-9]/);
  const clientStats = await clientSidecar.stats();
  assert.match(clientStats, /istio_requests_total\{reporter="source",[^}]*request_protocol="grpc",response_code="200",response_flags="-"\} [1-9]/);
  assert.ok(v1Sidecar.admin);
});
