// A timeout whose deadline moves with every request (keep-alive idle, head read, upstream
// response, pooled connection idle). Moving it is a field store, not a timer-list operation:
// Node's refresh() re-links the timer and reads libuv's clock through a native call each
// time, four times per proxied request. The timer fires at the earliest deadline it was set
// for; if the deadline moved since, it waits out the rest, so it never expires early.

export class DeadlineTimer {
  private readonly onExpired: () => void;
  private timer: NodeJS.Timeout | null = null;
  /** When the pending timeout fires (ms since the epoch); 0: none pending. */
  private firesAt = 0;
  /** The deadline (ms since the epoch); 0: disarmed. */
  private deadline = 0;

  constructor(onExpired: () => void) {
    this.onExpired = onExpired;
  }

  /** True while a deadline is set. */
  get armed(): boolean {
    return this.deadline !== 0;
  }

  /** Expires `ms` after `now`, unless moved or disarmed before. */
  arm(ms: number, now: number = Date.now()): void {
    const deadline = now + ms;
    this.deadline = deadline;
    // a timeout pending for no later than the deadline will look again when it fires
    if (this.firesAt !== 0 && this.firesAt <= deadline) return;
    this.schedule(ms, deadline);
  }

  /** No deadline; a pending timeout fires once more and does nothing. */
  disarm(): void {
    this.deadline = 0;
  }

  /** Disarms and cancels the pending timeout (its owner is closing). */
  stop(): void {
    this.deadline = 0;
    this.firesAt = 0;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(ms: number, at: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.firesAt = at;
    this.timer = setTimeout(this.fire, ms);
    // what the timeout guards (a socket, a request) keeps the process alive, not the timer
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.firesAt = 0;
    this.timer = null;
    const deadline = this.deadline;
    if (deadline === 0) return;
    const left = deadline - Date.now();
    if (left > 0) {
      this.schedule(left, deadline);
      return;
    }
    this.deadline = 0;
    this.onExpired();
  };
}
