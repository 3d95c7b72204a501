// Envoy's JWT filter (`envoy.filters.http.jwt_authn`) as Istio configures it for
// RequestAuthentication, and Istio's `istio_authn` filter after it: a token found in the
// request (Authorization: Bearer, or the provider's headers, query parameters, cookies) is
// verified with jose against the provider's JWKS (inline, or fetched with undici into a
// bounded cache); a request whose token fails every provider is refused 401, a request
// without one passes (Istio's `allow_missing`). The verified payload becomes the request's
// `istio_authn` metadata (request.auth.principal `iss/sub`, audiences, presenter, claims),
// which the RBAC filters read. Config outside this shape is refused with the field.
import type { JSONWebKeySet, JWTPayload, JWTVerifyGetKey } from 'jose';
import type { ProtoJson } from '../../../envoy/index.ts';
import type { RawHeader } from '../../http/index.ts';
import { ConfigError, durationMs } from '../../config/fields.ts';

export const JWT_AUTHN_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
export const ISTIO_AUTHN_TYPE = 'type.googleapis.com/io.istio.network.authn.Config';

interface TokenLocation {
  kind: 'header' | 'param' | 'cookie';
  name: string;
  prefix: string;
}

export interface JwtProvider {
  name: string;
  issuer: string | undefined;
  audiences: readonly string[];
  keys: () => Promise<JWTVerifyGetKey>;
  locations: readonly TokenLocation[];
  forward: boolean;
  payloadInMetadata: string | undefined;
  claimToHeaders: readonly { header: string; claim: string }[];
  forwardPayloadHeader: string | undefined;
}

/** One compiled `jwt_authn` filter: its providers, all optional (Istio's requires_any + allow_missing). */
export interface JwtFilter {
  providers: readonly JwtProvider[];
  /** Set when the chain also runs `istio_authn`: the payload becomes `istio_authn` metadata. */
  istioAuthn: boolean;
  /** CORS preflights (OPTIONS with Origin and Access-Control-Request-Method) pass unchecked. */
  bypassCorsPreflight: boolean;
}

export type JwtOutcome =
  | { ok: true; headers: RawHeader[]; metadata: Record<string, Record<string, unknown>> | undefined }
  | { ok: false; status: 401; body: string; details: string };

// jose and undici load on the first JWT, not with every sidecar.
let joseModule: Promise<typeof import('jose')> | undefined;
const jose = (): Promise<typeof import('jose')> => (joseModule ??= import('jose'));

// ---------------------------------------------------------------- JWKS cache

const JWKS_CACHE_MAX = 64;
const DEFAULT_CACHE_MS = 600_000;
const jwksCache = new Map<string, { expires: number; keys: Promise<JWTVerifyGetKey> }>();

/** The key set at `uri`, fetched with undici and kept `ttlMs` (at most 64 URIs, oldest dropped first). */
function remoteKeys(uri: string, ttlMs: number, timeoutMs: number): Promise<JWTVerifyGetKey> {
  const now = Date.now();
  const hit = jwksCache.get(uri);
  if (hit !== undefined && hit.expires > now) return hit.keys;
  const keys = (async () => {
    const { request } = await import('undici');
    const res = await request(uri, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new Error(`JWKS ${uri}: HTTP ${res.statusCode}`);
    }
    return (await jose()).createLocalJWKSet(await res.body.json() as JSONWebKeySet);
  })();
  // A failed fetch is retried on the next request, not cached for the TTL.
  keys.catch(() => { if (jwksCache.get(uri)?.keys === keys) jwksCache.delete(uri); });
  jwksCache.delete(uri);
  jwksCache.set(uri, { expires: now + ttlMs, keys });
  while (jwksCache.size > JWKS_CACHE_MAX) jwksCache.delete(jwksCache.keys().next().value!);
  return keys;
}

// ---------------------------------------------------------------- compile

