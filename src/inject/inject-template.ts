// What injection adds to a pod: the `sextant-init` container (`sextant iptables`, with the
// ports the pod's annotations name), the `sextant-proxy` sidecar (first among the containers,
// held by a postStart `sextant wait` until it is ready, M10) and its volume. The mesh-wide
// settings come from `InjectOptions`; each pod can override some with Istio's annotations.
import type { JsonValue } from './inject-patch.ts';
// The env both `sextant iptables` and the proxy read the source-preserving ranges from.
import { PRESERVE_SOURCE_RANGES_ENV } from './iptables/index.ts';

export const PROXY_CONTAINER = 'sextant-proxy';
export const INIT_CONTAINER = 'sextant-init';
export const DATA_VOLUME = 'sextant-data';
/**
 * The closed control plane's two per-namespace objects the sidecar mounts (Istio's
 * `istio-ca-root-cert` ConfigMap, and a bootstrap token in place of Istio's projected
 * service-account token, which needs the Kubernetes API's TokenReview): the mesh root that
 * checks the pilot, and the token its CA takes for a first certificate in that namespace.
 */
export const CA_ROOT_CONFIGMAP = 'sextant-ca-root-cert';
export const CA_ROOT_VOLUME = 'sextant-ca-root';
export const CA_ROOT_DIR = '/etc/sextant/ca-root';
export const BOOTSTRAP_TOKEN_SECRET = 'sextant-bootstrap-token';
export const BOOTSTRAP_TOKEN_VOLUME = 'sextant-bootstrap-token';
export const BOOTSTRAP_TOKEN_DIR = '/var/run/secrets/sextant';
/** The proxy's uid: `sextant iptables` never captures its traffic (Istio's 1337). */
export const PROXY_UID = 1337;

/** Istio's annotations and labels that injection reads (or writes: STATUS). */
export const ANNOTATION = {
  inject: 'sidecar.istio.io/inject',
  status: 'sidecar.istio.io/status',
  interceptionMode: 'sidecar.istio.io/interceptionMode',
  proxyImage: 'sidecar.istio.io/proxyImage',
  logLevel: 'sidecar.istio.io/logLevel',
  proxyCPU: 'sidecar.istio.io/proxyCPU',
  proxyMemory: 'sidecar.istio.io/proxyMemory',
  proxyCPULimit: 'sidecar.istio.io/proxyCPULimit',
  proxyMemoryLimit: 'sidecar.istio.io/proxyMemoryLimit',
  includeInboundPorts: 'traffic.sidecar.istio.io/includeInboundPorts',
  excludeInboundPorts: 'traffic.sidecar.istio.io/excludeInboundPorts',
  includeOutboundPorts: 'traffic.sidecar.istio.io/includeOutboundPorts',
  excludeOutboundPorts: 'traffic.sidecar.istio.io/excludeOutboundPorts',
  includeOutboundIPRanges: 'traffic.sidecar.istio.io/includeOutboundIPRanges',
  excludeOutboundIPRanges: 'traffic.sidecar.istio.io/excludeOutboundIPRanges',
  dnsCapture: 'sextant.io/dnsCapture',
  defaultContainer: 'kubectl.kubernetes.io/default-container',
} as const;

export type InterceptionMode = 'REDIRECT' | 'NONE';

/** The sidecar's ports (Istio's numbers). Only tests running several pods on one host change them. */
export interface SidecarPorts {
  /** Outbound capture (`virtualOutbound`); pilot-generated, listed for the rules. */
  outbound: number;
  /** Inbound capture (`virtualInbound`). */
  inbound: number;
  /** Admin, on the pod's loopback. */
  admin: number;
  /** `/healthz/ready`: the readiness probe and `sextant wait`. */
  health: number;
  /** Prometheus `/stats/prometheus`. */
  stats: number;
}

export const DEFAULT_PORTS: SidecarPorts = { outbound: 15001, inbound: 15006, admin: 15000, health: 15021, stats: 15090 };

