// NDS for sidecars that capture DNS (node metadata DNS_CAPTURE, Istio's ISTIO_META_DNS_CAPTURE):
// Istio's NameTable, every host of the services in the proxy's scope with its addresses. A
// ServiceEntry without addresses gets one from Istio's auto-allocation range 240.240.0.0/16
// (unless DNS_AUTO_ALLOCATE is "false"), stable across snapshots: a hash of the host, probing
// on collision, so adding a service moves no other service's address.
import type { ProtoJson } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import type { Service } from '../../registry/index.ts';
import type { SextantPushContext } from '../push/context.ts';
import { sidecarScope } from '../push/scope.ts';

/** Istio's range for auto-allocated service addresses (class E: never routed anywhere). */
export const AUTO_ALLOCATE_PREFIX = '240.240';
const SLOTS = 65534; // 240.240.0.1 … 240.240.255.254

function truthy(v: unknown): boolean {
  return v === true || v === 'true' || v === 'TRUE' || v === 'True' || v === '1';
}

/** The proxy's DNS proxy is on, and wants the name table. */
export function dnsCaptureEnabled(proxy: Proxy): boolean {
  return truthy(proxy.metadata['DNS_CAPTURE']);
}

function autoAllocateEnabled(proxy: Proxy): boolean {
  const v = proxy.metadata['DNS_AUTO_ALLOCATE'];
  return v === undefined || truthy(v);
}

// FNV-1a, 32 bits: a stable spread of host names over the slots.
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The addresses a service has of its own (no ranges, not the unspecified address). */
function ownAddresses(svc: Service): string[] {
  return svc.addresses.filter((a) => !a.includes('/') && a !== '0.0.0.0' && a !== '::');
}

/** Whether the service gets an auto-allocated address: no address of its own, a concrete host, not passthrough. */
function needsAllocation(svc: Service): boolean {
  return ownAddresses(svc).length === 0 && !svc.hostname.startsWith('*') && svc.resolution !== 'NONE';
}

/**
 * Host → auto-allocated address for every service of the snapshot that needs one; each
 * host hashes to a slot and takes the next free one, hosts placed in name order.
 */
export function autoAllocatedAddresses(push: SextantPushContext): ReadonlyMap<string, string> {
  return push.memoize('nds-auto-allocate', () => {
    const hosts = [...new Set(push.registry.services.filter(needsAllocation).map((s) => s.hostname))].sort();
    const taken = new Set<number>();
    const out = new Map<string, string>();
    for (const host of hosts.slice(0, SLOTS)) {
      let slot = fnv1a(host) % SLOTS;
      while (taken.has(slot)) slot = (slot + 1) % SLOTS;
      taken.add(slot);
      const n = slot + 1;
      out.set(host, `${AUTO_ALLOCATE_PREFIX}.${n >> 8}.${n & 255}`);
    }
    return out;
  });
}

// `name.namespace.svc.<domain>`: a Kubernetes-style host, which short names also reach.
const KUBE_HOST = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc\.[^*]+$/;

/** The proxy's NameTable (JSON form), memoized per scope. */
export function nameTable(push: SextantPushContext, proxy: Proxy): ProtoJson {
  const scope = sidecarScope(push, proxy);
  const auto = autoAllocateEnabled(proxy);
  return push.memoize(`nds|${scope.namespace}|${scope.sidecar?.key ?? ''}|${auto}`, () => {
    const allocated = auto ? autoAllocatedAddresses(push) : new Map<string, string>();
    const table: Record<string, ProtoJson> = {};
    for (const svc of scope.services) {
      if (table[svc.hostname] !== undefined) continue; // the first visible service of a host wins, as in routing
      const own = ownAddresses(svc);
      const ips = own.length > 0 ? own : allocated.has(svc.hostname) ? [allocated.get(svc.hostname)!] : [];
      if (ips.length === 0) continue;
      const info: ProtoJson = { ips };
      const kube = KUBE_HOST.exec(svc.hostname);
      if (kube) {
        info['registry'] = 'Kubernetes';
        info['shortname'] = kube[1]!;
        info['namespace'] = kube[3]!;
      } else {
        info['registry'] = 'External';
      }
      table[svc.hostname] = info;
    }
    return { table };
  });
}