/** Compiles a JwtAuthentication config; throws ConfigError naming the field it cannot run. */
export function compileJwtAuthn(cfg: ProtoJson, at: string): JwtFilter {
  const providers = (cfg['providers'] ?? {}) as Record<string, ProtoJson>;
  const compiled = new Map<string, JwtProvider>();
  for (const [name, p] of Object.entries(providers)) compiled.set(name, compileProvider(name, p, `${at}.providers[${JSON.stringify(name)}]`));
  for (const unsupported of ['requirementMap', 'filterStateRules', 'stripFailureResponse']) {
    if (cfg[unsupported] !== undefined) throw new ConfigError(`${at}.${unsupported}: not supported by this proxy`);
  }
  const rules = (cfg['rules'] as ProtoJson[] | undefined) ?? [];
  const used: JwtProvider[] = [];
  rules.forEach((r, i) => {
    const where = `${at}.rules[${i}]`;
    const match = (r['match'] ?? {}) as ProtoJson;
    if (match['prefix'] !== '/' || Object.keys(match).length !== 1) throw new ConfigError(`${where}.match: only prefix "/" is supported by this proxy`);
    const req = (r['requires'] ?? {}) as ProtoJson;
    const any = (req['requiresAny'] as ProtoJson | undefined)?.['requirements'] as ProtoJson[] | undefined;
    const list = any ?? [req];
    if (!list.some((x) => x['allowMissing'] !== undefined)) throw new ConfigError(`${where}.requires: only requirements that allow a missing token (Istio's) are supported by this proxy`);
    list.forEach((x, j) => {
      if (x['allowMissing'] !== undefined) return;
      const pn = x['providerName'];
      const p = typeof pn === 'string' ? compiled.get(pn) : undefined;
      if (p === undefined) throw new ConfigError(`${where}.requires${any ? `.requiresAny.requirements[${j}]` : ''}: only providerName of a declared provider or allowMissing is supported by this proxy`);
      if (!used.includes(p)) used.push(p);
    });
  });
  return { providers: used, istioAuthn: false, bypassCorsPreflight: cfg['bypassCorsPreflight'] === true };
}

