// Who may read the monitoring API and the dashboard: holders of a token from `--api-tokens FILE`
// (the registration API's file format and checks: SHA-256 digests, constant-time comparison,
// re-read on change; a token must be granted `*`, the data spans every namespace). A token comes
// as `Authorization: Bearer TOKEN`, or from the page's cookie, set once by `/dashboard?token=`.
// With `--dashboard-insecure` every caller may read.
import type http from 'node:http';
import type { Logger } from 'pino';
import { TokenFile } from '../registry/api/index.ts';
import { ApiError } from './params.ts';

/** The cookie the page carries its token in (HttpOnly: the page's scripts never see it). */
export const TOKEN_COOKIE = 'sextant_api_token';

export type Access = { kind: 'tokens'; file: string } | { kind: 'insecure' };

export interface Gate {
  readonly insecure: boolean;
  /** Throws a 401 or 403 ApiError unless the request carries a token granted on every namespace. */
  check(req: http.IncomingMessage): void;
  /** Whether this token (from `?token=`) would be let in. */
  accepts(token: string): boolean;
  close(): void;
}

export function openGate(access: Access, logger: Logger, pollMs?: number): Gate {
  if (access.kind === 'insecure') {
    return { insecure: true, check: () => undefined, accepts: () => true, close: () => undefined };
  }
  const tokens = new TokenFile(access.file, logger, { what: 'API', ...(pollMs !== undefined ? { pollMs } : {}) });
  logger.info({ file: tokens.file, tokens: tokens.size }, 'monitoring API and dashboard on, for the tokens of the file');
  return {
    insecure: false,
    check(req) {
      const token = bearerToken(req.headers.authorization) ?? cookieToken(req.headers.cookie);
      const auth = tokens.authorize(token, '*');
      if (auth === 'ok') return;
      if (auth === 'forbidden') throw new ApiError(403, 'this token is granted on some namespaces only; the monitoring API shows every namespace and needs a token granted on * in the --api-tokens file');
      throw new ApiError(401, token === undefined
        ? 'a token is required: send "Authorization: Bearer TOKEN" with a token from the pilot\'s --api-tokens file, or open /dashboard?token=TOKEN'
        : 'this token is not in the pilot\'s --api-tokens file', { headers: { 'www-authenticate': 'Bearer realm="sextant-monitoring"' } });
    },
    accepts: (token) => tokens.authorize(token, '*') === 'ok',
    close: () => tokens.close(),
  };
}

export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m === null ? undefined : m[1];
}

export function cookieToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i < 0 || part.slice(0, i).trim() !== TOKEN_COOKIE) continue;
    const v = part.slice(i + 1).trim();
    try {
      return decodeURIComponent(v);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** The Set-Cookie that keeps a token for the page: this host only, never sent cross-site, unseen by scripts. */
export function tokenCookie(token: string): string {
  return `${TOKEN_COOKIE}=${encodeURIComponent(token)}; Path=/; HttpOnly; SameSite=Strict`;
}
