// Who made a response: the application, a proxy, or nobody because the client went away.
// One rule, used by the access-log sink, the metrics, the boards and the alerts alike.
import type { Origin } from './types.ts';

/**
 * Envoy's short response flags that mean the client ended the exchange: downstream connection
 * termination (DC) and downstream remote reset (DR). The response, if any, never reached it.
 */
export const CLIENT_FLAGS: ReadonlySet<string> = new Set(['DC', 'DR']);

/**
 * Flags that only describe the request and leave the response to the application: a delay
 * injected by a fault (DI) still lets the upstream answer.
 */
export const NEUTRAL_FLAGS: ReadonlySet<string> = new Set(['DI']);

/**
 * Every other flag Envoy documents means a proxy made or cut the response. Listed for
 * documentation and tests; an unknown flag letter is treated the same way (a proxy set it).
 */
export const PROXY_FLAGS: ReadonlySet<string> = new Set([
  'NR', // no route
  'NC', // no cluster
  'UH', // no healthy upstream
  'UF', // upstream connection failure
  'UO', // upstream overflow (circuit breaking)
  'URX', // retry limit exceeded
  'UC', // upstream connection termination
  'UR', // upstream remote reset
  'UT', // upstream request timeout
  'LR', // local reset
  'LH', // local health check failed
  'UMSDR', // max stream duration reached
  'RL', // rate limited
  'RLSE', // rate limit service error
  'FI', // fault abort injected
  'UAEX', // external authorization denied
  'IH', // invalid request headers
  'SI', // stream idle timeout
  'DPE', // downstream protocol error: the proxy answered a malformed request
  'UPE', // upstream protocol error
  'DT', // max connection duration
  'OM', // overload manager
  'DF', // DNS resolution failed
  'DO', // drop overload
]);

/**
 * The origin of a response from its status and Envoy's short response flags (`UF,URX`, `-` or ''
 * for none). A client flag wins (the client ended it, whatever else happened); then any flag
 * other than a neutral one means a proxy made the response; else the application did.
 * The status code is not needed for the rule, only kept in the signature so a caller cannot
 * forget that a flagless 503 is the application's own.
 */
export function originOf(responseCode: number, responseFlags: string): Origin {
  void responseCode;
  if (responseFlags === '' || responseFlags === '-') return 'app';
  let proxy = false;
  for (const raw of responseFlags.split(',')) {
    const flag = raw.trim();
    if (flag === '' || flag === '-') continue;
    if (CLIENT_FLAGS.has(flag)) return 'client';
    if (!NEUTRAL_FLAGS.has(flag)) proxy = true;
  }
  return proxy ? 'proxy' : 'app';
}

/** The response class of a status code: '2xx'…'5xx', or undefined for 0 (no response) and 1xx. */
export function codeClassOf(responseCode: number): '2xx' | '3xx' | '4xx' | '5xx' | undefined {
  if (responseCode >= 200 && responseCode < 300) return '2xx';
  if (responseCode >= 300 && responseCode < 400) return '3xx';
  if (responseCode >= 400 && responseCode < 500) return '4xx';
  if (responseCode >= 500 && responseCode < 600) return '5xx';
  return undefined;
}
