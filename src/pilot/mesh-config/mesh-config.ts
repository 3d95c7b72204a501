// Istio's MeshConfig as the pilot reads it (`--mesh-config FILE`): the YAML istiod reads from
// its `mesh` file or the `istio` ConfigMap's `data.mesh`, checked once at the boundary. The
// fields the pilot honours are typed and validated (an invalid value is an error naming the
// field); every other field is reported, never silently dropped.
import { parseDocument } from 'yaml';
import { parseDurationMs } from '../../api/index.ts';

export type OutboundTrafficMode = 'ALLOW_ANY' | 'REGISTRY_ONLY';
export type PathNormalizationType = 'DEFAULT' | 'NONE' | 'BASE' | 'MERGE_SLASHES' | 'DECODE_AND_MERGE_SLASHES';

/** `serviceSettings[]`: settings applied to the services whose host matches one of `hosts`. */
export interface ServiceSettings {
  readonly settings: { readonly clusterLocal: boolean };
  /** Host names or wildcards (`*.ns.svc.cluster.local`), matched as DestinationRule hosts are. */
  readonly hosts: readonly string[];
}

/** The MeshConfig fields the pilot honours, with Istio's defaults filled in. */
export interface MeshConfig {
  /** Where a Sidecar, EnvoyFilter or DestinationRule applies mesh-wide. Default `istio-system`. */
  readonly rootNamespace: string;
  /** What sidecars do with traffic to unknown hosts, unless their Sidecar says. Default `ALLOW_ANY`. */
  readonly outboundTrafficPolicy: { readonly mode: OutboundTrafficMode };
  /** Every cluster's connect timeout, proto3 JSON (`10s`). Default 10 s. */
  readonly connectTimeout: string;
  /** How HTTP paths are normalized by sidecars and gateways. Default `DEFAULT` (= `BASE`). */
  readonly pathNormalization: { readonly normalization: PathNormalizationType };
  /** Cluster-local services (and overrides of the default cluster-local hosts). */
  readonly serviceSettings: readonly ServiceSettings[];
  /** `defaultConfig`: only `discoveryAddress` is read (its host is cluster-local by default, as in Istio). */
  readonly defaultConfig: { readonly discoveryAddress: string };
  /** Telemetry providers by name (`extensionProviders`); absent when the file names none. */
  readonly extensionProviders?: readonly ExtensionProvider[];
  /** Providers used when a Telemetry names none (`defaultProviders`); absent when the file sets none. */
  readonly defaultProviders?: { readonly accessLogging: readonly string[] };
}

/** Istio's `envoyHttpAls` provider: HTTP access logs over ALS to a gRPC service in the mesh. */
export interface EnvoyHttpAlsProvider {
  /** The service host (`als.istio-system.svc.cluster.local`, or `NAMESPACE/HOST`). */
  readonly service: string;
  readonly port: number;
  /** The ALS log name; default `http_envoy_accesslog`, as Istio's. */
  readonly logName: string;
  readonly filterStateObjectsToLog: readonly string[];
  readonly additionalRequestHeadersToLog: readonly string[];
  readonly additionalResponseHeadersToLog: readonly string[];
  readonly additionalResponseTrailersToLog: readonly string[];
}

/** One `extensionProviders` entry: its name and kind; only `envoyHttpAls` is generated from. */
export interface ExtensionProvider {
  readonly name: string;
  /** The provider's kind as written (`envoyHttpAls`, `envoyFileAccessLog`, `prometheus`, …). */
  readonly kind: string;
  readonly envoyHttpAls?: EnvoyHttpAlsProvider;
}

/** Istio's defaults for the honoured fields (its `DefaultMeshConfig`). */
export const DEFAULT_MESH_CONFIG: MeshConfig = Object.freeze({
  rootNamespace: 'istio-system',
  outboundTrafficPolicy: Object.freeze({ mode: 'ALLOW_ANY' as const }),
  connectTimeout: '10s',
  pathNormalization: Object.freeze({ normalization: 'DEFAULT' as const }),
  serviceSettings: Object.freeze([]),
  defaultConfig: Object.freeze({ discoveryAddress: 'istiod.istio-system.svc:15012' }),
});

/**
 * The key a mesh config change carries in a ConfigChange (`Kind/namespace/name`, like a
 * resource's): planning pushes everything to every proxy for it.
 */
export const MESH_CONFIG_KEY = 'MeshConfig/istio-system/mesh';

