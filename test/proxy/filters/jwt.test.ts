// Envoy's jwt_authn as Istio configures it, run by the sidecar: tokens verified with jose
// against inline or fetched (and cached) key sets, a request without a token passing, one
// with a bad token refused, and istio_authn's request.auth metadata for RBAC.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { authenticate, compileJwtAuthn } from '../../../src/proxy/filters/jwt/index.ts';
import type { JwtFilter } from '../../../src/proxy/filters/jwt/index.ts';

const ISSUER = 'https://issuer.example';

async function keys(kid: string): Promise<{ sign: (claims: Record<string, unknown>, opts?: { exp?: string; iss?: string }) => Promise<string>; jwks: string }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256' };
  return {
    jwks: JSON.stringify({ keys: [jwk] }),
    sign: (claims, opts = {}) => new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid }).setIssuer(opts.iss ?? ISSUER).setIssuedAt().setExpirationTime(opts.exp ?? '5m').sign(privateKey),
  };
}

function filter(provider: ProtoJson, istioAuthn = true): JwtFilter {
  const f = compileJwtAuthn({
    providers: { 'origins-0': { issuer: ISSUER, payloadInMetadata: ISSUER, ...provider } },
    rules: [{ match: { prefix: '/' }, requires: { requiresAny: { requirements: [{ providerName: 'origins-0' }, { allowMissing: {} }] } } }],
  }, 'jwt');
  return { ...f, istioAuthn };
}

test('a valid token passes and becomes request.auth metadata; the token header is removed unless forwarded', async () => {
  const k = await keys('k1');
  const f = filter({ audiences: ['reviews'], localJwks: { inlineString: k.jwks }, claimToHeaders: [{ headerName: 'x-sub', claimName: 'sub' }] });
  const token = await k.sign({ sub: 'alice', aud: 'reviews', azp: 'web', groups: ['admins', 'users'] });
  const r = await authenticate([f], [{ name: 'Authorization', value: `Bearer ${token}` }, { name: 'x-a', value: '1' }], '');
  assert.equal(r.ok, true);
  if (!r.ok) return;
  assert.deepEqual(r.headers, [{ name: 'x-a', value: '1' }, { name: 'x-sub', value: 'alice' }]);
  const md = r.metadata?.['istio_authn'] as Record<string, unknown>;
  assert.equal(md['request.auth.principal'], `${ISSUER}/alice`);
  assert.equal(md['request.auth.audiences'], 'reviews');
  assert.equal(md['request.auth.presenter'], 'web');
  assert.deepEqual((md['request.auth.claims'] as Record<string, unknown>)['groups'], ['admins', 'users']);
  assert.equal((r.metadata?.['envoy.filters.http.jwt_authn']?.[ISSUER] as { sub: string }).sub, 'alice');
  const forwarded = await authenticate([filter({ localJwks: { inlineString: k.jwks }, forward: true })], [{ name: 'authorization', value: `Bearer ${token}` }], '');
  assert.equal(forwarded.ok && forwarded.headers.length, 1);
});

test('no token passes without metadata; a bad, expired, foreign or mis-addressed token is refused 401', async () => {
  const k = await keys('k1');
  const stranger = await keys('k1');
  const f = filter({ audiences: ['reviews'], localJwks: { inlineString: k.jwks } });
  const none = await authenticate([f], [{ name: 'x', value: 'y' }], '');
  assert.deepEqual(none, { ok: true, headers: [{ name: 'x', value: 'y' }], metadata: undefined });
  const refused = { ok: false, status: 401, body: 'Jwt verification fails', details: 'jwt_authn_access_denied{Jwt_verification_fails}' };
  const bearer = (t: string) => [{ name: 'authorization', value: `Bearer ${t}` }];
  assert.deepEqual(await authenticate([f], bearer('not.a.jwt'), ''), refused);
  assert.deepEqual(await authenticate([f], bearer(await stranger.sign({ sub: 'a', aud: 'reviews' })), ''), refused);
  assert.deepEqual(await authenticate([f], bearer(await k.sign({ sub: 'a', aud: 'reviews' }, { exp: '-1m' })), ''), refused);
  assert.deepEqual(await authenticate([f], bearer(await k.sign({ sub: 'a', aud: 'ratings' })), ''), refused);
  assert.deepEqual(await authenticate([f], bearer(await k.sign({ sub: 'a', aud: 'reviews' }, { iss: 'https://evil.example' })), ''), refused);
  // A CORS preflight is not checked (bypass_cors_preflight, as Istio sets it).
  const preflight = [{ name: 'origin', value: 'https://web' }, { name: 'access-control-request-method', value: 'GET' }, ...bearer('garbage')];
  assert.equal((await authenticate([{ ...f, bypassCorsPreflight: true }], preflight, '', 'OPTIONS')).ok, true);
  assert.deepEqual(await authenticate([f], preflight, '', 'OPTIONS'), refused);
  // The access_token query parameter is Envoy's other default location.
  const q = await authenticate([f], [], `access_token=${await k.sign({ sub: 'bob', aud: 'reviews' })}`);
  assert.equal(q.ok && (q.metadata?.['istio_authn'] as Record<string, unknown>)['request.auth.principal'], `${ISSUER}/bob`);
});

