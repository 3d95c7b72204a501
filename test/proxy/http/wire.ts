// Raw TCP helpers for codec tests: servers and clients on loopback that see exact bytes.
import net from 'node:net';
import { after } from 'node:test';

export interface RawServer {
  port: number;
  server: net.Server;
  /** Every accepted socket, in order. */
  sockets: net.Socket[];
  close(): Promise<void>;
}

/** A net server on `host` (127.0.0.1 by default) with `onSocket` per connection; closed after the test file. */
export async function rawServer(onSocket: (s: net.Socket) => void, opts: net.ServerOpts = {}, host = '127.0.0.1'): Promise<RawServer> {
  const sockets: net.Socket[] = [];
  const server = net.createServer(opts, (s) => {
    sockets.push(s);
    s.on('error', () => {});
    onSocket(s);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as net.AddressInfo).port;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  after(close);
  return { port, server, sockets, close };
}

/** A client connection that accumulates everything it receives (latin1). */
export class RawClient {
  readonly socket: net.Socket;
  received = '';
  ended = false;
  private waiters: Array<() => void> = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (b: Buffer) => {
      this.received += b.toString('latin1');
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    const s = net.connect(port, host);
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    const c = new RawClient(s);
    after(() => s.destroy());
    return c;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  write(s: string | Buffer): void {
    this.socket.write(typeof s === 'string' ? Buffer.from(s, 'latin1') : s);
  }

  /** Waits until `pred(received)` holds or the connection closed; returns what was received. */
  async until(pred: (s: string) => boolean, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.received) && !this.ended) {
      if (Date.now() > deadline) throw new Error(`timed out waiting; received so far: ${JSON.stringify(this.received)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.received;
  }

  /** Waits for the peer to close; returns everything received. */
  async untilClosed(timeoutMs = 10_000): Promise<string> {
    await this.until(() => false, timeoutMs).catch((e: unknown) => {
      if (!this.ended) throw e;
    });
    return this.received;
  }
}

/** Collects the bytes a socket receives until `pred` holds. */
export function collect(s: net.Socket): { text(): string; until(pred: (t: string) => boolean): Promise<string> } {
  let text = '';
  const waiters: Array<() => void> = [];
  s.on('data', (b: Buffer) => {
    text += b.toString('latin1');
    for (const w of waiters.splice(0)) w();
  });
  return {
    text: () => text,
    until: async (pred) => {
      const deadline = Date.now() + 10_000;
      while (!pred(text)) {
        if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(text)}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 50);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      return text;
    },
  };
}

/** Index after the end of the first HTTP head in `s`, or -1. */
export function headEnd(s: string): number {
  const i = s.indexOf('\r\n\r\n');
  return i < 0 ? -1 : i + 4;
}

/** Count of complete requests/responses framed by Content-Length in `s` (test servers only send those). */
export function countMessages(s: string): number {
  let n = 0;
  let pos = 0;
  for (;;) {
    const i = s.indexOf('\r\n\r\n', pos);
    if (i < 0) return n;
    const head = s.slice(pos, i);
    const m = /\r\ncontent-length: *(\d+)/i.exec(head);
    const len = m ? Number(m[1]) : 0;
    if (s.length < i + 4 + len) return n;
    n++;
    pos = i + 4 + len;
  }
}