/** A mesh config the pilot must not start with (or switch to): names the source and the field. */
export class MeshConfigError extends Error {
  override name = 'MeshConfigError';
  /** The field path, e.g. `serviceSettings[0].hosts[1]`; empty for the document as a whole. */
  readonly field: string;

  constructor(source: string, field: string, problem: string) {
    super(field === '' ? `${source}: ${problem}` : `${source}: ${field}: ${problem}`);
    this.field = field;
  }
}

/** The result of reading a mesh config: the config and what was ignored in it. */
export interface ParsedMeshConfig {
  config: MeshConfig;
  /** One line per kind of ignored content (unknown fields, fields Sextant does not honour). */
  warnings: string[];
}

// Every field of istio.mesh.v1alpha1.MeshConfig (istio/api mesh/v1alpha1/config.proto), in lowerCamelCase.
const MESH_CONFIG_FIELDS = new Set([
  'proxyListenPort', 'proxyInboundListenPort', 'proxyHttpPort', 'connectTimeout', 'protocolDetectionTimeout',
  'tcpKeepalive', 'ingressClass', 'ingressService', 'ingressControllerMode', 'ingressSelector', 'enableTracing',
  'accessLogFile', 'accessLogFormat', 'accessLogEncoding', 'enableEnvoyAccessLogService', 'disableEnvoyListenerLog',
  'defaultConfig', 'outboundTrafficPolicy', 'inboundTrafficPolicy', 'configSources', 'enableAutoMtls', 'trustDomain',
  'trustDomainAliases', 'caCertificates', 'defaultServiceExportTo', 'defaultVirtualServiceExportTo',
  'defaultDestinationRuleExportTo', 'rootNamespace', 'localityLbSetting', 'dnsRefreshRate', 'h2UpgradePolicy',
  'inboundClusterStatName', 'outboundClusterStatName', 'certificates', 'serviceSettings', 'enablePrometheusMerge',
  'verifyCertificateAtClient', 'ca', 'extensionProviders', 'defaultProviders', 'discoverySelectors',
  'pathNormalization', 'defaultHttpRetryPolicy', 'meshMTLS', 'tlsDefaults', 'compliancePolicy', 'serviceScopeConfigs',
]);

const HONOURED = new Set(['rootNamespace', 'outboundTrafficPolicy', 'connectTimeout', 'pathNormalization', 'serviceSettings', 'defaultConfig', 'extensionProviders', 'defaultProviders']);

const OUTBOUND_MODES: readonly OutboundTrafficMode[] = ['ALLOW_ANY', 'REGISTRY_ONLY'];
const NORMALIZATIONS: readonly PathNormalizationType[] = ['DEFAULT', 'NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'];

type Obj = Record<string, unknown>;

/** proto3 JSON accepts both the field's proto name and its lowerCamelCase name (`cluster_local`, `clusterLocal`). */
function camel(key: string): string {
  return key.replace(/_([a-zA-Z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return JSON.stringify(v);
}

/**
 * The object's fields by their lowerCamelCase names; `known` lists those the reader knows
 * (anything else goes to `unknown` with its path). Writing one field under both spellings
 * is an error, as in protobuf's JSON parser.
 */
function fields(source: string, at: string, v: Obj, known: ReadonlySet<string> | undefined, unknown: string[]): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, value] of Object.entries(v)) {
    const name = camel(k);
    const path = at === '' ? name : `${at}.${name}`;
    if (out.has(name)) throw new MeshConfigError(source, path, 'set twice (under its proto name and its JSON name)');
    out.set(name, value);
    if (known !== undefined && !known.has(name)) unknown.push(at === '' ? k : `${at}.${k}`);
  }
  return out;
}

function objectAt(source: string, path: string, v: unknown): Obj {
  if (!isObject(v)) throw new MeshConfigError(source, path, `expected an object, got ${describe(v)}`);
  return v;
}

function stringAt(source: string, path: string, v: unknown): string {
  if (typeof v !== 'string') throw new MeshConfigError(source, path, `expected a string, got ${describe(v)}`);
  return v;
}

function enumAt<T extends string>(source: string, path: string, v: unknown, values: readonly T[]): T {
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
    throw new MeshConfigError(source, path, `expected one of ${values.join(', ')}, got ${describe(v)}`);
  }
  return v as T;
}