test('custom locations: a header with a prefix, a cookie', async () => {
  const k = await keys('k1');
  const token = await k.sign({ sub: 'carol' });
  const f = filter({ localJwks: { inlineString: k.jwks }, fromHeaders: [{ name: 'x-jwt', valuePrefix: 'Token ' }], fromCookies: ['session'] });
  const h = await authenticate([f], [{ name: 'X-Jwt', value: `Token ${token}` }], '');
  assert.equal(h.ok && (h.metadata?.['istio_authn'] as Record<string, unknown>)['request.auth.principal'], `${ISSUER}/carol`);
  const c = await authenticate([f], [{ name: 'cookie', value: `a=b; session=${token}` }], '');
  assert.equal(c.ok && (c.metadata?.['istio_authn'] as Record<string, unknown>)['request.auth.principal'], `${ISSUER}/carol`);
  // Authorization is not looked at when the provider names its own locations.
  const ignored = await authenticate([f], [{ name: 'authorization', value: 'Bearer garbage' }], '');
  assert.deepEqual(ignored.ok && ignored.metadata, undefined);
});

test('a remote JWKS is fetched once and cached; a fetch failure refuses the token and is retried', async () => {
  const k = await keys('k1');
  let fetches = 0;
  let fail = true;
  const server = http.createServer((_req, res) => {
    fetches++;
    if (fail) { res.writeHead(500); res.end(); return; }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(k.jwks);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const uri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
    const f = filter({ remoteJwks: { httpUri: { uri, cluster: 'outbound|80||keys', timeout: '2s' }, cacheDuration: '60s' } });
    const token = [{ name: 'authorization', value: `Bearer ${await k.sign({ sub: 'dave' })}` }];
    assert.equal((await authenticate([f], token, '')).ok, false);
    fail = false;
    assert.equal((await authenticate([f], token, '')).ok, true);
    assert.equal((await authenticate([f], token, '')).ok, true);
    assert.equal(fetches, 2);
  } finally {
    server.close();
  }
});

test('JWT config the proxy cannot run is refused with the field', () => {
  const base = { providers: { p: { issuer: 'x', localJwks: { inlineString: '{"keys":[]}' } } } };
  const cases: [ProtoJson, RegExp][] = [
    [{ ...base, rules: [{ match: { prefix: '/' }, requires: { providerName: 'p' } }] }, /jwt\.rules\[0\]\.requires: only requirements that allow a missing token/],
    [{ ...base, rules: [{ match: { path: '/x' }, requires: { allowMissing: {} } }] }, /jwt\.rules\[0\]\.match: only prefix "\/"/],
    [{ providers: { p: { issuer: 'x', localJwks: { inlineString: 'nope' } } } }, /jwt\.providers\["p"\]\.localJwks\.inlineString: not a JSON Web Key Set/],
    [{ providers: { p: { issuer: 'x' } } }, /jwt\.providers\["p"\]: localJwks or remoteJwks is required/],
    [{ ...base, requirementMap: {} }, /jwt\.requirementMap: not supported/],
  ];
  for (const [cfg, message] of cases) assert.throws(() => compileJwtAuthn(cfg, 'jwt'), message);
});
