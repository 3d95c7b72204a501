// Free loopback ports for tests. A port is picked below the kernel's ephemeral range: a port
// the kernel handed out for port 0 and got back could be handed out again at once, to a
// server another test file (running alongside) starts on port 0, before the test binds it.
import { readFileSync } from 'node:fs';
import net from 'node:net';

const LOWEST = 10_000;

// The first port of net.ipv4.ip_local_port_range (Linux's default 32768 when unreadable).
function ephemeralStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > LOWEST + 1000 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

const HIGHEST = ephemeralStart();

function canListen(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.unref();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

/** A port on `host` that nothing listens on, outside the range the kernel picks from. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = LOWEST + Math.floor(Math.random() * (HIGHEST - LOWEST));
    if (await canListen(port, host)) return port;
  }
  throw new Error(`no free port on ${host} in ${LOWEST}..${HIGHEST - 1} after 200 tries`);
}