const DNS1123_LABEL = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
const HOST_LABEL = /^[a-zA-Z0-9](?:[-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$/;

/** Istio's ValidateWildcardDomain: `*`, `*.a.b`, `*a.b` or a DNS name; at most 255 characters. */
function checkWildcardHost(host: string): string | undefined {
  if (host === '') return 'empty host';
  if (host.length > 255) return `host ${JSON.stringify(host)} is longer than 255 characters`;
  if (host === '*') return undefined;
  const labels = host.split('.');
  const first = labels[0] ?? '';
  const firstOk = first === '*' || (first.startsWith('*') ? HOST_LABEL.test(first.slice(1)) : HOST_LABEL.test(first));
  if (!firstOk || labels.slice(1).some((l) => !HOST_LABEL.test(l))) {
    return `invalid host ${JSON.stringify(host)}: expected a DNS name, optionally with a leading wildcard (*.ns.svc.cluster.local)`;
  }
  return undefined;
}

function readServiceSettings(source: string, v: unknown, unknown: string[]): ServiceSettings[] {
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) throw new MeshConfigError(source, 'serviceSettings', `expected a list, got ${describe(v)}`);
  return v.map((entry, i) => {
    const at = `serviceSettings[${i}]`;
    const f = fields(source, at, objectAt(source, at, entry), new Set(['settings', 'hosts']), unknown);
    let clusterLocal = false;
    const settings = f.get('settings');
    if (settings !== undefined && settings !== null) {
      const s = fields(source, `${at}.settings`, objectAt(source, `${at}.settings`, settings), new Set(['clusterLocal']), unknown);
      const cl = s.get('clusterLocal');
      if (cl !== undefined && cl !== null) {
        if (typeof cl !== 'boolean') throw new MeshConfigError(source, `${at}.settings.clusterLocal`, `expected true or false, got ${describe(cl)}`);
        clusterLocal = cl;
      }
    }
    const hostsValue = f.get('hosts') ?? [];
    if (!Array.isArray(hostsValue)) throw new MeshConfigError(source, `${at}.hosts`, `expected a list of hosts, got ${describe(hostsValue)}`);
    const hosts = hostsValue.map((h, j) => {
      const host = stringAt(source, `${at}.hosts[${j}]`, h);
      const problem = checkWildcardHost(host);
      if (problem !== undefined) throw new MeshConfigError(source, `${at}.hosts[${j}]`, problem);
      return host;
    });
    return { settings: { clusterLocal }, hosts };
  });
}

const PROVIDER_KINDS = new Set([
  'envoyExtAuthzHttp', 'envoyExtAuthzGrpc', 'zipkin', 'lightstep', 'datadog', 'stackdriver', 'opencensus', 'skywalking',
  'opentelemetry', 'prometheus', 'envoyFileAccessLog', 'envoyHttpAls', 'envoyTcpAls', 'envoyOtelAls', 'sds',
]);
const ALS_FIELDS = new Set(['service', 'port', 'logName', 'filterStateObjectsToLog', 'additionalRequestHeadersToLog', 'additionalResponseHeadersToLog', 'additionalResponseTrailersToLog']);

function stringsAt(source: string, path: string, v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new MeshConfigError(source, path, `expected a list of strings, got ${describe(v)}`);
  return v.map((s, i) => stringAt(source, `${path}[${i}]`, s));
}

/**
 * `extensionProviders`: each a name and one provider kind. `envoyHttpAls` is read and checked
 * (service and port required); other kinds are kept by name, and a Telemetry naming one is
 * reported when the pilot generates from it.
 */
function readExtensionProviders(source: string, v: unknown, unknown: string[]): ExtensionProvider[] {
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) throw new MeshConfigError(source, 'extensionProviders', `expected a list, got ${describe(v)}`);
  const names = new Set<string>();
  return v.map((entry, i) => {
    const at = `extensionProviders[${i}]`;
    const f = fields(source, at, objectAt(source, at, entry), undefined, unknown);
    const name = stringAt(source, `${at}.name`, f.get('name') ?? '');
    if (name === '') throw new MeshConfigError(source, `${at}.name`, 'required');
    if (names.has(name)) throw new MeshConfigError(source, `${at}.name`, `${JSON.stringify(name)} is the name of an earlier provider`);
    names.add(name);
    const kinds = [...f.keys()].filter((k) => k !== 'name');
    for (const k of kinds) if (!PROVIDER_KINDS.has(k)) unknown.push(`${at}.${k}`);
    const known = kinds.filter((k) => PROVIDER_KINDS.has(k));
    if (known.length !== 1) throw new MeshConfigError(source, at, `a provider sets exactly one kind (${[...PROVIDER_KINDS].join(', ')}), got ${known.length === 0 ? 'none' : known.join(', ')}`);
    const kind = known[0]!;
    if (kind !== 'envoyHttpAls') return { name, kind };
    const ap = `${at}.envoyHttpAls`;
    const a = fields(source, ap, objectAt(source, ap, f.get(kind)), ALS_FIELDS, unknown);
    const service = stringAt(source, `${ap}.service`, a.get('service') ?? '');
    if (service === '') throw new MeshConfigError(source, `${ap}.service`, 'required: the host of the ALS service (e.g. als.istio-system.svc.cluster.local)');
    const port = a.get('port');
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new MeshConfigError(source, `${ap}.port`, `expected a port number 1-65535, got ${describe(port)}`);
    const logName = a.get('logName') === undefined || a.get('logName') === null ? 'http_envoy_accesslog' : stringAt(source, `${ap}.logName`, a.get('logName'));
    return {
      name, kind,
      envoyHttpAls: {
        service, port, logName: logName === '' ? 'http_envoy_accesslog' : logName,
        filterStateObjectsToLog: stringsAt(source, `${ap}.filterStateObjectsToLog`, a.get('filterStateObjectsToLog')),
        additionalRequestHeadersToLog: stringsAt(source, `${ap}.additionalRequestHeadersToLog`, a.get('additionalRequestHeadersToLog')),
        additionalResponseHeadersToLog: stringsAt(source, `${ap}.additionalResponseHeadersToLog`, a.get('additionalResponseHeadersToLog')),
        additionalResponseTrailersToLog: stringsAt(source, `${ap}.additionalResponseTrailersToLog`, a.get('additionalResponseTrailersToLog')),
      },
    };
  });
}

