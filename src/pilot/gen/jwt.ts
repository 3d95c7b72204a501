// RequestAuthentication → Envoy's `envoy.filters.http.jwt_authn` and Istio's `istio_authn`,
// as istiod generates them for the workloads a policy selects: one provider `origins-N` per
// JWT rule (all rules of all selecting policies), required as "any of them, or no token at
// all" (a request with an invalid token is refused, one without passes), and the verified
// payload kept as metadata under the issuer for istio_authn to turn into request.auth.*.
// istiod fetches a jwksUri itself and inlines the keys; a pure generator cannot, so the
// sidecar fetches it (remote_jwks). A rule with neither jwks nor jwksUri (OIDC discovery)
// gets an empty key set: its tokens are refused, never trusted.
import type { ProtoJson } from '../../envoy/index.ts';
import type { JWTRule, RequestAuthenticationSpec } from '../../api/index.ts';
import type { Resource } from '../../api/resource.ts';
import { labelsMatch } from '../../registry/index.ts';
import type { Proxy } from '../model.ts';
import type { SextantPushContext } from '../push/context.ts';

export const JWT_AUTHN_FILTER = 'envoy.filters.http.jwt_authn';
export const ISTIO_AUTHN_FILTER = 'istio_authn';
export const JWT_AUTHN_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
export const ISTIO_AUTHN_TYPE = 'type.googleapis.com/io.istio.network.authn.Config';

/** Whether a RequestAuthentication applies to a sidecar (its namespace or the root one, and its selector). */
export function requestAuthenticationSelects(r: Resource | undefined, proxy: Proxy, rootNamespace: string): boolean {
  if (r === undefined || r.kind !== 'RequestAuthentication' || (proxy.type !== 'sidecar' && proxy.type !== 'router')) return false;
  const ns = r.metadata.namespace;
  if (ns !== proxy.namespace && ns !== rootNamespace) return false;
  const spec = (r.spec ?? {}) as RequestAuthenticationSpec;
  if (spec.targetRef !== undefined || spec.targetRefs !== undefined) return false;
  const sel = spec.selector?.matchLabels;
  return sel === undefined || labelsMatch(sel, proxy.labels);
}

/** The JWT rules for a proxy: root namespace's policies first, then by namespace and name. */
function jwtRulesFor(push: SextantPushContext, proxy: Proxy): { key: string; rules: JWTRule[] } {
  const all = push.memoize('reqauthn|all', () => push.resources.filter((r) => r.kind === 'RequestAuthentication')
    .sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}` < `${b.metadata.namespace}/${b.metadata.name}` ? -1 : 1));
  const selected = all.filter((r) => requestAuthenticationSelects(r, proxy, push.mesh.rootNamespace));
  return {
    key: selected.map((r) => `${r.metadata.namespace}/${r.metadata.name}`).join(','),
    rules: selected.flatMap((r) => ((r.spec ?? {}) as RequestAuthenticationSpec).jwtRules ?? []),
  };
}

/** The `jwt_authn` and `istio_authn` filters for a proxy's inbound HTTP chains; empty without a RequestAuthentication. */
export function jwtHttpFilters(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  const { key, rules } = jwtRulesFor(push, proxy);
  if (rules.length === 0) return [];
  return push.memoize(`reqauthn|${key}`, () => {
    const providers: ProtoJson = {};
    const requirements: ProtoJson[] = [];
    rules.forEach((rule, i) => {
      const name = `origins-${i}`;
      providers[name] = provider(rule);
      requirements.push({ providerName: name });
    });
    requirements.push({ allowMissing: {} });
    return [
      {
        name: JWT_AUTHN_FILTER,
        typedConfig: {
          '@type': JWT_AUTHN_TYPE,
          providers,
          rules: [{ match: { prefix: '/' }, requires: { requiresAny: { requirements } } }],
          bypassCorsPreflight: true,
        },
      },
      { name: ISTIO_AUTHN_FILTER, typedConfig: { '@type': ISTIO_AUTHN_TYPE } },
    ];
  });
}

function provider(rule: JWTRule): ProtoJson {
  const p: ProtoJson = { issuer: rule.issuer ?? '' };
  if (rule.audiences !== undefined && rule.audiences.length > 0) p['audiences'] = rule.audiences;
  const uri = rule.jwksUri ?? rule.jwks_uri;
  if (rule.jwks !== undefined && rule.jwks !== '') p['localJwks'] = { inlineString: rule.jwks };
  else if (uri !== undefined) {
    p['remoteJwks'] = { httpUri: { uri, cluster: jwksCluster(uri), timeout: rule.timeout ?? '5s' }, cacheDuration: '1200s' };
  } else p['localJwks'] = { inlineString: '{"keys":[]}' };
  if (rule.forwardOriginalToken === true) p['forward'] = true;
  if (rule.fromHeaders !== undefined) p['fromHeaders'] = rule.fromHeaders.map((h) => (h.prefix ? { name: h.name, valuePrefix: h.prefix } : { name: h.name }));
  if (rule.fromParams !== undefined) p['fromParams'] = rule.fromParams;
  if (rule.fromCookies !== undefined) p['fromCookies'] = rule.fromCookies;
  if (rule.outputPayloadToHeader !== undefined && rule.outputPayloadToHeader !== '') p['forwardPayloadHeader'] = rule.outputPayloadToHeader;
  if (rule.outputClaimToHeaders !== undefined) p['claimToHeaders'] = rule.outputClaimToHeaders.map((c) => ({ headerName: c.header, claimName: c.claim }));
  p['payloadInMetadata'] = rule.issuer ?? '';
  return p;
}

/** The outbound cluster Envoy would fetch a JWKS through (`outbound|PORT||HOST`), as istiod names it. */
function jwksCluster(uri: string): string {
  try {
    const u = new URL(uri);
    const port = u.port !== '' ? u.port : u.protocol === 'https:' ? '443' : '80';
    return `outbound|${port}||${u.hostname}`;
  } catch {
    return 'outbound|443||invalid';
  }
}
