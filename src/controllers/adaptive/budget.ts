// Splitting a service's budget over its healthy instances, and the deadband that keeps small
// moves from becoming pushes. Pure functions, like the step.

/** One healthy instance as the split sees it. */
export interface BudgetShare {
  /** `address|port`: the instance's key. */
  id: string;
  /** Successful requests per second it served in the last interval (0 when unknown). */
  goodput: number;
}

/**
 * Integer limits summing to about `budget`: half split evenly, half by goodput share (a slower
 * instance, which finishes less at the same concurrency, gets less), each within
 * [floor, ceiling]. Evenly when no instance reported goodput.
 */
export function splitBudget(budget: number, instances: readonly BudgetShare[], floor: number, ceiling: number): Map<string, number> {
  const out = new Map<string, number>();
  const n = instances.length;
  if (n === 0) return out;
  let total = 0;
  for (const i of instances) total += Math.max(i.goodput, 0);
  for (const i of instances) {
    const share = total > 0 ? 0.5 / n + (0.5 * Math.max(i.goodput, 0)) / total : 1 / n;
    out.set(i.id, Math.min(Math.max(Math.round(budget * share), floor), ceiling));
  }
  return out;
}

/**
 * The limits to push: a new value replaces the one in force only when it moved by more than
 * `deadband` (a fraction of the old value) or by a whole step at a small limit; an instance
 * without a limit in force takes the new one.
 */
export function withDeadband(inForce: ReadonlyMap<string, number>, next: ReadonlyMap<string, number>, deadband: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const [id, v] of next) {
    const old = inForce.get(id);
    if (old === undefined || old <= 0) {
      out.set(id, v);
      continue;
    }
    const moved = Math.abs(v - old);
    out.set(id, moved > deadband * old || (moved >= 1 && old * deadband < 1) ? v : old);
  }
  return out;
}
