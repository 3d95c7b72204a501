// `sextant wait`: holds a start-up step until the sidecar is ready (M10). In a pod it is the
// sidecar's postStart hook, so the kubelet starts the app container only after it returns;
// on a VM it is the app unit's ExecStartPre. It polls the sidecar's readiness endpoint
// (/healthz/ready on 15021: 200 once the first complete config is applied and its listeners
// are bound) as istio-agent's `pilot-agent wait` does: every 500 ms, for at most 60 s.

// node:http without an ESM import (whose facade loads Node's bundled fetch for nothing).
const http = process.getBuiltinModule('node:http');

export const DEFAULT_READY_URL = 'http://127.0.0.1:15021/healthz/ready';

export interface WaitOptions {
  url: string;
  /** Give up after this long; default 60 s. */
  timeoutMs: number;
  /** Time between polls; default 500 ms. */
  periodMs: number;
  /** Longest a single poll may take; default 1 s. */
  requestTimeoutMs: number;
}

export const DEFAULT_WAIT: WaitOptions = { url: DEFAULT_READY_URL, timeoutMs: 60_000, periodMs: 500, requestTimeoutMs: 1000 };

export interface WaitResult {
  ready: boolean;
  /** Polls made. */
  attempts: number;
  elapsedMs: number;
  /** What the last poll saw: `200`, `503 PRE_INITIALIZING`, `connection refused`, … */
  last: string;
}

function poll(url: URL, timeoutMs: number): Promise<{ ok: boolean; seen: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => { if (chunks.length < 4) chunks.push(c); });
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8').trim().slice(0, 80);
        resolve({ ok: res.statusCode === 200, seen: `${res.statusCode}${body !== '' ? ` ${body}` : ''}` });
      });
      res.on('error', (err) => resolve({ ok: false, seen: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, seen: err.code === 'ECONNREFUSED' ? 'connection refused' : err.message }));
  });
}

/** The least time the poll made at the deadline gets (a sidecar answers its loopback in well under it). */
const LAST_POLL_MS = 200;

/**
 * Polls until the URL answers 200 or the timeout passes (the last poll is at the deadline,
 * and outlives it by 200 ms at most); never throws.
 */
export async function waitUntilReady(o: WaitOptions, onPoll?: (seen: string) => void): Promise<WaitResult> {
  const url = new URL(o.url);
  const started = performance.now();
  const deadline = started + o.timeoutMs;
  let attempts = 0;
  while (true) {
    attempts++;
    const r = await poll(url, Math.round(Math.min(o.requestTimeoutMs, Math.max(LAST_POLL_MS, deadline - performance.now()))));
    onPoll?.(r.seen);
    const now = performance.now();
    if (r.ok || now >= deadline) return { ready: r.ok, attempts, elapsedMs: now - started, last: r.seen };
    await new Promise((resolve) => setTimeout(resolve, Math.min(o.periodMs, deadline - now)));
  }
}
