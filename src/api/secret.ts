// Kubernetes' `v1 Secret`, the way Istio reads gateway credentials from it: a `kubernetes.io/tls`
// secret (`tls.crt`, `tls.key`, optionally `ca.crt`) or a generic one (`cert`, `key`, `cacert`).
// A Secret has no spec: its `type`, `data`, `stringData` and `immutable` sit at the top level.
// Inside Sextant they travel as the resource's `spec`, so both config stores keep them like any
// other kind; the codec moves them there and back. Nothing here ever puts a value in a message.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { Resource } from './resource.ts';

/** The top-level fields of a Secret, carried as the resource's spec. */
export interface SecretSpec {
  type?: string;
  /** Base64 values by key. */
  data?: Record<string, string>;
  /** Plain-text values by key; they win over `data` for the same key, as the API server merges them. */
  stringData?: Record<string, string>;
  immutable?: boolean;
}

export const SECRET_FIELDS: readonly string[] = ['type', 'data', 'stringData', 'immutable'];
export const TLS_SECRET_TYPE = 'kubernetes.io/tls';
/** Kubernetes' limit on a Secret's data. */
export const SECRET_MAX_BYTES = 1024 * 1024;
/** Shown instead of every secret value wherever config is displayed. */
export const REDACTED = '[redacted]';

const KEY_RE = /^[-._a-zA-Z0-9]+$/;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/** Whether an apiVersion and kind name Kubernetes' core Secret. */
export function isSecret(apiVersion: unknown, kind: unknown): boolean {
  return apiVersion === 'v1' && kind === 'Secret';
}

/**
 * A Secret document as a Resource: its top-level fields moved into `spec`. Returns an error
 * (the field and what is expected) when the document carries a `spec` of its own.
 */
export function secretFromDocument(doc: Record<string, unknown>): { resource: Resource } | { path: string; detail: string } {
  if (doc['spec'] !== undefined) return { path: 'spec', detail: 'unknown field "spec": a Secret has no spec; write type, data and stringData at the top level' };
  const spec: Record<string, unknown> = {};
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc)) {
    if (SECRET_FIELDS.includes(k)) spec[k] = v;
    else rest[k] = v;
  }
  return { resource: { ...rest, spec } as unknown as Resource };
}

/** The resource as Kubernetes writes a Secret: spec fields back at the top level. */
export function secretToDocument(resource: Resource): Record<string, unknown> {
  const { apiVersion, kind, metadata, spec, ...rest } = resource as Resource & Record<string, unknown>;
  return { apiVersion, kind, metadata, ...(spec as Record<string, unknown> | undefined), ...rest };
}

/** A copy with every value of `data` and `stringData` replaced by REDACTED (keys kept). */
export function redactSecret(resource: Resource): Resource {
  const spec = (resource.spec ?? {}) as SecretSpec;
  const hide = (m: Record<string, string> | undefined): Record<string, string> | undefined =>
    m === undefined ? undefined : Object.fromEntries(Object.keys(m).map((k) => [k, REDACTED]));
  const out: SecretSpec = { ...spec };
  const data = hide(spec.data);
  const stringData = hide(spec.stringData);
  if (data !== undefined) out.data = data;
  if (stringData !== undefined) out.stringData = stringData;
  return { ...resource, spec: out };
}

/** Redacts the Secrets of a list, leaving every other resource as it is. */
export function redactSecrets(resources: readonly Resource[]): Resource[] {
  return resources.map((r) => (r.kind === 'Secret' && r.apiVersion === 'v1' ? redactSecret(r) : r));
}

/** The decoded value of one key (stringData over data), or undefined. */
export function secretValue(spec: SecretSpec, key: string): Buffer | undefined {
  const s = spec.stringData?.[key];
  if (typeof s === 'string') return Buffer.from(s, 'utf8');
  const d = spec.data?.[key];
  if (typeof d === 'string') return Buffer.from(d, 'base64');
  return undefined;
}

/** What a gateway credential needs from a Secret, in Istio's two layouts. */
export interface SecretMaterial {
  certificateChain?: Buffer;
  privateKey?: Buffer;
  caCertificates?: Buffer;
}

/** Istio's reading of a credential Secret: `tls.crt`/`tls.key`/`ca.crt`, else `cert`/`key`/`cacert`. */
export function secretMaterial(spec: SecretSpec): SecretMaterial {
  const out: SecretMaterial = {};
  const cert = secretValue(spec, 'tls.crt') ?? secretValue(spec, 'cert');
  const key = secretValue(spec, 'tls.key') ?? secretValue(spec, 'key');
  const ca = secretValue(spec, 'ca.crt') ?? secretValue(spec, 'cacert');
  if (cert !== undefined) out.certificateChain = cert;
  if (key !== undefined) out.privateKey = key;
  if (ca !== undefined) out.caCertificates = ca;
  return out;
}