export interface InjectOptions {
  /** The pilot's xDS address the sidecar connects to, `host:port` (several comma-separated). */
  pilotAddress: string;
  /** The cluster the pods run in (node metadata CLUSTER_ID), M3. */
  clusterId: string;
  /** The network the pods are on (node metadata NETWORK); not set when absent. */
  network?: string;
  /** The data centre and region of the pods (env SEXTANT_DC, SEXTANT_REGION), M20. */
  dataCentre?: string;
  region?: string;
  /** The image holding `sextant` (its entrypoint or PATH); the annotation proxyImage overrides it. */
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** Pods without the interceptionMode annotation; NONE adds no init container. */
  interceptionMode: InterceptionMode;
  /** Outbound ports captured for pods without the includeOutboundPorts annotation (M8); none when absent. */
  includeOutboundPorts?: string;
  /** Turn on the sidecar's DNS proxy and capture port 53 (opt-in, as in Istio). */
  dnsCapture: boolean;
  /**
   * Callers in these ranges keep their IP as the app's TCP peer (M17): given to both the
   * rules and the sidecar, as env SEXTANT_PRESERVE_SOURCE_RANGES. Usually the pod CIDR.
   */
  preserveSourceRanges?: string;
  ports: SidecarPorts;
  /** The sidecar's log level, unless the logLevel annotation says otherwise. */
  logLevel: string;
  /**
   * The pilot serves plaintext xDS (`sextant pilot --plaintext-xds`): the sidecars mount no root
   * and no token. Off by default: they check the pilot against CA_ROOT_CONFIGMAP and present
   * BOOTSTRAP_TOKEN_SECRET for their first certificate.
   */
  plaintextXds?: boolean;
}

export const DEFAULT_OPTIONS: InjectOptions = {
  pilotAddress: 'sextant-pilot.sextant-system.svc:15010',
  clusterId: 'Kubernetes',
  image: 'sextant/sextant:0.1.0',
  interceptionMode: 'REDIRECT',
  dnsCapture: false,
  ports: DEFAULT_PORTS,
  logLevel: 'info',
};

