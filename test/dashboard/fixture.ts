// Access-log entries for the monitoring API's tests: a shop where w1, w2 and w3 call orders,
// w1 also calls users (a UF), and a caller outside the mesh calls orders (an app 500).
import type { AccessLogEntry } from '../../src/telemetry/index.ts';
import { originOf } from '../../src/telemetry/index.ts';

export const MIN = 60_000;
export const ORDERS = 'orders.shop.svc.cluster.local';
export const USERS = 'users.shop.svc.cluster.local';

/** One entry as the destination's sidecar reports a call of w1 to orders, with `e` over it. */
export function entry(now: number, e: Partial<AccessLogEntry>): AccessLogEntry {
  const code = e.responseCode ?? 200;
  const flags = e.responseFlags ?? '';
  return {
    time: now - MIN, durationMs: 5, reporter: 'destination', node: 'sidecar~127.0.3.9~orders-v1-abc.shop~shop.svc.cluster.local',
    sourceIp: '127.0.3.2', sourceWorkload: 'w1', sourceNamespace: 'shop', sourcePrincipal: '',
    destinationIp: '127.0.3.9:8080', destinationWorkload: 'orders-v1', destinationNamespace: 'shop', destinationService: ORDERS, destinationPort: 8080,
    method: 'GET', path: '/orders/1', operation: '/orders/{id}', authority: 'orders:8080', protocol: 'HTTP/1.1',
    responseCode: code, responseFlags: flags, origin: originOf(code, flags), bytesReceived: 0, bytesSent: 10,
    requestId: `r-${Math.random()}`, upstreamCluster: 'inbound|8080||', routeName: '',
    ...e,
  };
}

/**
 * The calls: w1, w2, w3 each call /orders/1 twice (the second a 404) and /orders/2 once, a second
 * apart; w1's own sidecar reports its calls too (the graph counts each call once); w1 calls
 * /users/7 (503 UF); 10.1.2.3, outside the mesh, calls /orders/3 (500).
 */
export function shopTraffic(now: number): AccessLogEntry[] {
  const out: AccessLogEntry[] = [];
  const callers = [['w1', '127.0.3.2'], ['w2', '127.0.3.3'], ['w3', '127.0.3.4']] as const;
  callers.forEach(([w, ip], i) => {
    out.push(entry(now, { sourceWorkload: w, sourceIp: ip, path: '/orders/1', time: now - 3 * MIN + i * 1000 }));
    out.push(entry(now, { sourceWorkload: w, sourceIp: ip, path: '/orders/1', time: now - 2 * MIN + i * 1000, responseCode: 404 }));
    out.push(entry(now, { sourceWorkload: w, sourceIp: ip, path: '/orders/2', time: now - 2 * MIN + i * 1000 + 500 }));
  });
  for (const e of out.filter((x) => x.sourceWorkload === 'w1')) out.push({ ...e, reporter: 'source', node: 'sidecar~127.0.3.2~w1-abc.shop~shop.svc.cluster.local', requestId: `${e.requestId}-s` });
  out.push(entry(now, { sourceWorkload: 'w1', sourceIp: '127.0.3.2', destinationService: USERS, destinationWorkload: 'users-v1', destinationIp: '127.0.3.10:8080', path: '/users/7', operation: '/users/{id}', responseCode: 503, responseFlags: 'UF', time: now - 90_000 }));
  out.push(entry(now, { sourceWorkload: '', sourceNamespace: '', sourceIp: '10.1.2.3', path: '/orders/3', time: now - 30_000, responseCode: 500 }));
  return out;
}
