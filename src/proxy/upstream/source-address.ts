// Which source address outbound connections may bind to: only addresses of this host
// (any of 127.0.0.0/8 and ::1, which Linux routes locally, or an interface's address);
// binding any other address fails with EADDRNOTAVAIL.
import net from 'node:net';
import os from 'node:os';

let interfaceAddresses: Set<string> | null = null;

function interfaces(): Set<string> {
  if (interfaceAddresses === null) {
    interfaceAddresses = new Set();
    for (const list of Object.values(os.networkInterfaces())) {
      for (const a of list ?? []) interfaceAddresses.add(a.address);
    }
  }
  return interfaceAddresses;
}

/** True when `ip` is an address this host can bind a connection's source to. */
export function isLocalAddress(ip: string): boolean {
  const family = net.isIP(ip);
  if (family === 4) return ip.startsWith('127.') || interfaces().has(ip);
  if (family === 6) return ip === '::1' || interfaces().has(ip);
  return false;
}
