// The structural schema of each supported kind's spec, with the CRDs' CEL rules written as
// node rules. Field sets follow Istio's CRDs (networking v1, EnvoyFilter v1alpha3, Telemetry v1).
import {
  checkDurationAtLeast1ms, checkDurationNonNegative, PORT_NAME,
} from './checks.ts';
import type { SupportedKind } from './kinds.ts';
import { adaptiveLimitSchema } from './adaptive-limit.ts';
import { laneGroupSchema } from './lane-group.ts';
import { routeTemplatesSchema } from './route-templates.ts';
import { lazyScopeSchema, workloadScopeSchema } from './lazy-scope.ts';
import { rateLimitSchema } from './rate-limit.ts';
import {
  any, arr, bool, int, int32, map, num, obj, str, strEnum, strs, uint32,
  type NodeRule, type ObjectSchema, type Schema,
} from './schema.ts';

// ---------------------------------------------------------------- shared rules

const durationMin1ms: NodeRule<string> = (v, path, issues) => {
  const e = checkDurationAtLeast1ms(v);
  if (e !== undefined) issues.add(path, e);
};
const durationNonNegative: NodeRule<string> = (v, path, issues) => {
  const e = checkDurationNonNegative(v);
  if (e !== undefined) issues.add(path, e);
};
/** A duration the CRD checks with duration(self) >= duration('1ms'). */
const duration = (): Schema => str({ rules: [durationMin1ms] });
/** A duration the CRD leaves unchecked; it must still parse. */
const anyDuration = (): Schema => str({ rules: [durationNonNegative] });

const portRange: NodeRule<number> = (v, path, issues) => {
  if (!(v > 0 && v <= 65535)) issues.add(path, `Invalid value: "integer": port must be between 1-65535 (got ${v})`);
};

const noWildcardValue = (message: string): NodeRule<string> => (v, path, issues) => {
  if (v.includes('*')) issues.add(path, `Invalid value: "string": ${message} (got ${JSON.stringify(v)})`);
};

/** networking WorkloadSelector: labels without wildcard values. */
const workloadSelector = obj({
  labels: map(str({ maxLength: 63, rules: [noWildcardValue('wildcard is not supported in selector')] }), { maxProperties: 256 }),
});

/** type.v1beta1.WorkloadSelector (matchLabels). */
const labelSelector = obj({
  matchLabels: map(str({ maxLength: 63, rules: [noWildcardValue('wildcard not allowed in label value match')] }), {
    maxProperties: 4096,
    key: (k, path, issues) => {
      if (k.includes('*')) issues.add(path, `Invalid value: "object": wildcard not allowed in label key match (got ${JSON.stringify(k)})`);
      if (k.length === 0) issues.add(path, 'Invalid value: "object": key must not be empty');
    },
  }),
});

