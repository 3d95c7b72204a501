// Reading and writing resource values in etcd: JSON of the resource without resourceVersion
// (etcd's mod revision is the version). Values that other tools wrote are checked like files.
import type { IKeyValue } from 'etcd3';
import { ConfigError, resourceKey, validateResource, type Resource } from '../../api/index.ts';
import { storedForm } from '../object.ts';
import { parseEtcdKey } from './keys.ts';

export type Decoded = { ok: true; key: string; resource: Resource } | { ok: false; key: string; errors: ConfigError[] };

/** The JSON value stored for a resource. */
export function encodeValue(resource: Resource): Buffer {
  return Buffer.from(JSON.stringify(storedForm(resource)));
}

/** Decodes and validates one key-value; resourceVersion becomes the key's mod revision. */
export function decodeValue(prefix: string, kv: IKeyValue): Decoded {
  const key = kv.key.toString();
  const file = `etcd:${key}`;
  const id = parseEtcdKey(prefix, key);
  const fail = (resource: string, detail: string): Decoded => ({ ok: false, key, errors: [new ConfigError({ file, index: 0, resource, path: '', detail })] });
  if (id === undefined) return fail('', `key is not of the form ${prefix}/KIND/NAMESPACE/NAME`);
  const idKey = `${id.kind}/${id.namespace}/${id.name}`;
  let value: unknown;
  try {
    value = JSON.parse(kv.value.toString('utf8'));
  } catch (err) {
    return fail(idKey, `value is not JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return fail(idKey, 'value must be a JSON object with apiVersion, kind, metadata and spec');
  const r = value as Resource;
  if (r.metadata === null || typeof r.metadata !== 'object') return fail(idKey, 'metadata: Required value');
  if (r.kind !== id.kind || r.metadata.name !== id.name || r.metadata.namespace !== id.namespace) {
    return fail(idKey, `value names ${resourceKey(r)}, which does not match its key`);
  }
  const errors = validateResource(r, { file, index: 0 });
  if (errors.length > 0) return { ok: false, key, errors };
  r.metadata.resourceVersion = kv.mod_revision;
  return { ok: true, key, resource: r };
}
