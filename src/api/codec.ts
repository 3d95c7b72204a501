// Reads Istio config as users write it for kubectl (multi-document YAML, JSON, `kind: List`,
// directories of files) into Resources, and writes Resources back as YAML.
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { isMap, isScalar, isSeq, parseAllDocuments, Scalar, visit, type Document } from 'yaml';
import { ConfigError } from './errors.ts';
import { KINDS, lookupKind, UNSUPPORTED_ISTIO_KINDS } from './kinds.ts';
import type { Origin, Resource } from './resource.ts';
import { isSecret, secretFromDocument, secretToDocument } from './secret.ts';
import { emitYaml, fastReadYamlDocuments } from './yaml-fast.ts';

export interface LoadedDocument {
  resource: Resource;
  origin: Origin;
}

export interface LoadResult {
  documents: LoadedDocument[];
  errors: ConfigError[];
}

/** File names loadPaths picks up when walking a directory. */
const CONFIG_FILE = /\.(ya?ml|json)$/i;

// Kubernetes' core group (Secret) is served, but its other kinds are not Istio's: they stay unknown.
const KNOWN_GROUPS = new Set(KINDS.map((k) => k.group).filter((g) => g !== ''));

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses one file's text. Each document is checked for a supported apiVersion/kind and a
 * metadata.name; a missing metadata.namespace becomes "default". Spec validation is
 * validateResource's job. Empty documents are skipped; their index still counts, so
 * indexes match the order of documents in the file.
 */
export function parseDocuments(text: string, file: string): LoadResult {
  const out: LoadResult = { documents: [], errors: [] };
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    // JSON is parsed natively: much faster than the YAML parser and same result.
    let value: unknown;
    let parsed = false;
    try {
      value = JSON.parse(text);
      parsed = true;
    } catch {
      // Not a single JSON value (e.g. a JSON stream or flow-style YAML): the YAML parser decides.
    }
    if (parsed) {
      if (Array.isArray(value)) value.forEach((v, i) => addDocument(v, file, i, out, ''));
      else addDocument(value, file, 0, out, '');
      return out;
    }
  }
  // Most manifests are plain block YAML: read those fast; anything else (and every error)
  // goes through the full parser, document by document, so results and messages are the
  // same either way.
  const fast = fastReadYamlDocuments(text);
  if (fast !== undefined) {
    for (let i = 0; i < fast.length; i++) {
      const d = fast[i]!;
      if ('value' in d) addDocument(d.value, file, i, out, '');
      // Padding keeps the full parser's line numbers those of the file.
      else readFullYaml('\n'.repeat(d.line) + d.text, file, i, out, true);
    }
    return out;
  }
  readFullYaml(text, file, 0, out, false);
  return out;
}

/**
 * Reads YAML with the full parser: a whole stream (documents indexed from first), or one
 * document of a stream (single) at index first.
 */
function readFullYaml(text: string, file: string, first: number, out: LoadResult, single: boolean): void {
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  if (!Array.isArray(docs)) return; // empty stream
  if (single && docs.length > 1) {
    out.errors.push(new ConfigError({ file, index: first, resource: '', path: '', detail: 'invalid YAML: unexpected document marker' }));
    return;
  }
  const flowColons = FLOW_COLON.test(text);
  for (let k = 0; k < docs.length; k++) {
    const doc = docs[k]!;
    const i = first + k;
    if (doc.errors.length > 0) {
      // With prettyErrors the first line reads "<problem> at line L, column C:".
      const first = doc.errors[0]!.message.split('\n')[0]!.replace(/:$/, '');
      out.errors.push(new ConfigError({ file, index: i, resource: '', path: '', detail: `invalid YAML: ${first}` }));
      continue;
    }
    if (flowColons) restoreFlowColonScalars(doc, text);
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      out.errors.push(new ConfigError({ file, index: i, resource: '', path: '', detail: `invalid YAML: ${(err as Error).message}` }));
      continue;
    }
    addDocument(value, file, i, out, '');
  }
}