/** The certificates of a PEM bundle, or a reason (never the content) why it is not one. */
export function parseCertificates(pem: Buffer | string): X509Certificate[] | string {
  const text = typeof pem === 'string' ? pem : pem.toString('utf8');
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return 'no PEM certificate (-----BEGIN CERTIFICATE-----) found';
  const out: X509Certificate[] = [];
  for (let i = 0; i < blocks.length; i++) {
    try {
      out.push(new X509Certificate(blocks[i]!));
    } catch {
      return `PEM certificate ${i + 1} of ${blocks.length} does not parse`;
    }
  }
  return out;
}

/** The private key of a PEM block, or a reason (never the content) why it is not one. */
export function parsePrivateKey(pem: Buffer | string): KeyObject | string {
  try {
    return createPrivateKey({ key: typeof pem === 'string' ? pem : pem.toString('utf8'), format: 'pem' });
  } catch {
    return 'not an unencrypted PEM private key';
  }
}

/**
 * Checks a credential's material: the chain parses, the key parses and belongs to the first
 * certificate, CA certificates parse. Returns [field, reason] pairs (no values in them).
 */
export function checkMaterial(m: SecretMaterial, names: { cert: string; key: string; ca: string }): [string, string][] {
  const out: [string, string][] = [];
  let leaf: X509Certificate | undefined;
  if (m.certificateChain !== undefined) {
    const certs = parseCertificates(m.certificateChain);
    if (typeof certs === 'string') out.push([names.cert, certs]);
    else leaf = certs[0];
  }
  if (m.privateKey !== undefined) {
    const key = parsePrivateKey(m.privateKey);
    if (typeof key === 'string') out.push([names.key, key]);
    else if (leaf !== undefined && !leaf.checkPrivateKey(key)) out.push([names.key, `the key does not belong to the certificate in ${names.cert}`]);
  }
  if (m.caCertificates !== undefined) {
    const ca = parseCertificates(m.caCertificates);
    if (typeof ca === 'string') out.push([names.ca, ca]);
  }
  return out;
}

/** Something that collects problems by field path (validate.ts's issues). */
export interface SecretIssues {
  add(path: string, detail: string): void;
}

/**
 * Kubernetes' rules for a Secret (keys, base64, size, the keys a `kubernetes.io/tls` secret
 * must have), and, for the TLS layouts Istio reads, that the PEM material parses and the key
 * belongs to the certificate. Paths are as the user wrote them (`data[tls.key]`).
 */
export function validateSecret(spec: unknown, issues: SecretIssues): void {
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) return;
  const s = spec as Record<string, unknown>;
  for (const k of Object.keys(s)) if (!SECRET_FIELDS.includes(k)) issues.add(k, `unknown field "${k}"`);
  if (s['type'] !== undefined && typeof s['type'] !== 'string') issues.add('type', 'Invalid value: expected a string');
  if (s['immutable'] !== undefined && typeof s['immutable'] !== 'boolean') issues.add('immutable', 'Invalid value: expected true or false');
  let bytes = 0;
  let shapeOk = true;
  for (const field of ['data', 'stringData'] as const) {
    const m = s[field];
    if (m === undefined || m === null) continue;
    if (typeof m !== 'object' || Array.isArray(m)) {
      issues.add(field, 'Invalid value: expected a mapping of keys to strings');
      shapeOk = false;
      continue;
    }
    for (const [k, v] of Object.entries(m as Record<string, unknown>)) {
      const at = `${field}[${k}]`;
      if (!KEY_RE.test(k)) issues.add(at, "Invalid value: a valid config key must consist of alphanumeric characters, '-', '_' or '.'");
      if (typeof v !== 'string') {
        issues.add(at, 'Invalid value: expected a string');
        shapeOk = false;
        continue;
      }
      if (field === 'data') {
        const compact = v.replace(/\s+/g, '');
        if (compact.length % 4 !== 0 || !BASE64_RE.test(compact)) {
          issues.add(at, 'Invalid value: not base64 (stringData takes plain text)');
          shapeOk = false;
          continue;
        }
        bytes += Buffer.byteLength(compact, 'base64');
      } else {
        bytes += Buffer.byteLength(v, 'utf8');
      }
    }
  }
  if (bytes > SECRET_MAX_BYTES) issues.add('data', `Too long: must have at most ${SECRET_MAX_BYTES} bytes (has ${bytes})`);
  if (!shapeOk) return;
  const sec = s as SecretSpec;
  const has = (k: string): boolean => sec.data?.[k] !== undefined || sec.stringData?.[k] !== undefined;
  const where = (k: string): string => (sec.stringData?.[k] !== undefined ? `stringData[${k}]` : `data[${k}]`);
  if (sec.type === TLS_SECRET_TYPE) {
    for (const k of ['tls.crt', 'tls.key']) if (!has(k)) issues.add(`data[${k}]`, 'Required value');
  }
  // The layouts Istio reads a credential from: their PEM must be usable.
  const tlsLayout = has('tls.crt') || has('tls.key');
  const names = tlsLayout ? { cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt' } : { cert: 'cert', key: 'key', ca: 'cacert' };
  if (!tlsLayout && !has('cert') && !has('key') && !has('cacert')) return;
  if (tlsLayout && !has('ca.crt') && has('cacert')) names.ca = 'cacert';
  for (const [k, reason] of checkMaterial(secretMaterial(sec), names)) issues.add(where(k), `Invalid value: ${reason}`);
}
