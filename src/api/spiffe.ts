// SPIFFE workload identities as Istio writes them: spiffe://TRUST_DOMAIN/ns/NS/sa/SA. Shared
// by the pilot's CA (what it signs) and the proxy (what it accepts from a peer).

export interface SpiffeIdentity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

const SPIFFE_RE = /^spiffe:\/\/([a-z0-9._-]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;

/** `spiffe://TD/ns/NS/sa/SA`. */
export function spiffeUri(id: SpiffeIdentity): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Parses a workload identity URI; undefined for anything else (other SPIFFE paths included). */
export function parseSpiffeUri(uri: string): SpiffeIdentity | undefined {
  const m = SPIFFE_RE.exec(uri);
  if (m === null) return undefined;
  return { trustDomain: m[1]!, namespace: m[2]!, serviceAccount: m[3]! };
}

/**
 * The URI SANs of a certificate as node:crypto's `subjectAltName` string lists them
 * (`URI:spiffe://…, DNS:…`). Node quotes entries holding commas or quotes as JSON strings.
 */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined || subjectAltName === '') return [];
  const out: string[] = [];
  const re = /(?:^|, )(URI):("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (let m = re.exec(subjectAltName); m !== null; m = re.exec(subjectAltName)) {
    const v = m[2]!;
    out.push(v.startsWith('"') ? JSON.parse(v) as string : v);
  }
  return out;
}