const targetRef = obj({
  group: str({ maxLength: 253, pattern: /^$|^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/ }),
  kind: str({ minLength: 1, maxLength: 63, pattern: /^[a-zA-Z](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$/ }),
  name: str({ minLength: 1, maxLength: 253 }),
  namespace: str({
    rules: [(v, path, issues) => {
      if (v.length !== 0) issues.add(path, `Invalid value: "string": cross namespace referencing is not currently supported (got ${JSON.stringify(v)})`);
    }],
  }),
}, { required: ['kind', 'name'] });

const stringMatch = obj({ exact: str(), prefix: str(), regex: str() }, { oneOf: [['exact', 'prefix', 'regex']] });
const portSelector = obj({ number: uint32() });
const destination = obj({ host: str(), subset: str(), port: portSelector }, { required: ['host'] });
const percent = obj({ value: num() });
const stringMap = map(str());

const portDecl = obj({ number: uint32(), protocol: str(), name: str(), targetPort: uint32() });

// ---------------------------------------------------------------- connection pool, TLS (shared by DR, Sidecar, Gateway)

const connectionPool = obj({
  tcp: obj({
    maxConnections: int32(),
    connectTimeout: duration(),
    tcpKeepalive: obj({ probes: uint32(), time: duration(), interval: duration() }),
    maxConnectionDuration: duration(),
    idleTimeout: anyDuration(),
  }),
  http: obj({
    http1MaxPendingRequests: int32(),
    http2MaxRequests: int32(),
    maxRequestsPerConnection: int32(),
    maxRetries: int32(),
    idleTimeout: duration(),
    h2UpgradePolicy: strEnum(['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE']),
    useClientProtocol: bool(),
    maxConcurrentStreams: int32(),
    http2KeepAlive: obj({ interval: duration(), timeout: duration() }),
  }),
});

const TLS_VERSIONS = ['TLS_AUTO', 'TLSV1_0', 'TLSV1_1', 'TLSV1_2', 'TLSV1_3'];

const serverTLS = obj({
  httpsRedirect: bool(),
  mode: strEnum(['PASSTHROUGH', 'SIMPLE', 'MUTUAL', 'AUTO_PASSTHROUGH', 'ISTIO_MUTUAL', 'OPTIONAL_MUTUAL']),
  serverCertificate: str(),
  privateKey: str(),
  caCertificates: str(),
  caCrl: str(),
  credentialName: str(),
  credentialNames: strs({ minItems: 1, maxItems: 2 }),
  caCertCredentialName: str(),
  tlsCertificates: arr(obj({ serverCertificate: str(), privateKey: str(), caCertificates: str() }), { minItems: 1, maxItems: 2 }),
  subjectAltNames: strs(),
  verifyCertificateSpki: strs(),
  verifyCertificateHash: strs(),
  minProtocolVersion: strEnum(TLS_VERSIONS),
  maxProtocolVersion: strEnum(TLS_VERSIONS),
  cipherSuites: strs(),
  ecdhCurves: strs(),
  insecureSkipVerify: bool(),
}, {
  rules: [(v, path, issues) => {
    const has = (k: string): boolean => v[k] !== undefined && v[k] !== null;
    if (has('tlsCertificates') && has('credentialNames')) issues.add(path, 'Invalid value: "object": only one of credentialNames or tlsCertificates can be set');
    if (has('credentialName') && has('credentialNames')) issues.add(path, 'Invalid value: "object": only one of credentialName or credentialNames can be set');
  }],
});

const clientTLS = obj({
  mode: strEnum(['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']),
  clientCertificate: str(),
  privateKey: str(),
  caCertificates: str(),
  credentialName: str(),
  subjectAltNames: strs(),
  sni: str(),
  insecureSkipVerify: bool(),
  caCrl: str(),
});

// ---------------------------------------------------------------- VirtualService

const headerOperations = obj({ set: stringMap, add: stringMap, remove: strs() });
const headers = obj({ request: headerOperations, response: headerOperations });

const httpMatchRequest = obj({
  name: str(),
  uri: stringMatch,
  scheme: stringMatch,
  method: stringMatch,
  authority: stringMatch,
  headers: map(stringMatch),
  port: uint32(),
  sourceLabels: stringMap,
  gateways: strs(),
  queryParams: map(stringMatch),
  ignoreUriCase: bool(),
  withoutHeaders: map(stringMatch),
  sourceNamespace: str(),
  statPrefix: str(),
});

const httpRoute = obj({
  name: str(),
  match: arr(httpMatchRequest),
  route: arr(obj({ destination, weight: int32(), headers }, { required: ['destination'] })),
  redirect: obj({
    uri: str(),
    authority: str(),
    port: uint32(),
    derivePort: strEnum(['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT']),
    scheme: str(),
    redirectCode: uint32(),
    prefixRewrite: str(),
  }, { oneOf: [['port', 'derivePort']] }),
  directResponse: obj({
    status: uint32(),
    body: obj({ string: str(), bytes: str({ pattern: /^[A-Za-z0-9+/]*={0,2}$/, patternHint: 'base64' }) }, { oneOf: [['string', 'bytes']] }),
  }, { required: ['status'] }),
  delegate: obj({ name: str(), namespace: str() }),
  rewrite: obj({ uri: str(), authority: str(), uriRegexRewrite: obj({ match: str(), rewrite: str() }) }),
  timeout: duration(),
  retries: obj({
    attempts: int32(),
    perTryTimeout: duration(),
    retryOn: str(),
    retryRemoteLocalities: bool(),
    retryIgnorePreviousHosts: bool(),
    backoff: duration(),
  }),
  fault: obj({
    delay: obj({ fixedDelay: duration(), exponentialDelay: duration(), percentage: percent, percent: int32() }, { oneOf: [['fixedDelay', 'exponentialDelay']] }),
    abort: obj({ httpStatus: int32(), grpcStatus: str(), http2Error: str(), percentage: percent }, { oneOf: [['httpStatus', 'grpcStatus', 'http2Error']] }),
  }),
  mirror: destination,
  mirrors: arr(obj({ destination, percentage: percent }, { required: ['destination'] })),
  mirrorPercent: uint32(),
  mirror_percent: uint32(),
  mirrorPercentage: percent,
  corsPolicy: obj({
    allowOrigin: strs(),
    allowOrigins: arr(stringMatch),
    allowMethods: strs(),
    allowHeaders: strs(),
    exposeHeaders: strs(),
    maxAge: duration(),
    allowCredentials: bool(),
    unmatchedPreflights: strEnum(['UNSPECIFIED', 'FORWARD', 'IGNORE']),
  }),
  headers,
});

const routeDestination = obj({ destination, weight: int32() }, { required: ['destination'] });

const virtualService = obj({
  hosts: strs(),
  gateways: strs(),
  http: arr(httpRoute),
  tls: arr(obj({
    match: arr(obj({
      sniHosts: strs(),
      destinationSubnets: strs(),
      port: uint32(),
      sourceLabels: stringMap,
      gateways: strs(),
      sourceNamespace: str(),
    }, { required: ['sniHosts'] })),
    route: arr(routeDestination),
  }, { required: ['match'] })),
  tcp: arr(obj({
    match: arr(obj({
      destinationSubnets: strs(),
      port: uint32(),
      sourceSubnet: str(),
      sourceLabels: stringMap,
      gateways: strs(),
      sourceNamespace: str(),
    })),
    route: arr(routeDestination),
  })),
  exportTo: strs(),
});

// ---------------------------------------------------------------- DestinationRule

const failover = arr(obj({ from: str(), to: str() }));

const loadBalancer = obj({
  simple: strEnum(['UNSPECIFIED', 'LEAST_CONN', 'RANDOM', 'PASSTHROUGH', 'ROUND_ROBIN', 'LEAST_REQUEST']),
  consistentHash: obj({
    httpHeaderName: str(),
    httpCookie: obj({
      name: str(),
      path: str(),
      ttl: anyDuration(),
      attributes: arr(obj({ name: str(), value: str() }, { required: ['name'] })),
    }, { required: ['name'] }),
    useSourceIp: bool(),
    httpQueryParameterName: str(),
    ringHash: obj({ minimumRingSize: int({ min: 0 }) }),
    maglev: obj({ tableSize: int({ min: 0 }) }),
    minimumRingSize: int({ min: 0 }),
  }, { oneOf: [['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'], ['ringHash', 'maglev']] }),
  backendUtilization: obj({
    weightExpirationPeriod: anyDuration(),
    weightUpdatePeriod: anyDuration(),
    weightStabilizationPeriod: anyDuration(),
    errorUtilizationPenaltyPercent: uint32(),
    metricNamesForComputingUtilization: strs(),
  }),
  localityLbSetting: obj({
    distribute: arr(obj({ from: str(), to: map(uint32()) })),
    failover,
    failoverPriority: strs(),
    enabled: bool(),
  }),
  zoneAwareLbSetting: obj({
    enabled: bool(),
    minClusterSize: int({ min: 1, max: 4294967295 }),
    failover,
    failoverPriority: strs(),
  }),
  warmupDurationSecs: duration(),
  warmup: obj({
    duration: duration(),
    minimumPercent: num({ min: 0, max: 100 }),
    aggression: num({ min: 0 }),
  }, { required: ['duration'] }),
}, { oneOf: [['simple', 'consistentHash', 'backendUtilization']] });

const outlierDetection = obj({
  splitExternalLocalOriginErrors: bool(),
  consecutiveLocalOriginFailures: uint32(),
  consecutiveGatewayErrors: uint32(),
  consecutive5xxErrors: uint32(),
  consecutiveErrors: int32(),
  interval: duration(),
  baseEjectionTime: duration(),
  maxEjectionPercent: int32(),
  minHealthPercent: int32(),
  outlierDetectionHttpErrorCodes: arr(int({ min: 100, max: 599 })),
});

const trafficPolicy = obj({
  loadBalancer,
  connectionPool,
  outlierDetection,
  tls: clientTLS,
  portLevelSettings: arr(obj({ port: portSelector, loadBalancer, connectionPool, outlierDetection, tls: clientTLS }), { maxItems: 4096 }),
  tunnel: obj({ protocol: str(), targetHost: str(), targetPort: uint32() }, { required: ['targetHost', 'targetPort'] }),
  proxyProtocol: obj({ version: strEnum(['V1', 'V2']) }),
  retryBudget: obj({ percent: num({ min: 0, max: 100 }), minRetryConcurrency: uint32(), budgetInterval: anyDuration() }),
});

const destinationRule = obj({
  host: str(),
  trafficPolicy,
  subsets: arr(obj({ name: str(), labels: stringMap, trafficPolicy }, { required: ['name'] })),
  exportTo: strs(),
  workloadSelector: labelSelector,
}, { required: ['host'] });

// ---------------------------------------------------------------- WorkloadEntry, ServiceEntry, WorkloadGroup

const uds: NodeRule<string> = (v, path, issues) => {
  if (!v.startsWith('unix://')) return;
  const c = v.slice(7, 8);
  if (c !== '/' && c !== '@') issues.add(path, `Invalid value: "string": UDS must be an absolute path or abstract socket (got ${JSON.stringify(v)})`);
  if (v.endsWith('/')) issues.add(path, `Invalid value: "string": UDS may not be a dir (got ${JSON.stringify(v)})`);
};

const workloadPorts = map(uint32([portRange]), {
  maxProperties: 128,
  key: (k, path, issues) => {
    if (!(k.length < 63 && PORT_NAME.test(k))) issues.add(path, `Invalid value: "object": port name must be valid (got ${JSON.stringify(k)})`);
  },
});

const workloadEntryFields = {
  address: str({ maxLength: 256, rules: [uds] }),
  ports: workloadPorts,
  labels: map(str(), { maxProperties: 256 }),
  network: str({ maxLength: 2048 }),
  locality: str({ maxLength: 2048 }),
  weight: uint32(),
  serviceAccount: str({ maxLength: 253 }),
};

const udsNoPorts: NodeRule<Record<string, unknown>> = (v, path, issues) => {
  const a = v['address'];
  if (typeof a === 'string' && a.startsWith('unix://') && v['ports'] !== undefined && v['ports'] !== null) {
    issues.add(path, 'Invalid value: "object": UDS may not include ports');
  }
};
const addressRequired: NodeRule<Record<string, unknown>> = (v, path, issues) => {
  const has = (k: string): boolean => v[k] !== undefined && v[k] !== null;
  if (!has('address') && !has('network')) issues.add(path, 'Invalid value: "object": Address is required');
};

const workloadEntry = obj(workloadEntryFields, { rules: [addressRequired, udsNoPorts] });

const serviceEntry = obj({
  hosts: strs({ minItems: 1, maxItems: 256 }, str({
    rules: [(v, path, issues) => {
      if (v === '*') issues.add(path, 'Invalid value: "string": hostname cannot be wildcard');
    }],
  })),
  addresses: strs({ maxItems: 256 }, str({ maxLength: 64 })),
  ports: arr(obj({
    number: uint32([portRange]),
    protocol: str({ maxLength: 256 }),
    name: str({ maxLength: 256 }),
    targetPort: uint32([portRange]),
  }, { required: ['number', 'name'] }), {
    maxItems: 256,
    mapKey: 'name',
    rules: [(ports, path, issues) => {
      const seen = new Set<unknown>();
      for (const p of ports) {
        const n = (p as Record<string, unknown>)['number'];
        if (seen.has(n)) {
          issues.add(path, 'Invalid value: "array": port number cannot be duplicated');
          return;
        }
        seen.add(n);
      }
    }],
  }),
  location: strEnum(['MESH_EXTERNAL', 'MESH_INTERNAL']),
  resolution: strEnum(['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'DYNAMIC_DNS']),
  endpoints: arr(workloadEntry, { maxItems: 4096 }),
  workloadSelector,
  exportTo: strs(),
  subjectAltNames: strs(),
}, {
  required: ['hosts'],
  rules: [(v, path, issues) => {
    const has = (k: string): boolean => v[k] !== undefined && v[k] !== null;
    if (has('workloadSelector') && has('endpoints')) issues.add(path, 'Invalid value: "object": only one of WorkloadSelector or Endpoints can be set');
    const resolution = typeof v['resolution'] === 'string' ? v['resolution'] : 'NONE';
    const addresses = Array.isArray(v['addresses']) ? (v['addresses'] as string[]) : [];
    if (addresses.some((a) => a.includes('/')) && resolution !== 'STATIC' && resolution !== 'NONE') {
      issues.add(path, 'Invalid value: "object": CIDR addresses are allowed only for NONE/STATIC resolution types');
    }
    if (resolution === 'NONE' && has('endpoints')) issues.add(path, 'Invalid value: "object": NONE mode cannot set endpoints');
    if (resolution === 'DNS_ROUND_ROBIN' && Array.isArray(v['endpoints']) && v['endpoints'].length > 1) {
      issues.add(path, 'Invalid value: "object": DNS_ROUND_ROBIN mode cannot have multiple endpoints');
    }
  }],
});

const probePort = (): Schema => uint32([portRange]);

const workloadGroup = obj({
  metadata: obj({ labels: map(str(), { maxProperties: 256 }), annotations: map(str(), { maxProperties: 256 }) }),
  template: obj(workloadEntryFields, { rules: [udsNoPorts] }),
  probe: obj({
    initialDelaySeconds: int32({ min: 0 }),
    timeoutSeconds: int32({ min: 0 }),
    periodSeconds: int32({ min: 0 }),
    successThreshold: int32({ min: 0 }),
    failureThreshold: int32({ min: 0 }),
    httpGet: obj({
      path: str(),
      port: probePort(),
      host: str(),
      scheme: str({
        rules: [(v, path, issues) => {
          if (v !== '' && v !== 'HTTP' && v !== 'HTTPS') issues.add(path, `Invalid value: "string": scheme must be one of [HTTP, HTTPS] (got ${JSON.stringify(v)})`);
        }],
      }),
      httpHeaders: arr(obj({ name: str({ pattern: /^[-_A-Za-z0-9]+$/ }), value: str() })),
    }, { required: ['port'] }),
    tcpSocket: obj({ host: str(), port: probePort() }, { required: ['port'] }),
    exec: obj({ command: strs({}, str({ minLength: 1 })) }, { required: ['command'] }),
    grpc: obj({ port: probePort(), service: str() }),
  }, { oneOf: [['httpGet', 'tcpSocket', 'exec', 'grpc']] }),
}, { required: ['template'] });

// ---------------------------------------------------------------- Sidecar, Gateway

const captureMode = strEnum(['DEFAULT', 'IPTABLES', 'NONE']);

const sidecar = obj({
  workloadSelector,
  ingress: arr(obj({
    port: portDecl,
    bind: str(),
    captureMode,
    defaultEndpoint: str(),
    tls: serverTLS,
    connectionPool,
  }, { required: ['port'] })),
  egress: arr(obj({ port: portDecl, bind: str(), captureMode, hosts: strs() }, { required: ['hosts'] })),
  inboundConnectionPool: connectionPool,
  outboundTrafficPolicy: obj({ mode: strEnum(['REGISTRY_ONLY', 'ALLOW_ANY']), egressProxy: destination }),
});

const gateway = obj({
  servers: arr(obj({
    port: obj(portDecl.fields, { required: ['number', 'protocol', 'name'] }),
    bind: str(),
    hosts: strs(),
    tls: serverTLS,
    defaultEndpoint: str(),
    name: str(),
  }, { required: ['port', 'hosts'] })),
  selector: stringMap,
});

// ---------------------------------------------------------------- EnvoyFilter

const filterMatch = obj({ name: str(), subFilter: obj({ name: str() }) });

const envoyFilter = obj({
  workloadSelector,
  targetRefs: arr(targetRef, { maxItems: 16 }),
  configPatches: arr(obj({
    applyTo: strEnum(['INVALID', 'LISTENER', 'FILTER_CHAIN', 'NETWORK_FILTER', 'HTTP_FILTER', 'ROUTE_CONFIGURATION',
      'VIRTUAL_HOST', 'HTTP_ROUTE', 'CLUSTER', 'EXTENSION_CONFIG', 'BOOTSTRAP', 'LISTENER_FILTER']),
    match: obj({
      context: strEnum(['ANY', 'SIDECAR_INBOUND', 'SIDECAR_OUTBOUND', 'GATEWAY', 'WAYPOINT']),
      proxy: obj({ proxyVersion: str(), metadata: stringMap }),
      listener: obj({
        portNumber: uint32(),
        portName: str(),
        filterChain: obj({
          name: str(),
          sni: str(),
          transportProtocol: str(),
          applicationProtocols: str(),
          filter: filterMatch,
          destinationPort: uint32(),
          transportSocket: str(),
        }),
        listenerFilter: str(),
        name: str(),
      }),
      routeConfiguration: obj({
        portNumber: uint32(),
        portName: str(),
        gateway: str(),
        vhost: obj({
          name: str(),
          domainName: str(),
          route: obj({ name: str(), action: strEnum(['ANY', 'ROUTE', 'REDIRECT', 'DIRECT_RESPONSE']) }),
        }),
        name: str(),
      }),
      cluster: obj({ portNumber: uint32(), service: str(), subset: str(), name: str() }),
      waypoint: obj({ filter: filterMatch, route: obj({ name: str() }), portNumber: uint32([portRange]) }),
    }, {
      oneOf: [['listener', 'routeConfiguration', 'cluster', 'waypoint']],
      rules: [(v, path, issues) => {
        const hasWaypoint = v['waypoint'] !== undefined && v['waypoint'] !== null;
        if ((v['context'] === 'WAYPOINT') !== hasWaypoint) {
          issues.add(path, 'Invalid value: "object": only support waypointMatch when context is WAYPOINT');
        }
      }],
    }),
    patch: obj({
      operation: strEnum(['INVALID', 'MERGE', 'ADD', 'REMOVE', 'INSERT_BEFORE', 'INSERT_AFTER', 'INSERT_FIRST', 'REPLACE', 'MERGE_AND_REPLACE_LIST']),
      value: any({ object: true }),
      filterClass: strEnum(['UNSPECIFIED', 'AUTHN', 'AUTHZ', 'STATS']),
    }),
  })),
  priority: int32(),
}, {
  rules: [(v, path, issues) => {
    if (v['workloadSelector'] != null && v['targetRefs'] != null) {
      issues.add(path, 'Invalid value: "object": only one of targetRefs or workloadSelector can be set');
    }
  }],
});

// ---------------------------------------------------------------- Telemetry

const providers = arr(obj({ name: str({ minLength: 1 }) }, { required: ['name'] }));
const WORKLOAD_MODE = ['CLIENT_AND_SERVER', 'CLIENT', 'SERVER'];

const telemetry = obj({
  selector: labelSelector,
  targetRef,
  targetRefs: arr(targetRef, { maxItems: 16 }),
  tracing: arr(obj({
    match: obj({ mode: strEnum(WORKLOAD_MODE) }),
    providers,
    randomSamplingPercentage: num({ min: 0, max: 100 }),
    disableSpanReporting: bool(),
    customTags: map(obj({
      literal: obj({ value: str({ minLength: 1 }) }, { required: ['value'] }),
      environment: obj({ name: str({ minLength: 1 }), defaultValue: str() }, { required: ['name'] }),
      header: obj({ name: str({ minLength: 1 }), defaultValue: str() }, { required: ['name'] }),
      formatter: obj({ value: str({ minLength: 1 }) }, { required: ['value'] }),
    }, { oneOf: [['literal', 'environment', 'header', 'formatter']] })),
    useRequestIdForTraceSampling: bool(),
    enableIstioTags: bool(),
    disableContextPropagation: bool(),
  })),
  metrics: arr(obj({
    providers,
    overrides: arr(obj({
      match: obj({
        metric: strEnum(['ALL_METRICS', 'REQUEST_COUNT', 'REQUEST_DURATION', 'REQUEST_SIZE', 'RESPONSE_SIZE',
          'TCP_OPENED_CONNECTIONS', 'TCP_CLOSED_CONNECTIONS', 'TCP_SENT_BYTES', 'TCP_RECEIVED_BYTES',
          'GRPC_REQUEST_MESSAGES', 'GRPC_RESPONSE_MESSAGES']),
        customMetric: str({ minLength: 1 }),
        mode: strEnum(WORKLOAD_MODE),
      }, { oneOf: [['metric', 'customMetric']] }),
      disabled: bool(),
      tagOverrides: map(obj({ operation: strEnum(['UPSERT', 'REMOVE']), value: str() }, {
        rules: [(v, path, issues) => {
          const op = typeof v['operation'] === 'string' ? v['operation'] : '';
          // CEL: self.value != "" errors out when value is absent, so absent is rejected too.
          if (op === 'UPSERT' && (typeof v['value'] !== 'string' || v['value'] === '')) {
            issues.add(path, 'Invalid value: "object": value must be set when operation is UPSERT');
          }
          if (op === 'REMOVE' && v['value'] != null) issues.add(path, 'Invalid value: "object": value must not be set when operation is REMOVE');
        }],
      })),
    })),
    reportingInterval: duration(),
  })),
  accessLogging: arr(obj({
    match: obj({ mode: strEnum(WORKLOAD_MODE) }),
    providers,
    disabled: bool(),
    filter: obj({ expression: str() }),
  })),
}, {
  rules: [(v, path, issues) => {
    const n = (v['selector'] != null ? 1 : 0) + (v['targetRef'] != null ? 1 : 0) + (v['targetRefs'] != null ? 1 : 0);
    if (n > 1) issues.add(path, 'Invalid value: "object": only one of targetRefs or selector can be set');
  }],
});

// ---------------------------------------------------------------- Security (security.istio.io/v1)

const selectorXorTargetRefs: NodeRule<Record<string, unknown>> = (v, path, issues) => {
  const n = (v['selector'] != null ? 1 : 0) + (v['targetRef'] != null ? 1 : 0) + (v['targetRefs'] != null ? 1 : 0);
  if (n > 1) issues.add(path, 'Invalid value: "object": only one of targetRefs or selector can be set');
};

// ---- AuthorizationPolicy

const serviceAccountList = (): Schema => strs({ maxItems: 16 }, str({ maxLength: 320 }));

const authorizationSource = obj({
  principals: strs(),
  notPrincipals: strs(),
  requestPrincipals: strs(),
  notRequestPrincipals: strs(),
  namespaces: strs(),
  notNamespaces: strs(),
  ipBlocks: strs(),
  notIpBlocks: strs(),
  remoteIpBlocks: strs(),
  notRemoteIpBlocks: strs(),
  serviceAccounts: serviceAccountList(),
  notServiceAccounts: serviceAccountList(),
  trustDomains: strs(),
  notTrustDomains: strs(),
}, {
  rules: [(v, path, issues) => {
    const has = (k: string): boolean => v[k] != null;
    if ((has('serviceAccounts') || has('notServiceAccounts')) &&
      (has('principals') || has('notPrincipals') || has('namespaces') || has('notNamespaces'))) {
      issues.add(path, 'Invalid value: "object": Cannot set serviceAccounts with namespaces or principals');
    }
  }],
});

const authorizationPolicy = obj({
  selector: labelSelector,
  targetRef,
  targetRefs: arr(targetRef, { maxItems: 16 }),
  rules: arr(obj({
    from: arr(obj({ source: authorizationSource }), { maxItems: 512 }),
    to: arr(obj({
      operation: obj({
        hosts: strs(), notHosts: strs(), ports: strs(), notPorts: strs(),
        methods: strs(), notMethods: strs(), paths: strs(), notPaths: strs(),
      }),
    })),
    when: arr(obj({ key: str(), values: strs(), notValues: strs() }, { required: ['key'] })),
  }), { maxItems: 512 }),
  action: strEnum(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']),
  provider: obj({ name: str() }),
}, { rules: [selectorXorTargetRefs], rulesDespiteFieldErrors: true });

// ---- PeerAuthentication (validation only; its behaviour belongs to the mTLS code)

const MTLS_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];

const peerAuthentication = obj({
  selector: labelSelector,
  mtls: obj({ mode: strEnum(MTLS_MODES) }),
  portLevelMtls: map(obj({ mode: strEnum(MTLS_MODES) }), {
    minProperties: 1,
    // CEL: self.all(key, 0 < int(key) && int(key) <= 65535); int() of a non-number fails.
    rules: [(v, path, issues) => {
      for (const k in v) {
        if (!/^[-+]?\d+$/.test(k)) {
          issues.add(path, `Invalid value: "object": type conversion error from 'string' to 'int' (key ${JSON.stringify(k)})`);
          return;
        }
        const n = Number(k);
        if (!(n > 0 && n <= 65535)) {
          issues.add(path, `Invalid value: "object": port must be between 1-65535 (got ${JSON.stringify(k)})`);
          return;
        }
      }
    }],
  }),
}, {
  rules: [(v, path, issues) => {
    if (v['portLevelMtls'] == null) return;
    const selector = v['selector'] as Record<string, unknown> | null | undefined;
    const labels = selector?.['matchLabels'] as Record<string, unknown> | null | undefined;
    if (labels == null || Object.keys(labels).length === 0) issues.add(path, 'Invalid value: "object": portLevelMtls requires selector');
  }],
});

// ---- RequestAuthentication

const jwksUri = (): Schema => str({
  minLength: 1,
  maxLength: 2048,
  rules: [(v, path, issues) => {
    // CEL: url(self).getScheme() in ["http", "https"].
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(v)?.[1]?.toLowerCase();
    if (scheme !== 'http' && scheme !== 'https') issues.add(path, `Invalid value: "string": url must have scheme http:// or https:// (got ${JSON.stringify(v)})`);
  }],
});

const requestAuthentication = obj({
  selector: labelSelector,
  targetRef,
  targetRefs: arr(targetRef, { maxItems: 16 }),
  jwtRules: arr(obj({
    issuer: str({ minLength: 1 }),
    audiences: strs({}, str({ minLength: 1 })),
    jwksUri: jwksUri(),
    jwks_uri: jwksUri(),
    jwks: str(),
    fromHeaders: arr(obj({ name: str({ minLength: 1 }), prefix: str() }, { required: ['name'] })),
    fromParams: strs({}, str({ minLength: 1 })),
    fromCookies: strs({}, str({ minLength: 1 })),
    outputPayloadToHeader: str(),
    forwardOriginalToken: bool(),
    outputClaimToHeaders: arr(obj({
      header: str({ minLength: 1, pattern: /^[-_A-Za-z0-9]+$/ }),
      claim: str({ minLength: 1 }),
    }, { required: ['header', 'claim'] })),
    spaceDelimitedClaims: strs({ maxItems: 64 }, str({ minLength: 1 })),
    // CEL: duration(self) >= duration('1ms'); a value that does not parse fails the same rule.
    timeout: str({
      rules: [(v, path, issues) => {
        if (checkDurationAtLeast1ms(v) !== undefined) issues.add(path, `Invalid value: "string": must be a valid duration greater than 1ms (got ${JSON.stringify(v)})`);
      }],
    }),
    presence: strEnum(['OPTIONAL', 'REQUIRED']),
  }, {
    rules: [(v, path, issues) => {
      const n = (v['jwksUri'] != null ? 1 : 0) + (v['jwks_uri'] != null ? 1 : 0) + (v['jwks'] != null ? 1 : 0);
      if (n > 1) issues.add(path, 'Invalid value: "object": only one of jwks or jwksUri can be set');
    }],
  }), { maxItems: 4096 }),
}, { rules: [selectorXorTargetRefs], rulesDespiteFieldErrors: true });

// ---- WasmPlugin

// The CRD's CEL rule: the URL parses (with http:// put in front when it has no scheme) and its
// scheme is one of these.
const WASM_URL_SCHEMES = ['', 'http', 'https', 'oci', 'file'];
const wasmUrl: NodeRule<string> = (v, path, issues) => {
  const scheme = (u: string): string | undefined => {
    try {
      return new URL(u).protocol.replace(/:$/, '');
    } catch {
      return undefined;
    }
  };
  const own = /^[A-Za-z][A-Za-z0-9+.-]*:/.test(v) ? scheme(v) : undefined;
  const ok = own !== undefined ? WASM_URL_SCHEMES.includes(own) : scheme(`http://${v}`) === 'http' && !/[\s#%$@]/.test(v.split('/')[0] ?? '');
  if (!ok) issues.add(path, `Invalid value: "string": url must have schema one of [http, https, file, oci] (got ${JSON.stringify(v)})`);
};

const wasmPlugin = obj({
  selector: labelSelector,
  targetRef,
  targetRefs: arr(targetRef, { maxItems: 16 }),
  url: str({ minLength: 1, rules: [wasmUrl] }),
  sha256: str({ pattern: /^$|^[a-f0-9]{64}$/, patternHint: '(^$|^[a-f0-9]{64}$)' }),
  imagePullPolicy: strEnum(['UNSPECIFIED_POLICY', 'IfNotPresent', 'Always']),
  imagePullSecret: str({ minLength: 1, maxLength: 253 }),
  verificationKey: str(),
  pluginConfig: any({ object: true }),
  pluginName: str({ minLength: 1, maxLength: 256 }),
  phase: strEnum(['UNSPECIFIED_PHASE', 'AUTHN', 'AUTHZ', 'STATS']),
  priority: int32(),
  failStrategy: strEnum(['FAIL_CLOSE', 'FAIL_OPEN', 'FAIL_RELOAD']),
  vmConfig: obj({
    env: arr(obj({
      name: str({ minLength: 1, maxLength: 256 }),
      value: str({ maxLength: 2048 }),
      valueFrom: strEnum(['INLINE', 'HOST']),
    }, {
      required: ['name'],
      rules: [(v, path, issues) => {
        if (v['valueFrom'] === 'HOST' && v['value'] != null) issues.add(path, 'Invalid value: "object": value may only be set when valueFrom is INLINE');
      }],
    }), { maxItems: 256, mapKey: 'name' }),
  }),
  match: arr(obj({
    mode: strEnum(['UNDEFINED', 'CLIENT', 'SERVER', 'CLIENT_AND_SERVER']),
    ports: arr(obj({ number: int({ min: 1, max: 65535 }) }, { required: ['number'] }), { mapKey: 'number' }),
  })),
  type: strEnum(['UNSPECIFIED_PLUGIN_TYPE', 'HTTP', 'NETWORK']),
}, { required: ['url'], rules: [selectorXorTargetRefs], rulesDespiteFieldErrors: true });

/** The spec schema of each supported kind. */
export const SPEC_SCHEMAS: Readonly<Record<SupportedKind, ObjectSchema>> = {
  VirtualService: virtualService,
  DestinationRule: destinationRule,
  ServiceEntry: serviceEntry,
  WorkloadEntry: workloadEntry,
  WorkloadGroup: workloadGroup,
  Sidecar: sidecar,
  Gateway: gateway,
  EnvoyFilter: envoyFilter,
  Telemetry: telemetry,
  AuthorizationPolicy: authorizationPolicy,
  PeerAuthentication: peerAuthentication,
  RequestAuthentication: requestAuthentication,
  AdaptiveLimit: adaptiveLimitSchema,
  LaneGroup: laneGroupSchema,
  WasmPlugin: wasmPlugin,
  RouteTemplates: routeTemplatesSchema,
  RateLimit: rateLimitSchema,
  LazyScope: lazyScopeSchema,
  WorkloadScope: workloadScopeSchema,
};
