// The lazy-scope controller's door (M5): the pure step (edges, aging with hysteresis, what to
// write), the Prometheus lane's query, and the loop that runs them on the elected leader.
export { step, initialState, forgetWritten, edgesOf, renderSidecar, scopeHosts, managedSidecarName, MAX_EDGES_PER_WORKLOAD, DEFAULT_STATUS_EVERY_MS } from './step.ts';
export type { CallObservation, LazyWorkload, StepConfig, LazyScopeState, WorkloadScopeStatus, LazyScopeWrite, StepResult } from './step.ts';
export { edgeQuery, queryEdges, promDuration, PrometheusQueryError, MAX_PROMETHEUS_EDGES } from './prometheus.ts';
export type { PrometheusEdge } from './prometheus.ts';
export { LazyScopeController, MAX_PENDING_OBSERVATIONS } from './controller.ts';
export type { LazyScopeInputs, LazyScopeLearning, LazyScopeControllerOptions, LazyScopeDebug } from './controller.ts';
