// The abort signal of one downstream request. Every request that goes upstream listens on
// it, so it is the cheapest thing that behaves like an AbortSignal for the proxy's own
// uses: a plain object with a listener list, where Node's AbortController is an EventTarget
// that costs microseconds and several allocations per request to create and listen on.

/** What the proxy needs of an abort signal; a standard AbortSignal is one too. */
export interface AbortSignalLike {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** A one-shot signal: listeners run once, in the order added, when `abort` is first called. */
export class RequestAbort implements AbortSignalLike {
  aborted = false;
  reason: unknown = undefined;
  // most requests have one listener at a time (the upstream exchange in flight)
  private listeners: (() => void)[] | null = null;

  // every listener runs at most once: a signal aborts once
  addEventListener(_type: 'abort', listener: () => void, _options?: { once?: boolean }): void {
    if (this.aborted) return; // as AbortSignal: an aborted signal fires no more events
    if (this.listeners === null) this.listeners = [listener];
    else if (!this.listeners.includes(listener)) this.listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const l = this.listeners;
    if (l === null) return;
    const i = l.indexOf(listener);
    if (i < 0) return;
    if (l.length === 1) this.listeners = null;
    else l.splice(i, 1);
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const l = this.listeners;
    this.listeners = null;
    if (l === null) return;
    for (const f of l) {
      try {
        f();
      } catch (e) {
        // as EventTarget does: a throwing listener is reported, and the others still run
        queueMicrotask(() => { throw e; });
      }
    }
  }
}
