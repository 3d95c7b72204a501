// The admission room: `sextant.filters.http.admission`, the per-inbound-port concurrency gate
// of adaptive limits (compileAdmission from listener config; AdmissionGates keeps one gate per
// limit key across updates; each gate reads the controller's leased limit from the runtime
// layer and reports its load for LRS).
export { ADMISSION_BOUNDS, ADMISSION_FILTER, ADMISSION_TYPE, compileAdmission } from './config.ts';
export type { AdmissionConfig } from './config.ts';
export { AdmissionGate, REFLEX_STEP, REFLEX_WINDOW_MS, REFLEX_WINDOWS } from './gate.ts';
export type { Admission, AdmissionTicket, GateCounters, GateReport, GateTimers, LimitSource, RejectReason } from './gate.ts';
export { AdmissionGates, admissionPrometheus, admissionStatLines } from './gates.ts';
export type { AdmissionGatesOptions } from './gates.ts';
export { LatencyHistogram } from './histogram.ts';

/** The answer's flag and details, and the header that tells callers not to retry it (Envoy's overload answer). */
export const ADMISSION_FLAG = 'UO';
export const ADMISSION_DETAILS = 'admission_rejected';
