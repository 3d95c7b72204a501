// Proxy identity as istio-agent sends it in the xDS node: the id
// `sidecar~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local` and node metadata
// (NAMESPACE, LABELS, CLUSTER_ID, NETWORK, INTERCEPTION_MODE, GENERATOR, INSTANCE_IPS, …).
import type { ProtoJson } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import { DEFAULT_CLUSTER_ID } from '../../registry/index.ts';

const TYPES = new Set(['sidecar', 'router']);
const MODES = new Set(['REDIRECT', 'TPROXY', 'NONE']);

function stringMap(v: unknown, field: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new Error(`node.metadata.${field}: expected an object of strings`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = String(x);
  return out;
}

/** Parses an xDS node into a Proxy; throws an Error whose message says what is wrong. */
export function proxyFromNode(node: ProtoJson): Proxy {
  const id = node['id'];
  if (typeof id !== 'string' || id === '') throw new Error('node.id: missing; expected sidecar~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local');
  const parts = id.split('~');
  if (parts.length !== 4) {
    throw new Error(`node.id ${JSON.stringify(id)}: expected 4 parts separated by "~" (sidecar~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local), got ${parts.length}`);
  }
  const [type = '', ip = '', podDotNs = '', dnsDomain = ''] = parts;
  if (!TYPES.has(type)) throw new Error(`node.id ${JSON.stringify(id)}: proxy type ${JSON.stringify(type)} is not sidecar or router`);
  if (ip === '') throw new Error(`node.id ${JSON.stringify(id)}: empty IP address`);
  const rawMeta = node['metadata'] ?? {};
  if (typeof rawMeta !== 'object' || rawMeta === null || Array.isArray(rawMeta)) throw new Error('node.metadata: expected an object');
  const metadata = rawMeta as Record<string, unknown>;
  const dot = podDotNs.lastIndexOf('.');
  const podName = dot > 0 ? podDotNs.slice(0, dot) : podDotNs;
  const idNamespace = dot > 0 ? podDotNs.slice(dot + 1) : '';
  const namespace = typeof metadata['NAMESPACE'] === 'string' && metadata['NAMESPACE'] !== ''
    ? metadata['NAMESPACE']
    : idNamespace || (dnsDomain.split('.')[0] ?? '');
  if (!namespace) throw new Error(`node.id ${JSON.stringify(id)}: no namespace (neither NAME.NAMESPACE in the id nor metadata NAMESPACE)`);
  const mode = String(metadata['INTERCEPTION_MODE'] ?? 'REDIRECT').toUpperCase();
  if (!MODES.has(mode)) throw new Error(`node.metadata.INTERCEPTION_MODE: ${JSON.stringify(mode)} is not REDIRECT, TPROXY or NONE`);
  const ips = typeof metadata['INSTANCE_IPS'] === 'string' && metadata['INSTANCE_IPS'] !== ''
    ? (metadata['INSTANCE_IPS']).split(',').map((s) => s.trim()).filter(Boolean)
    : [ip];
  if (!ips.includes(ip)) ips.unshift(ip);
  const generator = String(metadata['GENERATOR'] ?? '').toLowerCase() === 'grpc' ? 'grpc' : 'envoy';
  const proxy: Proxy = {
    id,
    type: type as Proxy['type'],
    ipAddresses: ips,
    podName,
    namespace,
    dnsDomain: dnsDomain || `${namespace}.svc.cluster.local`,
    labels: stringMap(metadata['LABELS'], 'LABELS'),
    metadata,
    clusterId: typeof metadata['CLUSTER_ID'] === 'string' && metadata['CLUSTER_ID'] !== '' ? metadata['CLUSTER_ID'] : DEFAULT_CLUSTER_ID,
    interceptionMode: mode as Proxy['interceptionMode'],
    generator,
  };
  if (typeof metadata['NETWORK'] === 'string' && metadata['NETWORK'] !== '') proxy.network = metadata['NETWORK'];
  const loc = node['locality'];
  if (loc && typeof loc === 'object') {
    const l = loc as Record<string, unknown>;
    const region = String(l['region'] ?? '');
    const zone = String(l['zone'] ?? '');
    const subZone = String(l['subZone'] ?? l['sub_zone'] ?? '');
    if (region || zone || subZone) proxy.locality = { region, zone, subZone };
  }
  return proxy;
}