/** `defaultProviders`: of it, `accessLogging` is honoured (the others are reported). */
function readDefaultProviders(source: string, v: unknown, unknown: string[], unhonoured: string[]): { accessLogging: string[] } | undefined {
  if (v === null || v === undefined) return undefined;
  const d = fields(source, 'defaultProviders', objectAt(source, 'defaultProviders', v), new Set(['tracing', 'metrics', 'accessLogging']), unknown);
  for (const k of d.keys()) if (k !== 'accessLogging') unhonoured.push(`defaultProviders.${k}`);
  return { accessLogging: stringsAt(source, 'defaultProviders.accessLogging', d.get('accessLogging')) };
}

/** Go/proto durations ("10s", "500ms", "1m") → proto3 JSON seconds ("10s", "0.5s"). */
function durationAt(source: string, path: string, v: unknown): string {
  const ms = typeof v === 'string' ? parseDurationMs(v) : undefined;
  if (ms === undefined) throw new MeshConfigError(source, path, `expected a duration such as "10s" or "500ms", got ${describe(v)}`);
  if (ms < 1) throw new MeshConfigError(source, path, `must be at least 1ms, got ${JSON.stringify(v)}`);
  return `${Number((ms / 1000).toFixed(9))}s`;
}

/** Reads a MeshConfig object (already decoded from YAML) onto Istio's defaults. */
export function meshConfigFromObject(raw: unknown, source: string): ParsedMeshConfig {
  if (raw === null || raw === undefined) return { config: DEFAULT_MESH_CONFIG, warnings: [] };
  const unknown: string[] = [];
  const f = fields(source, '', objectAt(source, '', raw), MESH_CONFIG_FIELDS, unknown);
  const unhonoured: string[] = [];
  for (const name of f.keys()) if (MESH_CONFIG_FIELDS.has(name) && !HONOURED.has(name)) unhonoured.push(name);

  let rootNamespace = DEFAULT_MESH_CONFIG.rootNamespace;
  const root = f.get('rootNamespace');
  if (root !== undefined && root !== null && root !== '') {
    rootNamespace = stringAt(source, 'rootNamespace', root);
    if (!DNS1123_LABEL.test(rootNamespace)) throw new MeshConfigError(source, 'rootNamespace', `invalid namespace name ${JSON.stringify(rootNamespace)}: expected a DNS-1123 label`);
  }

  let mode = DEFAULT_MESH_CONFIG.outboundTrafficPolicy.mode;
  const otp = f.get('outboundTrafficPolicy');
  if (otp !== undefined && otp !== null) {
    const o = fields(source, 'outboundTrafficPolicy', objectAt(source, 'outboundTrafficPolicy', otp), new Set(['mode']), unknown);
    if (o.has('mode') && o.get('mode') !== null) mode = enumAt(source, 'outboundTrafficPolicy.mode', o.get('mode'), OUTBOUND_MODES);
  }

  let connectTimeout = DEFAULT_MESH_CONFIG.connectTimeout;
  const ct = f.get('connectTimeout');
  if (ct !== undefined && ct !== null) connectTimeout = durationAt(source, 'connectTimeout', ct);

  let normalization = DEFAULT_MESH_CONFIG.pathNormalization.normalization;
  const pn = f.get('pathNormalization');
  if (pn !== undefined && pn !== null) {
    const p = fields(source, 'pathNormalization', objectAt(source, 'pathNormalization', pn), new Set(['normalization']), unknown);
    if (p.has('normalization') && p.get('normalization') !== null) normalization = enumAt(source, 'pathNormalization.normalization', p.get('normalization'), NORMALIZATIONS);
  }

  const serviceSettings = readServiceSettings(source, f.get('serviceSettings'), unknown);

  let discoveryAddress = DEFAULT_MESH_CONFIG.defaultConfig.discoveryAddress;
  const dc = f.get('defaultConfig');
  if (dc !== undefined && dc !== null) {
    // ProxyConfig is the injector's and the agent's; of it the pilot reads only discoveryAddress.
    const d = fields(source, 'defaultConfig', objectAt(source, 'defaultConfig', dc), undefined, unknown);
    for (const name of d.keys()) if (name !== 'discoveryAddress') unhonoured.push(`defaultConfig.${name}`);
    const da = d.get('discoveryAddress');
    if (da !== undefined && da !== null && da !== '') discoveryAddress = stringAt(source, 'defaultConfig.discoveryAddress', da);
  }

  const extensionProviders = readExtensionProviders(source, f.get('extensionProviders'), unknown);
  const defaultProviders = readDefaultProviders(source, f.get('defaultProviders'), unknown, unhonoured);

  const warnings: string[] = [];
  if (unknown.length > 0) warnings.push(`${source}: unknown fields, not part of Istio's MeshConfig (ignored): ${unknown.join(', ')}`);
  if (unhonoured.length > 0) warnings.push(`${source}: MeshConfig fields Sextant does not implement (ignored): ${unhonoured.join(', ')}`);
  const config: MeshConfig = {
    rootNamespace,
    outboundTrafficPolicy: { mode },
    connectTimeout,
    pathNormalization: { normalization },
    serviceSettings,
    defaultConfig: { discoveryAddress },
    ...(f.get('extensionProviders') !== undefined && f.get('extensionProviders') !== null ? { extensionProviders } : {}),
    ...(defaultProviders !== undefined ? { defaultProviders } : {}),
  };
  return { config, warnings };
}

