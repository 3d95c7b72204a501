// A gRPC echo service for tests, defined without .proto files (messages are raw bytes):
// unary, server streaming, client streaming and bidi, with behaviour chosen per call by
// metadata (status to fail with, trailers to add, messages to stream, delays).
import * as grpc from '@grpc/grpc-js';

const id = (b: Buffer): Buffer => b;
const method = (name: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> => ({
  path: `/sextant.test.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: id,
  requestDeserialize: id,
  responseSerialize: id,
  responseDeserialize: id,
  originalName: name,
});

export const ECHO_SERVICE = {
  unary: method('Unary', false, false),
  serverStream: method('ServerStream', false, true),
  clientStream: method('ClientStream', true, false),
  bidi: method('Bidi', true, true),
} satisfies grpc.ServiceDefinition;

export const MAX_MESSAGE = 64 * 1024 * 1024;
const SIZE_OPTIONS = { 'grpc.max_receive_message_length': MAX_MESSAGE, 'grpc.max_send_message_length': MAX_MESSAGE };

export interface EchoServer {
  name: string;
  port: number;
  calls: number;
  /** Calls whose caller cancelled them (deadline, reset). */
  cancelled: number;
  /** Unary calls to fail with UNAVAILABLE before answering (a flaky server). */
  failNext: number;
  /** Metadata of the last call. */
  lastMetadata: grpc.Metadata | undefined;
  close(): Promise<void>;
  /** Stops at once, resetting calls in flight (a killed server). */
  kill(): void;
}

function header(md: grpc.Metadata, name: string): string | undefined {
  const v = md.get(name)[0];
  return v === undefined ? undefined : String(v);
}

// `x-fail-code` (status), `x-fail-message`, `x-trailer-*` (echoed into trailers) drive the answer.
function finish(md: grpc.Metadata, server: EchoServer): { error: grpc.ServiceError | null; trailers: grpc.Metadata } {
  const trailers = new grpc.Metadata();
  trailers.set('x-served-by', server.name);
  for (const [k, v] of Object.entries(md.getMap())) if (k.startsWith('x-trailer-')) trailers.set(k, String(v));
  const code = header(md, 'x-fail-code');
  if (code === undefined) return { error: null, trailers };
  const error = Object.assign(new Error(header(md, 'x-fail-message') ?? 'failed'), { code: Number(code), details: header(md, 'x-fail-message') ?? 'failed', metadata: trailers }) as grpc.ServiceError;
  return { error, trailers };
}

/** Starts an echo server on `host` (127.0.0.1 by default), port 0 unless given. */
export async function startEchoServer(name: string, host = '127.0.0.1', port = 0): Promise<EchoServer> {
  const server = new grpc.Server(SIZE_OPTIONS);
  const s: EchoServer = { name, port: 0, calls: 0, cancelled: 0, failNext: 0, lastMetadata: undefined, close: async () => {}, kill: () => {} };
  // grpc-js emits 'cancelled' at the end of every call: a cancellation is one seen before the answer
  const answered = new WeakSet<object>();
  const track = (call: { on(e: 'cancelled', f: () => void): unknown; metadata: grpc.Metadata }): void => {
    s.calls++;
    s.lastMetadata = call.metadata;
    call.on('cancelled', () => { if (!answered.has(call)) s.cancelled++; });
  };
  server.addService(ECHO_SERVICE, {
    unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      track(call);
      if (s.failNext > 0) {
        s.failNext--;
        answered.add(call);
        cb({ code: grpc.status.UNAVAILABLE, details: 'flaky' } as grpc.ServiceError);
        return;
      }
      const delay = Number(header(call.metadata, 'x-delay-ms') ?? 0);
      const answer = (): void => {
        if (call.cancelled) return;
        answered.add(call);
        const { error, trailers } = finish(call.metadata, s);
        const initial = new grpc.Metadata();
        initial.set('x-echo-server', name);
        call.sendMetadata(initial);
        if (error) cb(error);
        else cb(null, Buffer.concat([Buffer.from(`${name}:`), call.request]), trailers);
      };
      if (delay > 0) setTimeout(answer, delay);
      else answer();
    },
    serverStream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      track(call);
      const n = Number(header(call.metadata, 'x-count') ?? 1);
      const interval = Number(header(call.metadata, 'x-interval-ms') ?? 0);
      let i = 0;
      const next = (): void => {
        if (call.cancelled) return;
        while (i < n) {
          const ok = call.write(Buffer.from(String(i++)));
          if (interval > 0) { setTimeout(next, interval); return; }
          if (!ok) { call.once('drain', next); return; }
        }
        answered.add(call);
        const { error, trailers } = finish(call.metadata, s);
        if (error) call.emit('error', error);
        else call.end(trailers);
      };
      next();
    },
    clientStream: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      track(call);
      let count = 0;
      let bytes = 0;
      call.on('data', (b: Buffer) => { count++; bytes += b.length; });
      call.on('end', () => {
        answered.add(call);
        const { error, trailers } = finish(call.metadata, s);
        if (error) cb(error);
        else cb(null, Buffer.from(`${count} messages ${bytes} bytes`), trailers);
      });
    },
    bidi: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      track(call);
      call.on('data', (b: Buffer) => call.write(b));
      call.on('end', () => {
        answered.add(call);
        const { error, trailers } = finish(call.metadata, s);
        if (error) call.emit('error', error);
        else call.end(trailers);
      });
    },
  });
  s.port = await new Promise<number>((resolve, reject) => server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  s.close = () => new Promise<void>((r) => server.tryShutdown(() => r()));
  s.kill = () => server.forceShutdown();
  return s;
}

export type EchoClient = grpc.Client & {
  unary: (req: Buffer, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Buffer) => void) => grpc.ClientUnaryCall;
  serverStream: (req: Buffer, md: grpc.Metadata, opts?: grpc.CallOptions) => grpc.ClientReadableStream<Buffer>;
  clientStream: (md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Buffer) => void) => grpc.ClientWritableStream<Buffer>;
  bidi: (md: grpc.Metadata, opts?: grpc.CallOptions) => grpc.ClientDuplexStream<Buffer, Buffer>;
};

const EchoClientCtor = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo');

/** A client of `address` that sends `authority` as :authority (the service's name, as a mesh app would). */
export function echoClient(address: string, authority?: string): EchoClient {
  return new EchoClientCtor(address, grpc.credentials.createInsecure(), {
    ...SIZE_OPTIONS,
    ...(authority !== undefined ? { 'grpc.default_authority': authority } : {}),
    'grpc.enable_retries': 0,
  }) as unknown as EchoClient;
}

export interface UnaryResult {
  error: grpc.ServiceError | null;
  value: Buffer | undefined;
  headers: grpc.Metadata | undefined;
  trailers: grpc.Metadata | undefined;
}

/** One unary call, resolved with everything the client saw. */
export function unary(client: EchoClient, body: Buffer | string, md: Record<string, string> = {}, opts: grpc.CallOptions = {}): Promise<UnaryResult> {
  const meta = new grpc.Metadata();
  for (const [k, v] of Object.entries(md)) meta.set(k, v);
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    let trailers: grpc.Metadata | undefined;
    let done: { error: grpc.ServiceError | null; value: Buffer | undefined } | undefined;
    const call = client.unary(Buffer.from(body), meta, opts, (error, value) => { done = { error, value }; });
    call.on('metadata', (m) => { headers = m; });
    call.on('status', (st) => {
      trailers = st.metadata;
      // the callback runs before 'status'
      setImmediate(() => resolve({ error: done?.error ?? null, value: done?.value, headers, trailers }));
    });
  });
}

/**
 * A `greeter.Greeter/SayHello` server on 127.0.0.1 (a free port) that answers every call with
 * `reply` (raw bytes, no .proto), for tests of routing between gRPC versions.
 */
export function startGreeter(reply: string): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  server.addService({
    SayHello: {
      path: '/greeter.Greeter/SayHello', requestStream: false, responseStream: false,
      requestSerialize: id, requestDeserialize: id,
      responseSerialize: id, responseDeserialize: id,
    },
  }, { SayHello: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(reply)) } as grpc.UntypedServiceImplementation);
  return new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve({ server, port }))));
}
