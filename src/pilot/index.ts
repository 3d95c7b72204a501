// The pilot: Sextant's xDS control plane. startPilot runs it in-process (the CLI and tests).
export { startPilot, parseHostPort, isEndpointOnlyEvent } from './server.ts';
export type { Pilot, PilotOptions } from './server.ts';
export { PilotMetrics } from './metrics.ts';
export type { Generators, Proxy, PushContext, PushPlan, ConfigChange } from './model.ts';
