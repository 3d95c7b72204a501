// Envoy's v3 API protos, loaded once from the copies @grpc/grpc-js-xds ships, shared by
// the pilot (encoding what it serves) and the proxy (decoding what it receives). Parsed
// once per install; later processes build the root from a cached JSON descriptor.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { descriptorCacheDirs, descriptorCacheKey, readDescriptor, writeDescriptor } from './descriptor-cache.ts';

const require = createRequire(import.meta.url);
const xdsPackageJson = require.resolve('@grpc/grpc-js-xds/package.json');
const protobufjsPackageJson = require.resolve('protobufjs/package.json');
const xdsPackageDir = path.dirname(xdsPackageJson);
const depsDir = path.join(xdsPackageDir, 'deps');

/** Directories searched for imports, in order (the same roots Envoy's own build uses). */
export const PROTO_INCLUDE_DIRS: readonly string[] = [
  path.join(depsDir, 'envoy-api'),
  path.join(depsDir, 'xds'),
  path.join(depsDir, 'googleapis'),
  path.join(depsDir, 'protoc-gen-validate'),
  path.join(depsDir, 'cel-spec', 'proto'),
  // google/protobuf/descriptor.proto and friends, as protobufjs ships them.
  path.dirname(require.resolve('protobufjs/package.json')),
  // Istio's own xDS types (NDS), which no package ships.
  path.join(import.meta.dirname, 'protos'),
];

/**
 * Every proto the mesh speaks: discovery, the four resource types, status, and each
 * extension the pilot emits inside an Any. Adding a typed extension means adding it here.
 */
export const PROTO_FILES: readonly string[] = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/service/discovery/v3/discovery.proto',
  'envoy/service/status/v3/csds.proto',
  'envoy/service/runtime/v3/rtds.proto',
  'envoy/service/load_stats/v3/lrs.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/core/v3/base.proto',
  'envoy/admin/v3/config_dump.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto',
  'envoy/extensions/filters/http/fault/v3/fault.proto',
  'envoy/extensions/filters/http/cors/v3/cors.proto',
  'envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto',
  'envoy/extensions/rate_limit_descriptors/expr/v3/expr.proto',
  'envoy/extensions/filters/http/rbac/v3/rbac.proto',
  'envoy/extensions/filters/network/rbac/v3/rbac.proto',
  'envoy/extensions/filters/http/jwt_authn/v3/config.proto',
  'envoy/extensions/filters/http/wasm/v3/wasm.proto',
  'envoy/extensions/filters/listener/original_dst/v3/original_dst.proto',
  'envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'envoy/extensions/access_loggers/file/v3/file.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  'envoy/extensions/access_loggers/grpc/v3/als.proto',
  'envoy/extensions/access_loggers/filters/cel/v3/cel.proto',
  'envoy/service/accesslog/v3/als.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/clusters/aggregate/v3/cluster.proto',
  'envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto',
  'envoy/extensions/load_balancing_policies/ring_hash/v3/ring_hash.proto',
  'envoy/extensions/load_balancing_policies/least_request/v3/least_request.proto',
  'envoy/extensions/load_balancing_policies/random/v3/random.proto',
  'envoy/extensions/load_balancing_policies/wrr_locality/v3/wrr_locality.proto',
  'envoy/extensions/load_balancing_policies/client_side_weighted_round_robin/v3/client_side_weighted_round_robin.proto',
  'envoy/extensions/load_balancing_policies/pick_first/v3/pick_first.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto',
  'udpa/type/v1/typed_struct.proto',
  'xds/type/v3/typed_struct.proto',
  'google/protobuf/struct.proto',
  'google/protobuf/wrappers.proto',
  'google/protobuf/duration.proto',
  'google/protobuf/any.proto',
  'istio/networking/nds/v1/nds.proto',
  'io/istio/network/authn/config.proto',
];

function resolveInIncludeDirs(_origin: string, target: string): string | null {
  if (path.isAbsolute(target)) return target;
  for (const dir of PROTO_INCLUDE_DIRS) {
    const candidate = path.join(dir, target);
    if (existsSync(candidate)) return candidate;
  }
  return target;
}

function parseProtos(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = resolveInIncludeDirs;
  root.loadSync(PROTO_FILES.filter((f) => protoFileExists(f)), { keepCase: false });
  root.resolveAll();
  return root;
}

function protoFileExists(file: string): boolean {
  return PROTO_INCLUDE_DIRS.some((dir) => existsSync(path.join(dir, file)));
}

function packageVersion(packageJson: string): string {
  const v = (JSON.parse(readFileSync(packageJson, 'utf8')) as { version?: unknown }).version;
  return typeof v === 'string' ? v : 'unknown';
}

/** The node_modules directory protobufjs was resolved from (where `.cache/` belongs). */
function nodeModulesDir(): string | undefined {
  let dir = path.dirname(protobufjsPackageJson);
  while (path.basename(dir) !== 'node_modules') {
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
  return dir;
}

/** How this process built its root: from the descriptor cache or by parsing the protos. */
export type EnvoyRootSource = 'cache' | 'protos';

let rootSource: EnvoyRootSource | undefined;

function loadRoot(): protobuf.Root {
  let dirs: string[] = [];
  let key = '';
  try {
    dirs = descriptorCacheDirs(nodeModulesDir());
    key = descriptorCacheKey({
      protobufjsVersion: packageVersion(protobufjsPackageJson),
      xdsVersion: packageVersion(xdsPackageJson),
      includeDirs: PROTO_INCLUDE_DIRS,
      protoFiles: PROTO_FILES,
    });
    const cached = readDescriptor(dirs, key);
    if (cached !== undefined) {
      const root = protobuf.Root.fromJSON(cached.root);
      root.resolvePath = resolveInIncludeDirs;
      // Marks the files as loaded so a later loadSync of an extension does not parse
      // (and redefine) the shared imports again.
      root.files = [...cached.files];
      root.resolveAll();
      rootSource = 'cache';
      return root;
    }
  } catch {
    // an unusable cache is the same as none: parse below, and the write replaces it
  }
  const root = parseProtos();
  rootSource = 'protos';
  if (key !== '') {
    try {
      writeDescriptor(dirs, key, { root: root.toJSON() as Record<string, unknown>, files: [...root.files] });
    } catch {
      // best effort: the next process parses again
    }
  }
  return root;
}

let cachedRoot: protobuf.Root | undefined;

/**
 * The loaded proto root (lazily, once per process: parsing the protos takes ~250 ms, the
 * cached descriptor ~150 ms).
 */
export function envoyRoot(): protobuf.Root {
  cachedRoot ??= loadRoot();
  return cachedRoot;
}

/** How the current process built its root, or undefined before the first envoyRoot(). */
export function envoyRootSource(): EnvoyRootSource | undefined {
  return rootSource;
}
