// The etcd key layout: PREFIX/KIND/NAMESPACE/NAME, one JSON value per resource.
import { InvalidArgumentError } from '../errors.ts';

export const DEFAULT_ETCD_PREFIX = '/sextant/config';

/** Normalizes a prefix: leading '/', no trailing '/'. */
export function normalizePrefix(prefix: string | undefined): string {
  const p = (prefix ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, '');
  if (p === '' || p.includes('\0')) throw new InvalidArgumentError(`invalid etcd prefix ${JSON.stringify(prefix)}: expected a path such as ${DEFAULT_ETCD_PREFIX}`);
  return p.startsWith('/') ? p : `/${p}`;
}

export function resourceEtcdKey(prefix: string, kind: string, namespace: string, name: string): string {
  return `${prefix}/${kind}/${namespace}/${name}`;
}

/** The key range [start, end) holding every key that begins with `p`. */
export function prefixRange(p: string): { key: Buffer; range_end: Buffer } {
  const key = Buffer.from(p);
  const end = Buffer.from(key);
  // Increment the last byte that is not 0xff; drop the 0xff bytes after it.
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return { key, range_end: end.subarray(0, i + 1) };
    }
  }
  return { key, range_end: Buffer.from([0]) };
}

/** Kind, namespace and name from a key under the prefix, or undefined for keys not in the layout. */
export function parseEtcdKey(prefix: string, key: string): { kind: string; namespace: string; name: string } | undefined {
  if (!key.startsWith(`${prefix}/`)) return undefined;
  const parts = key.slice(prefix.length + 1).split('/');
  if (parts.length !== 3 || parts.some((p) => p === '')) return undefined;
  return { kind: parts[0]!, namespace: parts[1]!, name: parts[2]! };
}
