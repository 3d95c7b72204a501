// When the demo restarts a process that exited on its own: exponential backoff, as a
// process manager does, reset once the process has stayed up a while, so a crash loop
// slows down (and is reported) instead of spinning.

export interface RestartPolicy {
  /** Delay before the first restart after a good run. */
  initialDelayMs: number;
  /** The delay doubles per consecutive exit up to this. */
  maxDelayMs: number;
  /** A process up at least this long had a good run: its next exit starts from `initialDelayMs` again. */
  stableAfterMs: number;
  /** This many consecutive exits without a good run make a crash loop. */
  crashLoopAfter: number;
}

/** 250 ms, 500 ms, 1 s, … 8 s, then 10 s; reset after 30 s up (three times the cap). */
export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  stableAfterMs: 30_000,
  crashLoopAfter: 3,
};

/** The restart schedule of one supervised process. */
export class RestartBackoff {
  readonly policy: RestartPolicy;
  #consecutiveExits = 0;

  constructor(policy: RestartPolicy = DEFAULT_RESTART_POLICY) {
    this.policy = policy;
  }

  /** Exits since the last good run, counting the latest. */
  get consecutiveExits(): number {
    return this.#consecutiveExits;
  }

  /** Records an exit after `uptimeMs` of running and returns how long to wait before starting again. */
  exited(uptimeMs: number): number {
    if (uptimeMs >= this.policy.stableAfterMs) this.#consecutiveExits = 0;
    this.#consecutiveExits++;
    return restartDelayMs(this.policy, this.#consecutiveExits);
  }

  /**
   * Whether the process is in a crash loop: enough consecutive exits, and the run since the
   * last restart (if it is running, up `uptimeMs`) has not yet proved good.
   */
  crashLooping(uptimeMs = 0): boolean {
    return this.#consecutiveExits >= this.policy.crashLoopAfter && uptimeMs < this.policy.stableAfterMs;
  }
}

/** The delay before the `n`th consecutive restart (n ≥ 1): initial × 2^(n−1), capped. */
export function restartDelayMs(policy: RestartPolicy, n: number): number {
  if (n < 1) return 0;
  // 2 ** n is Infinity past 1023, which the cap absorbs.
  return Math.min(policy.initialDelayMs * 2 ** (n - 1), policy.maxDelayMs);
}