/** A pod that cannot be injected as written: names the field and what is expected. */
export class InjectError extends Error {
  override name = 'InjectError';
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

/** The parts of a container injection reads; everything else is kept as it came. */
export interface Container {
  name: string;
  ports?: { containerPort?: number; protocol?: string }[];
  [field: string]: unknown;
}

const PORT_LIST = /^\s*\d{1,5}(\s*,\s*\d{1,5})*\s*$/;
const IP_RANGE = /^(\d{1,3}\.){3}\d{1,3}(\/\d{1,2})?$|^[0-9a-fA-F:]*:[0-9a-fA-F:.]*(\/\d{1,3})?$/;

/** A comma-separated port list as `sextant iptables` takes it (`'*'` where `star` allows it). */
export function portList(value: string, field: string, star = false): number[] | '*' {
  if (star && value.trim() === '*') return '*';
  if (value.trim() === '') return [];
  if (!PORT_LIST.test(value)) throw new InjectError(field, `expected comma-separated ports${star ? " or '*'" : ''}, got ${JSON.stringify(value)}`);
  const ports = value.split(',').map((p) => Number(p.trim()));
  const bad = ports.find((p) => p < 1 || p > 65535);
  if (bad !== undefined) throw new InjectError(field, `port ${bad} is out of range 1-65535`);
  return [...new Set(ports)];
}

/** A comma-separated list of CIDRs (or addresses); throws an InjectError naming `field`. */
export function ipRanges(value: string, field: string): string[] {
  const ranges = value.split(',').map((r) => r.trim()).filter((r) => r !== '');
  const bad = ranges.find((r) => !IP_RANGE.test(r));
  if (bad !== undefined) throw new InjectError(field, `expected comma-separated CIDRs such as 10.0.0.0/8, got ${JSON.stringify(bad)}`);
  return ranges;
}

const TRUE_WORDS = new Set(['true', 'y', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', 'n', 'no', 'off']);

/** `sidecar.istio.io/inject`'s value as Istio reads it: true, false, or not said. */
export function injectAnswer(value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  const v = value.trim().toLowerCase();
  if (TRUE_WORDS.has(v)) return true;
  if (FALSE_WORDS.has(v)) return false;
  return undefined;
}

/** What the pod's annotations and the options decide, checked once. */
export interface SidecarSettings {
  mode: InterceptionMode;
  image: string;
  logLevel: string;
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  /** Captured inbound: the declared (or annotated) ports less the excluded ones and the sidecar's own. */
  inboundPorts: number[];
  outboundPorts: number[] | undefined;
  excludeOutboundPorts: number[];
  /** Empty: every destination. */
  includeOutboundIPRanges: string[];
  excludeOutboundIPRanges: string[];
  dnsCapture: boolean;
  /** What the pod asked for that injection did differently, said to the user. */
  warnings: string[];
}

const QUANTITY = /^\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$/;
const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/**
 * Reads the annotations; `containers` are the pod's own, whose declared ports are the
 * inbound ports captured when the annotation names none (M9: only declared ports).
 */
export function sidecarSettings(annotations: Record<string, string>, containers: readonly Container[], o: InjectOptions, at: string): SidecarSettings {
  const a = (key: string): string | undefined => annotations[key];
  const field = (key: string): string => `${at}.metadata.annotations[${JSON.stringify(key)}]`;

  const modeValue = a(ANNOTATION.interceptionMode)?.trim().toUpperCase() ?? o.interceptionMode;
  if (modeValue === 'TPROXY') throw new InjectError(field(ANNOTATION.interceptionMode), 'TPROXY is not offered by sextant iptables; use REDIRECT (keeps the caller\'s source IP on inbound) or NONE');
  if (modeValue !== 'REDIRECT' && modeValue !== 'NONE') throw new InjectError(field(ANNOTATION.interceptionMode), `expected REDIRECT or NONE, got ${JSON.stringify(a(ANNOTATION.interceptionMode))}`);

  const logLevel = a(ANNOTATION.logLevel)?.trim() ?? o.logLevel;
  if (!LOG_LEVELS.has(logLevel)) throw new InjectError(field(ANNOTATION.logLevel), `expected one of ${[...LOG_LEVELS].join(', ')}, got ${JSON.stringify(logLevel)}`);

  const quantity = (key: string, fallback: string): string => {
    const v = a(key)?.trim() ?? fallback;
    if (!QUANTITY.test(v)) throw new InjectError(field(key), `expected a Kubernetes quantity such as 100m or 128Mi, got ${JSON.stringify(v)}`);
    return v;
  };
  const resources = {
    requests: { cpu: quantity(ANNOTATION.proxyCPU, '100m'), memory: quantity(ANNOTATION.proxyMemory, '128Mi') },
    limits: { cpu: quantity(ANNOTATION.proxyCPULimit, '2'), memory: quantity(ANNOTATION.proxyMemoryLimit, '1Gi') },
  };

  const warnings: string[] = [];
  const declared = [...new Set(containers.flatMap((c) => (c.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => p.containerPort).filter((p): p is number => typeof p === 'number')))].sort((x, y) => x - y);
  const includeIn = a(ANNOTATION.includeInboundPorts);
  let included = includeIn !== undefined ? portList(includeIn, field(ANNOTATION.includeInboundPorts), true) : declared;
  if (included === '*') {
    // M9: a port scan must never reach the sidecar, so '*' cannot mean every port here.
    warnings.push(`${field(ANNOTATION.includeInboundPorts)}: '*' captures the containers' declared ports only (${declared.length > 0 ? declared.join(',') : 'none'}); list the ports to capture others`);
    included = declared;
  }
  const excludeIn = a(ANNOTATION.excludeInboundPorts);
  // The sidecar's own ports are never captured inbound (Istio's -d 15090,15021,15020).
  const excluded = new Set([o.ports.stats, o.ports.health, o.ports.admin, o.ports.outbound, o.ports.inbound, ...(excludeIn !== undefined ? (portList(excludeIn, field(ANNOTATION.excludeInboundPorts)) as number[]) : [])]);
  const inboundPorts = included.filter((p) => !excluded.has(p));

  const includeOut = a(ANNOTATION.includeOutboundPorts) ?? o.includeOutboundPorts;
  const outboundPorts = includeOut !== undefined ? (portList(includeOut, a(ANNOTATION.includeOutboundPorts) !== undefined ? field(ANNOTATION.includeOutboundPorts) : '--include-outbound-ports') as number[]) : undefined;
  const excludeOut = a(ANNOTATION.excludeOutboundPorts);
  const excludeOutboundPorts = excludeOut !== undefined ? (portList(excludeOut, field(ANNOTATION.excludeOutboundPorts)) as number[]) : [];
  const includeRanges = a(ANNOTATION.includeOutboundIPRanges)?.trim();
  const includeOutboundIPRanges = includeRanges !== undefined && includeRanges !== '*' ? ipRanges(includeRanges, field(ANNOTATION.includeOutboundIPRanges)) : [];
  const excludeRanges = a(ANNOTATION.excludeOutboundIPRanges);
  const excludeOutboundIPRanges = excludeRanges !== undefined ? ipRanges(excludeRanges, field(ANNOTATION.excludeOutboundIPRanges)) : [];

  const dnsValue = a(ANNOTATION.dnsCapture);
  const dnsAnswer = injectAnswer(dnsValue);
  if (dnsValue !== undefined && dnsAnswer === undefined) throw new InjectError(field(ANNOTATION.dnsCapture), `expected "true" or "false", got ${JSON.stringify(dnsValue)}`);

  return {
    mode: modeValue,
    image: a(ANNOTATION.proxyImage)?.trim() || o.image,
    logLevel,
    resources,
    inboundPorts,
    outboundPorts,
    excludeOutboundPorts,
    includeOutboundIPRanges,
    excludeOutboundIPRanges,
    dnsCapture: dnsAnswer ?? o.dnsCapture,
    warnings,
  };
}

const join = (ports: readonly number[]): string => ports.join(',');

/** `sextant iptables` with the pod's ports: the init container, run as root with NET_ADMIN. */
export function initContainer(s: SidecarSettings, o: InjectOptions): JsonValue {
  const args = ['iptables', '--proxy-uid', String(PROXY_UID)];
  // Inbound: only the declared ports, less the excluded ones and the sidecar's own (M9).
  if (s.inboundPorts.length > 0) args.push('--include-inbound-ports', join(s.inboundPorts));
  if (s.outboundPorts !== undefined && s.outboundPorts.length > 0) args.push('--include-outbound-ports', join(s.outboundPorts));
  if (s.excludeOutboundPorts.length > 0) args.push('--exclude-outbound-ports', join(s.excludeOutboundPorts));
  if (s.includeOutboundIPRanges.length > 0) args.push('--include-outbound-ip-ranges', s.includeOutboundIPRanges.join(','));
  if (s.excludeOutboundIPRanges.length > 0) args.push('--exclude-outbound-ip-ranges', s.excludeOutboundIPRanges.join(','));
  if (s.dnsCapture) args.push('--dns');
  // The capture ports are the pilot's; named only when a test moved them.
  if (o.ports.outbound !== DEFAULT_PORTS.outbound) args.push('--outbound-capture-port', String(o.ports.outbound));
  if (o.ports.inbound !== DEFAULT_PORTS.inbound) args.push('--inbound-capture-port', String(o.ports.inbound));
  return {
    name: INIT_CONTAINER,
    image: s.image,
    ...(o.imagePullPolicy !== undefined ? { imagePullPolicy: o.imagePullPolicy } : {}),
    command: ['sextant'],
    args,
    ...(o.preserveSourceRanges !== undefined ? { env: [{ name: PRESERVE_SOURCE_RANGES_ENV, value: o.preserveSourceRanges }] } : {}),
    resources: { requests: { cpu: '10m', memory: '40Mi' }, limits: { cpu: '2', memory: '1Gi' } },
    securityContext: {
      allowPrivilegeEscalation: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
      privileged: false,
      readOnlyRootFilesystem: false,
      runAsGroup: 0,
      runAsNonRoot: false,
      runAsUser: 0,
    },
  };
}

/** The `sextant wait` command of the postStart hook (the URL only when the health port is not 15021). */
export function waitCommand(o: InjectOptions): string[] {
  return o.ports.health === DEFAULT_PORTS.health ? ['sextant', 'wait'] : ['sextant', 'wait', '--url', `http://127.0.0.1:${o.ports.health}/healthz/ready`];
}

/** The sidecar container; `labels` are the pod's (sent as the node's LABELS). */
export function proxyContainer(s: SidecarSettings, o: InjectOptions, labels: Record<string, string>): JsonValue {
  const fieldRef = (path: string): JsonValue => ({ valueFrom: { fieldRef: { fieldPath: path } } });
  const env: JsonValue[] = [
    { name: 'PILOT_ADDRESS', value: o.pilotAddress },
    { name: 'POD_NAME', ...(fieldRef('metadata.name') as object) },
    { name: 'POD_NAMESPACE', ...(fieldRef('metadata.namespace') as object) },
    { name: 'INSTANCE_IP', ...(fieldRef('status.podIP') as object) },
    { name: 'SERVICE_ACCOUNT', ...(fieldRef('spec.serviceAccountName') as object) },
    { name: 'ISTIO_META_CLUSTER_ID', value: o.clusterId },
  ];
  if (o.network !== undefined) env.push({ name: 'ISTIO_META_NETWORK', value: o.network });
  if (o.dataCentre !== undefined) env.push({ name: 'SEXTANT_DC', value: o.dataCentre });
  if (o.region !== undefined) env.push({ name: 'SEXTANT_REGION', value: o.region });
  if (s.dnsCapture) env.push({ name: 'ISTIO_META_DNS_CAPTURE', value: 'true' });
  if (o.preserveSourceRanges !== undefined && s.mode !== 'NONE') env.push({ name: PRESERVE_SOURCE_RANGES_ENV, value: o.preserveSourceRanges });
  // Node's compile cache and the Envoy descriptor cache go to the writable volume.
  env.push({ name: 'TMPDIR', value: '/var/lib/sextant' });

  const args = [
    'proxy',
    '--xds', '$(PILOT_ADDRESS)',
    '--id', 'sidecar~$(INSTANCE_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local',
    ...Object.entries(labels).sort(([x], [y]) => x.localeCompare(y)).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
    '--meta', `INTERCEPTION_MODE=${s.mode}`,
    ...(s.dnsCapture ? ['--meta', 'DNS_CAPTURE=true'] : []),
    '--admin-address', `127.0.0.1:${o.ports.admin}`,
    '--stats-address', `0.0.0.0:${o.ports.stats}`,
    '--health-address', `0.0.0.0:${o.ports.health}`,
    '--log-level', s.logLevel,
    // the workload's identity: spiffe://TRUST_DOMAIN/ns/POD_NAMESPACE/sa/SERVICE_ACCOUNT
    '--service-account', '$(SERVICE_ACCOUNT)',
    ...(o.plaintextXds === true ? [] : [
      '--xds-root-cert', `${CA_ROOT_DIR}/root-cert.pem`,
      '--ca-token-file', `${BOOTSTRAP_TOKEN_DIR}/token`,
    ]),
  ];
  return {
    name: PROXY_CONTAINER,
    image: s.image,
    ...(o.imagePullPolicy !== undefined ? { imagePullPolicy: o.imagePullPolicy } : {}),
    command: ['sextant'],
    args,
    env,
    ports: [
      { name: 'http-envoy-prom', containerPort: o.ports.stats, protocol: 'TCP' },
      { name: 'http-health', containerPort: o.ports.health, protocol: 'TCP' },
    ],
    // The kubelet starts the next container only once this hook returns: the app never
    // starts before its sidecar is ready (M10).
    lifecycle: { postStart: { exec: { command: waitCommand(o) } } },
    readinessProbe: {
      httpGet: { path: '/healthz/ready', port: o.ports.health },
      periodSeconds: 2,
      timeoutSeconds: 3,
      failureThreshold: 30,
    },
    resources: s.resources,
    securityContext: {
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      privileged: false,
      readOnlyRootFilesystem: true,
      runAsGroup: PROXY_UID,
      runAsNonRoot: true,
      runAsUser: PROXY_UID,
    },
    volumeMounts: [
      { name: DATA_VOLUME, mountPath: '/var/lib/sextant' },
      ...(o.plaintextXds === true ? [] : [
        { name: CA_ROOT_VOLUME, mountPath: CA_ROOT_DIR, readOnly: true },
        { name: BOOTSTRAP_TOKEN_VOLUME, mountPath: BOOTSTRAP_TOKEN_DIR, readOnly: true },
      ]),
    ],
  };
}

/**
 * The volumes injection adds to the pod: the sidecar's writable directory and, for a closed
 * control plane, the namespace's mesh root and bootstrap token (not optional: a namespace
 * without them is told by the kubelet's events, and the pod waits, rather than running without mTLS).
 */
export function sidecarVolumes(o: InjectOptions): JsonValue[] {
  return [
    { name: DATA_VOLUME, emptyDir: {} },
    ...(o.plaintextXds === true ? [] : [
      { name: CA_ROOT_VOLUME, configMap: { name: CA_ROOT_CONFIGMAP, items: [{ key: 'root-cert.pem', path: 'root-cert.pem' }] } },
      // readable by the sidecar's user (1337); no other container mounts it
      { name: BOOTSTRAP_TOKEN_VOLUME, secret: { secretName: BOOTSTRAP_TOKEN_SECRET, defaultMode: 0o444, items: [{ key: 'token', path: 'token' }] } },
    ]),
  ];
}

/** The names of sidecarVolumes, as the injection status annotation lists them. */
export function sidecarVolumeNames(o: InjectOptions): string[] {
  return o.plaintextXds === true ? [DATA_VOLUME] : [DATA_VOLUME, CA_ROOT_VOLUME, BOOTSTRAP_TOKEN_VOLUME];
}
