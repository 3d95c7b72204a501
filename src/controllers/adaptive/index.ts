// The adaptive-limits controller's door: the pure PID step and budget split (golden-tested
// against a simulator), and the loop that runs them on the elected leader.
export { step, initialState, MIN_SAMPLES, STALE_TICKS_TO_LAPSE, PV_SMOOTHING } from './step.ts';
export type { StepRule, Observation, PidState, StepResult, StepReason } from './step.ts';
export { splitBudget, withDeadband } from './budget.ts';
export type { BudgetShare } from './budget.ts';
export { LoadLedger, inboundPort, observation } from './observe.ts';
export type { ClusterSample, InstanceLoad, InstanceTick } from './observe.ts';
export { AdaptiveController } from './controller.ts';
export type { AdaptiveControllerOptions, AdaptiveInputs, AdaptiveRuleInput, AdaptiveLimitStatus, PublishedLimit } from './controller.ts';