function compileProvider(name: string, p: ProtoJson, at: string): JwtProvider {
  for (const unsupported of ['subjects', 'maxLifetime', 'jwtCacheConfig', 'normalizePayloadInMetadata', 'headerInMetadata', 'failedStatusInMetadata', 'jwtCacheConfig', 'requireExpiration', 'customClaims']) {
    if (p[unsupported] !== undefined) throw new ConfigError(`${at}.${unsupported}: not supported by this proxy`);
  }
  let keys: () => Promise<JWTVerifyGetKey>;
  const local = p['localJwks'] as ProtoJson | undefined;
  const remote = p['remoteJwks'] as ProtoJson | undefined;
  if (local !== undefined) {
    const text = local['inlineString'];
    if (typeof text !== 'string') throw new ConfigError(`${at}.localJwks: only inlineString is supported by this proxy`);
    let set: JSONWebKeySet;
    try {
      set = JSON.parse(text) as JSONWebKeySet;
      if (!Array.isArray(set.keys)) throw new Error('no "keys" list');
    } catch (e) {
      throw new ConfigError(`${at}.localJwks.inlineString: not a JSON Web Key Set: ${(e as Error).message}`);
    }
    let ready: Promise<JWTVerifyGetKey> | undefined;
    keys = () => (ready ??= jose().then((j) => j.createLocalJWKSet(set)));
  } else if (remote !== undefined) {
    const http = (remote['httpUri'] ?? {}) as ProtoJson;
    const uri = http['uri'];
    if (typeof uri !== 'string' || !/^https?:\/\//.test(uri)) throw new ConfigError(`${at}.remoteJwks.httpUri.uri: an http:// or https:// URI is required`);
    const timeoutMs = durationMs(http['timeout'], `${at}.remoteJwks.httpUri.timeout`) ?? 5000;
    const ttl = durationMs(remote['cacheDuration'], `${at}.remoteJwks.cacheDuration`) ?? DEFAULT_CACHE_MS;
    keys = () => remoteKeys(uri, ttl, timeoutMs);
  } else {
    throw new ConfigError(`${at}: localJwks or remoteJwks is required`);
  }
  const locations: TokenLocation[] = [];
  for (const h of (p['fromHeaders'] as ProtoJson[] | undefined) ?? []) locations.push({ kind: 'header', name: String(h['name'] ?? '').toLowerCase(), prefix: String(h['valuePrefix'] ?? '') });
  for (const q of (p['fromParams'] as string[] | undefined) ?? []) locations.push({ kind: 'param', name: q, prefix: '' });
  for (const c of (p['fromCookies'] as string[] | undefined) ?? []) locations.push({ kind: 'cookie', name: c, prefix: '' });
  // Envoy's default: Authorization: Bearer, then the access_token query parameter.
  if (locations.length === 0) locations.push({ kind: 'header', name: 'authorization', prefix: 'Bearer ' }, { kind: 'param', name: 'access_token', prefix: '' });
  return {
    name,
    issuer: typeof p['issuer'] === 'string' && p['issuer'] !== '' ? p['issuer'] : undefined,
    audiences: (p['audiences'] as string[] | undefined) ?? [],
    keys,
    locations,
    forward: p['forward'] === true,
    payloadInMetadata: typeof p['payloadInMetadata'] === 'string' ? p['payloadInMetadata'] : undefined,
    claimToHeaders: ((p['claimToHeaders'] as ProtoJson[] | undefined) ?? []).map((c) => ({ header: String(c['headerName'] ?? ''), claim: String(c['claimName'] ?? '') })),
    forwardPayloadHeader: typeof p['forwardPayloadHeader'] === 'string' && p['forwardPayloadHeader'] !== '' ? p['forwardPayloadHeader'] : undefined,
  };
}

// ---------------------------------------------------------------- per request

interface FoundToken {
  token: string;
  location: TokenLocation;
}

function findTokens(p: JwtProvider, headers: readonly RawHeader[], query: string): FoundToken[] {
  const out: FoundToken[] = [];
  for (const loc of p.locations) {
    if (loc.kind === 'header') {
      for (const h of headers) {
        if (h.name.toLowerCase() !== loc.name) continue;
        const v = h.value.trim();
        if (loc.prefix === '') out.push({ token: v, location: loc });
        else if (v.toLowerCase().startsWith(loc.prefix.toLowerCase())) out.push({ token: v.slice(loc.prefix.length).trim(), location: loc });
      }
    } else if (loc.kind === 'param') {
      const v = new URLSearchParams(query).get(loc.name);
      if (v !== null && v !== '') out.push({ token: v, location: loc });
    } else {
      for (const h of headers) {
        if (h.name.toLowerCase() !== 'cookie') continue;
        for (const part of h.value.split(';')) {
          const eq = part.indexOf('=');
          if (eq > 0 && part.slice(0, eq).trim() === loc.name) out.push({ token: part.slice(eq + 1).trim(), location: loc });
        }
      }
    }
  }
  return out;
}

const FAILED: JwtOutcome = { ok: false, status: 401, body: 'Jwt verification fails', details: 'jwt_authn_access_denied{Jwt_verification_fails}' };

/**
 * Runs the filters on a request: each token found must verify with a provider that looks in
 * its place (issuer, audiences, signature, exp/nbf), or the request is refused. Returns the
 * request headers to forward (tokens removed unless `forward`, claim headers added).
 */
export async function authenticate(filters: readonly JwtFilter[], headers: readonly RawHeader[], query: string, method = 'GET'): Promise<JwtOutcome> {
  const { decodeJwt, jwtVerify } = await jose();
  let out = headers.slice();
  let metadata: Record<string, Record<string, unknown>> | undefined;
  const preflight = method === 'OPTIONS' && headers.some((h) => h.name.toLowerCase() === 'origin') && headers.some((h) => h.name.toLowerCase() === 'access-control-request-method');
  for (const f of filters) {
    if (preflight && f.bypassCorsPreflight) continue;
    for (const p of f.providers) {
      for (const found of findTokens(p, out, query)) {
        // A token whose issuer is another provider's is that provider's to check.
        let iss: string | undefined;
        try {
          iss = decodeJwt(found.token).iss;
        } catch {
          return FAILED;
        }
        if (p.issuer !== undefined && iss !== p.issuer && f.providers.some((o) => o !== p && o.issuer === iss && o.locations.some((l) => l.kind === found.location.kind && l.name === found.location.name))) continue;
        let payload: JWTPayload;
        try {
          const verified = await jwtVerify(found.token, await p.keys(), {
            ...(p.issuer !== undefined ? { issuer: p.issuer } : {}),
            ...(p.audiences.length > 0 ? { audience: [...p.audiences] } : {}),
          });
          payload = verified.payload;
        } catch {
          return FAILED;
        }
        if (!p.forward && found.location.kind === 'header') out = out.filter((h) => h.name.toLowerCase() !== found.location.name);
        for (const c of p.claimToHeaders) {
          const v = payload[c.claim];
          if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out.push({ name: c.header, value: String(v) });
        }
        if (p.forwardPayloadHeader !== undefined) out.push({ name: p.forwardPayloadHeader, value: Buffer.from(JSON.stringify(payload)).toString('base64url') });
        metadata ??= {};
        const jwtMeta = (metadata['envoy.filters.http.jwt_authn'] ??= {});
        if (p.payloadInMetadata !== undefined) jwtMeta[p.payloadInMetadata] = payload;
        if (f.istioAuthn) metadata['istio_authn'] = istioAuthnMetadata(payload);
      }
    }
  }
  return { ok: true, headers: out, metadata };
}

/** Istio's istio_authn: the request principal `iss/sub`, audiences, presenter and every claim as a list of strings. */
export function istioAuthnMetadata(payload: JWTPayload): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(payload)) {
    claims[k] = Array.isArray(v) ? v.map(String) : typeof v === 'object' && v !== null ? v : [String(v)];
  }
  const aud = payload.aud === undefined ? [] : Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  const md: Record<string, unknown> = { 'request.auth.claims': claims, 'request.auth.audiences': aud.join(',') };
  if (payload.iss !== undefined && payload.sub !== undefined) md['request.auth.principal'] = `${payload.iss}/${payload.sub}`;
  if (typeof payload['azp'] === 'string') md['request.auth.presenter'] = payload['azp'];
  return md;
}
