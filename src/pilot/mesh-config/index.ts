// Mesh-wide settings: Istio's MeshConfig (`--mesh-config FILE`), the fields the pilot honours,
// the cluster-local hosts they imply, and the file watched for changes.
export { DEFAULT_MESH_CONFIG, MESH_CONFIG_KEY, MeshConfigError, meshConfigFromObject, parseMeshConfig } from './mesh-config.ts';
export type { MeshConfig, ParsedMeshConfig, ServiceSettings, OutboundTrafficMode, PathNormalizationType, EnvoyHttpAlsProvider, ExtensionProvider } from './mesh-config.ts';
export { ClusterLocalHosts, DOMAIN_SUFFIX } from './cluster-local.ts';
export { MeshConfigFile, readMeshConfigFile, staticMeshConfig } from './watch.ts';
export type { MeshConfigSource, MeshConfigFileOptions } from './watch.ts';
