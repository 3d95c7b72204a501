// The pilot: Sextant's xDS control plane. startPilot runs it in-process (the CLI and tests).
export { startPilot, parseHostPort, isEndpointOnlyEvent } from './server.ts';
export type { Pilot, PilotOptions } from './server.ts';
export type { Leadership, LeaderStatus, LeaderTaskStep } from './leader/index.ts';
export { startCertificateAuthority, DEFAULT_TRUST_DOMAIN } from './ca/index.ts';
export type { CertificateAuthority, CertificateAuthorityOptions } from './ca/index.ts';
export { PilotMetrics } from './metrics.ts';
export type { Generators, Proxy, PushContext, PushPlan, ConfigChange } from './model.ts';
export { DEFAULT_MESH_CONFIG, MeshConfigError, MeshConfigFile, parseMeshConfig, readMeshConfigFile, staticMeshConfig } from './mesh-config/index.ts';
export type { MeshConfig, MeshConfigSource } from './mesh-config/index.ts';
