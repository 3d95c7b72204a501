// The xDS port's HTTP/2 receive windows: a peer connecting to a grpc-js server widened by
// widenReceiveWindows is told, in the protocol itself, that each stream may send 4 MiB and the
// connection 16 MiB ahead of the pilot reading (instead of 64 KiB each), so a full-mesh ACK
// of hundreds of KB goes out in one flight; and a message larger than the old window arrives whole.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { XDS_RECEIVE_WINDOWS, widenReceiveWindows } from '../../../src/pilot/xds/flow.ts';

const identity = (b: Buffer): Buffer => b;
const ECHO = {
  Echo: { path: '/test.Echo/Echo', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
} as unknown as grpc.ServiceDefinition;

async function echoServer(): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 8 * 1024 * 1024 });
  server.addService(ECHO, {
    Echo: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (b: Buffer) => call.write(Buffer.from(String(b.length))));
      call.on('end', () => call.end());
    },
  } as unknown as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return { server, port };
}

/** What the server announces to a peer: its SETTINGS' initial window, and the connection window it grants. */
async function announced(port: number): Promise<{ initialWindowSize: number | undefined; connectionWindow: number }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    await new Promise<void>((resolve, reject) => {
      session.once('error', reject);
      session.once('remoteSettings', () => resolve());
    });
    // The connection window arrives as a WINDOW_UPDATE right after SETTINGS; a ping round trip is past it.
    await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
    return { initialWindowSize: session.remoteSettings.initialWindowSize, connectionWindow: session.state.remoteWindowSize ?? -1 };
  } finally {
    session.destroy();
  }
}

test('without widening, a grpc-js server grants 64 KiB windows', async () => {
  const { server, port } = await echoServer();
  try {
    assert.deepEqual(await announced(port), { initialWindowSize: 65_535, connectionWindow: 65_535 });
  } finally {
    server.forceShutdown();
  }
});

test('widened, every session is granted 4 MiB per stream and 16 MiB per connection, and a 3 MB message arrives whole', async () => {
  const { server, port } = await echoServer();
  try {
    assert.equal(widenReceiveWindows(server), true);
    assert.deepEqual(await announced(port), { initialWindowSize: XDS_RECEIVE_WINDOWS.streamBytes, connectionWindow: XDS_RECEIVE_WINDOWS.connectionBytes });
    assert.deepEqual(XDS_RECEIVE_WINDOWS, { streamBytes: 4 * 1024 * 1024, connectionBytes: 16 * 1024 * 1024 });
    const Client = grpc.makeGenericClientConstructor(ECHO, 'Echo');
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const call = (client as unknown as Record<string, () => grpc.ClientDuplexStream<Buffer, Buffer>>)['Echo']!.call(client);
      const reply = new Promise<string>((resolve, reject) => {
        call.once('data', (b: Buffer) => resolve(b.toString()));
        call.once('error', reject);
      });
      call.write(Buffer.alloc(3_000_000, 1));
      assert.equal(await reply, '3000000');
      call.end();
    } finally {
      client.close();
    }
  } finally {
    server.forceShutdown();
  }
});

test('a server that was never bound has nothing to widen', () => {
  assert.equal(widenReceiveWindows(new grpc.Server()), false);
});
