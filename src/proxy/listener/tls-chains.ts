// Choosing among a listener's TLS filter chains as Envoy does once tls_inspector has read the
// ClientHello: by server name (exact, then the longest wildcard), then transport protocol, then
// the ALPN values the client offered. Used for gateways' SNI chains (several hosts on one port,
// terminated or passed through) and any TLS chain that is not plain mesh mTLS.
import type net from 'node:net';
import { CLIENT_HELLO_MAX_BYTES, parseClientHello, serverNameRank } from '../tls/client-hello.ts';
import type { ClientHello } from '../tls/client-hello.ts';
import type { FilterChainSpec } from './listener-spec.ts';

/** Whether the TLS chains need the ClientHello read first (SNI, or anything but mesh mTLS). */
export function needsClientHello(chains: readonly FilterChainSpec[]): boolean {
  return chains.some((c) => c.serverNames.length > 0 || c.tls === undefined || !c.tls.mesh);
}

/**
 * The chain a ClientHello selects among `chains` (already ordered by destination and source
 * match), or undefined: names first (a chain without names matches any), then an explicit
 * `tls` transport protocol over none, then an ALPN match over no ALPN criterion.
 */
export function selectTlsChain(chains: readonly FilterChainSpec[], hello: ClientHello): FilterChainSpec | undefined {
  let best: FilterChainSpec | undefined;
  let bestScore = -1;
  for (const c of chains) {
    if (c.transportProtocol !== undefined && c.transportProtocol !== 'tls') continue;
    const name = serverNameRank(c.serverNames, hello.sni);
    if (name < 0) continue;
    let alpn = 0;
    if (c.applicationProtocols.length > 0) {
      if (!c.applicationProtocols.some((p) => hello.alpn.includes(p))) continue;
      alpn = 1;
    }
    const score = name * 4 + (c.transportProtocol === 'tls' || c.tls !== undefined ? 2 : 0) + alpn;
    if (score > bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}

/**
 * Reads a paused socket until its ClientHello is complete, then puts every byte back (the
 * handshake or the passthrough replays them) and leaves it paused. Resolves undefined when the
 * bytes are not a ClientHello, exceed the bound, or do not come within `timeoutMs`.
 */
export function readClientHello(socket: net.Socket, timeoutMs: number): Promise<ClientHello | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (hello: ClientHello | undefined): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.pause();
      if (size > 0) socket.unshift(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      resolve(hello);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      size += chunk.length;
      const r = parseClientHello(chunks.length === 1 ? chunk : Buffer.concat(chunks));
      if (r === 'incomplete' && size <= CLIENT_HELLO_MAX_BYTES) return;
      finish(r === 'incomplete' || r === 'invalid' ? undefined : r);
    };
    const onEnd = (): void => finish(undefined);
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.resume();
  });
}