/** A plain scalar ending in ':' right before ',' or ']' inside a flow sequence, e.g. [001:db8::]. */
const FLOW_COLON = /[^\s'"]:[,\]]/;

/**
 * kubectl's YAML parser reads `[1.2.3.4, 2001:db8::]` as two strings, where YAML 1.2 reads the
 * second item as a mapping {"2001:db8:": null}. Users write IPv6 addresses this way, so such
 * items (a key glued to its ':' with no value) are turned back into the scalar they were.
 */
function restoreFlowColonScalars(doc: Document, text: string): void {
  visit(doc, {
    Seq(_, seq) {
      if (!isSeq(seq) || !seq.flow) return;
      for (let i = 0; i < seq.items.length; i++) {
        const item = seq.items[i];
        if (!isMap(item) || item.items.length !== 1) continue;
        const pair = item.items[0]!;
        const key = pair.key;
        const value = pair.value;
        if (!isScalar(key) || key.type !== 'PLAIN' || key.range === undefined || key.range === null) continue;
        if (value !== null && !(isScalar(value) && value.value === null && value.source === '')) continue;
        if (text[key.range[1]] !== ':') continue;
        seq.items[i] = new Scalar(`${String(key.source ?? key.value)}:`);
      }
    },
  });
}

function addDocument(value: unknown, file: string, index: number, out: LoadResult, prefix: string): void {
  if (value === null || value === undefined) return; // empty document
  const fail = (resource: string, p: string, detail: string): void => {
    const full = prefix === '' ? p : p === '' ? prefix : `${prefix}.${p}`;
    out.errors.push(new ConfigError({ file, index, resource, path: full, detail }));
  };
  if (!isObject(value)) {
    fail('', '', 'a document must be a mapping with apiVersion, kind, metadata and spec');
    return;
  }
  const { apiVersion, kind } = value;
  if (kind === 'List' && (apiVersion === 'v1' || apiVersion === undefined)) {
    const items = value['items'];
    if (items === undefined || items === null) return;
    if (!Array.isArray(items)) {
      fail('', 'items', 'expected a list of resources');
      return;
    }
    for (let i = 0; i < items.length; i++) addDocument(items[i], file, index, out, `${prefix === '' ? '' : `${prefix}.`}items[${i}]`);
    return;
  }
  const meta = value['metadata'];
  const name = isObject(meta) && typeof meta['name'] === 'string' ? meta['name'] : '';
  const ns = isObject(meta) && typeof meta['namespace'] === 'string' && meta['namespace'] !== '' ? meta['namespace'] : 'default';
  const key = `${typeof kind === 'string' ? kind : ''}/${ns}/${name}`;
  if (typeof apiVersion !== 'string' || apiVersion === '') {
    fail(key, 'apiVersion', 'Required value: a string such as networking.istio.io/v1');
    return;
  }
  if (typeof kind !== 'string' || kind === '') {
    fail(key, 'kind', 'Required value: a string such as VirtualService');
    return;
  }
  if (lookupKind(apiVersion, kind) === undefined) {
    fail(key, '', describeUnknownKind(apiVersion, kind));
    return;
  }
  if (!isObject(meta)) {
    fail(key, 'metadata', 'Required value: a mapping with at least name');
    return;
  }
  if (name === '') {
    fail(key, 'metadata.name', 'Required value: a non-empty string');
    return;
  }
  meta['namespace'] = ns;
  if (isSecret(apiVersion, kind)) {
    // A Secret's fields sit at the top level; inside, they travel as its spec (secret.ts).
    const secret = secretFromDocument(value);
    if ('path' in secret) fail(key, secret.path, secret.detail);
    else out.documents.push({ resource: secret.resource, origin: { file, index } });
    return;
  }
  out.documents.push({ resource: value as unknown as Resource, origin: { file, index } });
}

/** Why an apiVersion/kind pair is not served: unknown, unsupported, or a version Istio never served. */
export function describeUnknownKind(apiVersion: string, kind: string): string {
  const slash = apiVersion.lastIndexOf('/');
  const group = slash < 0 ? '' : apiVersion.slice(0, slash);
  if (UNSUPPORTED_ISTIO_KINDS.has(`${group}/${kind}`)) {
    return `unsupported kind ${kind} (${apiVersion}): Sextant serves ${KINDS.map((k) => k.kind).join(', ')}`;
  }
  const sameKind = KINDS.find((k) => k.kind === kind && k.group === group);
  if (sameKind !== undefined) {
    return `unsupported version ${apiVersion} of ${kind}: expected one of ${sameKind.versions.map((v) => `${group}/${v}`).join(', ')}`;
  }
  if (KNOWN_GROUPS.has(group) || group.endsWith('istio.io')) {
    return `unsupported kind ${kind} (${apiVersion}): Sextant serves ${KINDS.map((k) => k.kind).join(', ')}`;
  }
  return `unknown kind ${kind} (${apiVersion}): expected an Istio kind such as networking.istio.io/v1 VirtualService`;
}

/**
 * Loads files and directories (recursively; in a directory only *.yaml, *.yml and *.json,
 * hidden entries skipped). Files named explicitly are read whatever their extension.
 * Files are read in sorted order so results are deterministic.
 */
export async function loadPaths(paths: string[]): Promise<LoadResult> {
  const out: LoadResult = { documents: [], errors: [] };
  for (const p of paths) {
    let files: string[];
    try {
      const st = await stat(p);
      files = st.isDirectory() ? await walk(p) : [p];
    } catch (err) {
      out.errors.push(new ConfigError({ file: p, resource: '', path: '', detail: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }));
      continue;
    }
    for (const f of files) {
      let text: string;
      try {
        text = await readFile(f, 'utf8');
      } catch (err) {
        out.errors.push(new ConfigError({ file: f, resource: '', path: '', detail: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }));
        continue;
      }
      const r = parseDocuments(text, f);
      for (const d of r.documents) out.documents.push(d);
      for (const e of r.errors) out.errors.push(e);
    }
  }
  return out;
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if ((e.isFile() || e.isSymbolicLink()) && CONFIG_FILE.test(e.name)) out.push(p);
  }
  return out;
}

/** The resource as a YAML document (apiVersion, kind, metadata, spec first; no trailing '---'). */
export function toYaml(resource: Resource): string {
  if (isSecret(resource.apiVersion, resource.kind)) return emitYaml(secretToDocument(resource));
  const { apiVersion, kind, metadata, spec, ...rest } = resource as Resource & Record<string, unknown>;
  return emitYaml({ apiVersion, kind, metadata, spec, ...rest });
}
