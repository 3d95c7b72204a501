// Reading another program's JSON over HTTP (the pilot's /debug/syncz, a sidecar's
// /config_dump) for the CLI: each way it can go wrong (nothing listening, no answer, an
// answer from some other server) becomes one sentence naming the URL and what answered.

/** What a server answered: status, media type, and the body parsed as JSON. */
export interface RemoteJson {
  url: string;
  status: number;
  /** Media type without parameters, '' when the answer had none. */
  contentType: string;
  body: unknown;
}

/** The request failed or what answered is not the program expected; the message says which. */
export class RemoteError extends Error {
  override name = 'RemoteError';
}

const CONNECT_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_SOCKET: 'the connection closed before an answer',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
};

/** One HTTP exchange: the status, headers and the body parsed as JSON (undefined when it is not JSON). */
export interface JsonExchange {
  url: URL;
  status: number;
  headers: Headers;
  body: unknown;
}

/**
 * Sends one request (no redirects followed, bounded by `timeoutMs`) and reads the whole answer;
 * a RemoteError `cannot reach WHOM at URL: why` when nothing answers in time.
 */
export async function exchangeJson(url: URL, init: RequestInit, timeoutMs: number, whom: string): Promise<JsonExchange> {
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    text = await res.text();
  } catch (err) {
    throw new RemoteError(`cannot reach ${whom} at ${url.href}: ${connectFailure(err, timeoutMs)}`, { cause: err });
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { url, status: res.status, headers: res.headers, body };
}

/**
 * GETs `url` and parses its body as JSON. Throws a RemoteError naming the URL when nothing
 * answers, and `not ${expected}` when the answer is not a 200 with a JSON body (a JSON
 * `{"error": …}` body of another status is quoted: that is the program explaining itself).
 */
export async function fetchJson(url: URL, expected: string, timeoutMs = 5000, headers: Record<string, string> = {}): Promise<RemoteJson> {
  const x = await exchangeJson(url, { headers }, timeoutMs, expected);
  const answer: RemoteJson = { url: url.href, status: x.status, contentType: mediaType(x.headers.get('content-type')), body: x.body };
  if (x.body === undefined) throw notExpected(answer, expected);
  if (x.status !== 200) {
    const error = isRecord(answer.body) && typeof answer.body['error'] === 'string' ? answer.body['error'] : undefined;
    if (error !== undefined) throw new RemoteError(`${answer.url} answered ${answer.status}: ${error}`);
    throw notExpected(answer, expected);
  }
  return answer;
}

/** "URL answered 404 text/html (detail): not a Sextant pilot". */
export function notExpected(answer: Omit<RemoteJson, 'body'>, expected: string, detail?: string): RemoteError {
  const type = answer.contentType === '' ? 'with no content type' : answer.contentType;
  return new RemoteError(`${answer.url} answered ${answer.status} ${type}${detail !== undefined ? ` (${detail})` : ''}: not ${expected}`);
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function mediaType(header: string | null): string {
  return (header ?? '').split(';')[0]!.trim().toLowerCase();
}

export function connectFailure(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `no answer within ${timeoutMs / 1000}s`;
  // fetch wraps the socket's error: its code says what happened.
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  const code = (cause as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && CONNECT_ERRORS[code] !== undefined) return CONNECT_ERRORS[code];
  return cause instanceof Error ? cause.message : String(cause);
}
