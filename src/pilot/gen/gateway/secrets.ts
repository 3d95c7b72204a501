// SDS for gateways: the `kubernetes://NAME` secrets a gateway's listeners name, built from the
// config store's `v1 Secret`s as istiod's SecretGen builds them: `NAME` carries the key and
// chain, `NAME-cacert` the CA (the Secret `NAME-cacert`, else `ca.crt` of `NAME`). A proxy gets
// only the secrets of its own namespace that the Gateways selecting it refer to; a sidecar gets
// none. The resource objects are memoized per snapshot, so a rotation is one new object.
import type { ProtoJson } from '../../../envoy/index.ts';
import { secretMaterial } from '../../../api/index.ts';
import type { SecretSpec } from '../../../api/index.ts';
import type { Resource } from '../../../api/resource.ts';
import type { Proxy } from '../../model.ts';
import type { SextantPushContext } from '../../push/context.ts';
import { credentialNames, mergedGateway } from './merge.ts';
import { CA_SUFFIX, KUBERNETES_SECRET_PREFIX, parseCredentialResource } from './tls.ts';

function secretResource(push: SextantPushContext, namespace: string, name: string): Resource<SecretSpec> | undefined {
  const r = push.byKey.get(`Secret/${namespace}/${name}`);
  return r !== undefined && r.apiVersion === 'v1' ? (r as Resource<SecretSpec>) : undefined;
}

/** The names a proxy may fetch: `kubernetes://NAME` for each credential its Gateways use. */
export function authorizedSecretNames(push: SextantPushContext, proxy: Proxy): Set<string> {
  if (proxy.type !== 'router') return new Set();
  const out = new Set<string>();
  for (const n of credentialNames(mergedGateway(push, proxy))) {
    out.add(`${KUBERNETES_SECRET_PREFIX}${n}`);
    out.add(`${KUBERNETES_SECRET_PREFIX}${proxy.namespace}/${n}`);
  }
  return out;
}

/**
 * One SDS Secret for a proxy, or undefined when the name is not one it may have (another
 * namespace, not referred to by its Gateways, not a gateway) or the store has no such secret.
 */
export function gatewaySecret(push: SextantPushContext, proxy: Proxy, resourceName: string): ProtoJson | undefined {
  if (!authorizedSecretNames(push, proxy).has(resourceName)) return undefined;
  const ref = parseCredentialResource(resourceName, proxy.namespace);
  if (ref === undefined || ref.namespace !== proxy.namespace) return undefined;
  return push.memoize(`sds|${resourceName}|${ref.namespace}`, () => buildSecret(push, resourceName, ref.namespace, ref.name));
}

function buildSecret(push: SextantPushContext, resourceName: string, namespace: string, name: string): ProtoJson | undefined {
  if (name.endsWith(CA_SUFFIX)) {
    // The CA of a MUTUAL server: its own Secret, else `ca.crt` of the credential itself.
    const own = secretResource(push, namespace, name);
    const ca = (own !== undefined ? secretMaterial(own.spec ?? {}).caCertificates : undefined)
      ?? (() => { const base = secretResource(push, namespace, name.slice(0, -CA_SUFFIX.length)); return base ? secretMaterial(base.spec ?? {}).caCertificates : undefined; })();
    if (ca === undefined) return undefined;
    return { name: resourceName, validationContext: { trustedCa: { inlineBytes: ca.toString('base64') } } };
  }
  const s = secretResource(push, namespace, name);
  if (s === undefined) return undefined;
  const m = secretMaterial(s.spec ?? {});
  if (m.certificateChain === undefined || m.privateKey === undefined) return undefined;
  return {
    name: resourceName,
    tlsCertificate: { certificateChain: { inlineBytes: m.certificateChain.toString('base64') }, privateKey: { inlineBytes: m.privateKey.toString('base64') } },
  };
}

/** Every SDS Secret of a proxy, by name (only `names` when given). */
export function gatewaySecrets(push: SextantPushContext, proxy: Proxy, names?: ReadonlySet<string>): Map<string, ProtoJson> {
  const out = new Map<string, ProtoJson>();
  const wanted = names ?? [...authorizedSecretNames(push, proxy)].filter((n) => !n.slice(KUBERNETES_SECRET_PREFIX.length).includes('/'));
  for (const n of wanted) {
    const s = gatewaySecret(push, proxy, n);
    if (s !== undefined) out.set(n, s);
  }
  return out;
}

/**
 * Whether a change of the Secrets `keys` (`Secret/NS/NAME`) concerns a gateway proxy: the
 * proxy's namespace, a name its Gateways refer to (a CA secret concerns its credential too).
 */
export function secretsConcern(push: SextantPushContext, proxy: Proxy, keys: readonly string[]): boolean {
  if (proxy.type !== 'router' || keys.length === 0) return false;
  const used = credentialNames(mergedGateway(push, proxy));
  for (const k of keys) {
    const [, ns, name = ''] = k.split('/');
    if (ns !== proxy.namespace) continue;
    if (used.has(name) || used.has(`${name}${CA_SUFFIX}`)) return true;
  }
  return false;
}
