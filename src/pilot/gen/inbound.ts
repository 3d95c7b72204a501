// The inbound side of a proxy: which ports it accepts traffic on and where that traffic
// goes (the Sidecar's ingress listeners, or the ports of the services the workload backs).
import type { Proxy } from '../model.ts';
import { portProtocol } from '../../registry/index.ts';
import type { Protocol } from '../../registry/index.ts';
import type { SextantPushContext } from '../push/context.ts';
import { proxyServiceTargets, sidecarScope } from '../push/scope.ts';

export interface InboundPort {
  /** The port traffic arrives on (the Sidecar ingress port or the workload's target port). */
  port: number;
  name: string;
  protocol: Protocol;
  /** Address the listener binds to when it is not captured (captureMode NONE). */
  bind?: string;
  /** Where the application listens; absent means the original destination (iptables capture). */
  endpoint?: { address: string; port: number };
}

function parseEndpoint(s: string, proxy: Proxy): { address: string; port: number } | undefined {
  const i = s.lastIndexOf(':');
  if (i <= 0 || s.startsWith('unix://')) return undefined;
  const port = Number(s.slice(i + 1));
  if (!Number.isInteger(port)) return undefined;
  let address = s.slice(0, i).replace(/^\[|\]$/g, '');
  // 0.0.0.0 means "the workload's own address" (Istio forwards to the original destination IP).
  if (address === '0.0.0.0' || address === '::') address = proxy.ipAddresses[0] ?? '127.0.0.1';
  return { address, port };
}

/** The proxy's inbound ports, memoized per snapshot for identical proxies. */
export function inboundPorts(push: SextantPushContext, proxy: Proxy): InboundPort[] {
  const scope = sidecarScope(push, proxy);
  const ingress = scope.sidecar?.spec.ingress ?? [];
  if (ingress.length > 0) {
    const out: InboundPort[] = [];
    for (const ing of ingress) {
      if (!ing.port?.number) continue;
      const ib: InboundPort = { port: ing.port.number, name: ing.port.name ?? `port-${ing.port.number}`, protocol: portProtocol(ing.port) };
      const captureNone = ing.captureMode === 'NONE' || proxy.interceptionMode === 'NONE';
      if (ing.bind) ib.bind = ing.bind;
      else if (captureNone) ib.bind = proxy.ipAddresses[0] ?? '0.0.0.0';
      if (ing.defaultEndpoint) {
        const ep = parseEndpoint(ing.defaultEndpoint, proxy);
        if (ep) ib.endpoint = ep;
      } else if (captureNone) {
        ib.endpoint = { address: '127.0.0.1', port: ing.port.number };
      }
      out.push(ib);
    }
    return out;
  }
  // Without iptables there is nothing to capture: inbound needs a Sidecar ingress.
  if (proxy.interceptionMode === 'NONE') return [];
  const seen = new Map<number, InboundPort>();
  for (const t of proxyServiceTargets(push, proxy)) {
    if (!seen.has(t.targetPort)) seen.set(t.targetPort, { port: t.targetPort, name: t.portName, protocol: t.protocol as Protocol });
  }
  return [...seen.values()].sort((a, b) => a.port - b.port);
}