function parseYaml(text: string, source: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true });
  const err = doc.errors[0];
  if (err !== undefined) throw new MeshConfigError(source, '', `invalid YAML: ${err.message.split('\n')[0] ?? err.message}`);
  return doc.toJS() as unknown;
}

/**
 * Reads a mesh config file's text: a MeshConfig document, as in istiod's `mesh` file, or
 * the `istio` ConfigMap holding it in `data.mesh`. Throws a MeshConfigError naming the
 * field when a value the pilot uses is invalid.
 */
export function parseMeshConfig(text: string, source: string): ParsedMeshConfig {
  const raw = parseYaml(text, source);
  if (isObject(raw) && raw['kind'] === 'ConfigMap') {
    const data = raw['data'];
    if (!isObject(data) || typeof data['mesh'] !== 'string') {
      throw new MeshConfigError(source, 'data.mesh', 'a ConfigMap must hold the MeshConfig YAML as a string in data.mesh (as the istio ConfigMap does)');
    }
    const inner = `${source} data.mesh`;
    const parsed = meshConfigFromObject(parseYaml(data['mesh'], inner), inner);
    const other = Object.keys(data).filter((k) => k !== 'mesh');
    if (other.length > 0) parsed.warnings.push(`${source}: ConfigMap data keys other than mesh are not read (ignored): ${other.join(', ')}`);
    return parsed;
  }
  return meshConfigFromObject(raw, source);
}
