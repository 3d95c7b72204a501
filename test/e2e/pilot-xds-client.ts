// A proxyless gRPC client for the pilot's end-to-end test, run as a child process: it resolves
// `xds:///TARGET` through @grpc/grpc-js-xds (bootstrap in GRPC_XDS_BOOTSTRAP_CONFIG) and, for
// each stdin line `CALLS [HEADER=VALUE]`, makes that many calls and prints the count per reply.
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { createInterface } from 'node:readline';

grpcXds.register();
const target = process.argv[2];
if (target === undefined) throw new Error('usage: pilot-xds-client.ts xds:///HOST:PORT');

const Greeter = grpc.makeGenericClientConstructor({
  SayHello: {
    path: '/greeter.Greeter/SayHello', requestStream: false, responseStream: false,
    requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b.toString('utf8'),
  },
}, 'Greeter');
const client = new Greeter(target, grpc.credentials.createInsecure());
const sayHello = (client as unknown as Record<string, (req: Buffer, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v?: string) => void) => void>)['SayHello']!.bind(client);

function call(md: grpc.Metadata): Promise<string> {
  return new Promise((resolve) => {
    sayHello(Buffer.from('hi'), md, { deadline: Date.now() + 10_000 }, (err, value) => resolve(err ? `error:${err.code}` : (value ?? '')));
  });
}

for await (const line of createInterface({ input: process.stdin })) {
  const [countText, header] = line.trim().split(/\s+/);
  const md = new grpc.Metadata();
  if (header !== undefined) {
    const [k, v] = header.split('=');
    md.set(k!, v ?? '');
  }
  const counts: Record<string, number> = {};
  for (let i = 0; i < Number(countText); i++) {
    const r = await call(md);
    counts[r] = (counts[r] ?? 0) + 1;
  }
  process.stdout.write(JSON.stringify(counts) + '\n');
}
client.close();
