// Writing config files safely: every write goes to a hidden temp file in the same directory,
// is fsynced and renamed into place, so readers (and our own watcher) never see half a file.
// Rewrites of multi-document files change only the one document and keep the others' text.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { toYaml, type Resource } from '../../api/index.ts';

export function contentHash(text: string | Buffer): string {
  return createHash('sha1').update(text).digest('hex');
}

/** A path (or a folder on it) that does not exist. */
export function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Names the directory store never reads: hidden files (editor swap files, our temp files) and non-config extensions. */
export function isConfigFileName(base: string): boolean {
  return !base.startsWith('.') && /\.(ya?ml|json)$/i.test(base);
}

/**
 * Writes `text` to a hidden, fsynced temp file beside `file` and returns its path; the caller
 * renames it into place. The file's folder is created if missing, but not its parent: a write
 * never recreates a config directory that was moved or deleted.
 */
export async function writeTempBeside(file: string, text: string): Promise<string> {
  const dir = path.dirname(file);
  await mkdir(dir).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  });
  const tmp = path.join(dir, `.${path.basename(file)}.sextant-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o644);
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  return tmp;
}

/** Writes `text` to `file` atomically (a temp file beside it, renamed into place). */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const tmp = await writeTempBeside(file, text);
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

function yamlDoc(resource: Resource): string {
  const s = toYaml(resource).replace(/^---\n/, '');
  return s.endsWith('\n') ? s : `${s}\n`;
}

/** The whole file as the store writes it from scratch: one document per resource. */
export function serializeAll(resources: readonly Resource[], format: 'yaml' | 'json'): string {
  if (format === 'json') {
    if (resources.length === 1) return `${JSON.stringify(resources[0], null, 2)}\n`;
    return `${JSON.stringify({ apiVersion: 'v1', kind: 'List', items: resources }, null, 2)}\n`;
  }
  return resources.map(yamlDoc).join('---\n');
}

/**
 * Rewrites YAML text, replacing the document at `index` (which must hold `expected`) with
 * `replacement`, or dropping it when replacement is null. The other documents keep their text
 * and comments; empty documents are dropped. Returns undefined when the document at `index`
 * is not `expected` (the caller then rewrites the file whole).
 */
export function rewriteYamlDocument(text: string, index: number, expected: Resource, replacement: Resource | null): string | undefined {
  let docs;
  try {
    docs = parseAllDocuments(text, { uniqueKeys: true });
  } catch {
    return undefined;
  }
  if (!Array.isArray(docs)) return undefined;
  const target = docs[index];
  if (target === undefined || target.errors.length > 0) return undefined;
  const js = target.toJS() as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } } | null;
  if (js === null || typeof js !== 'object' || js.kind !== expected.kind || js.metadata?.name !== expected.metadata.name) return undefined;
  const ns = js.metadata.namespace;
  if (ns !== undefined && ns !== null && ns !== '' && ns !== expected.metadata.namespace) return undefined;
  const parts: string[] = [];
  for (let i = 0; i < docs.length; i++) {
    const doc = docs[i]!;
    if (i === index) {
      if (replacement !== null) parts.push(yamlDoc(replacement));
      continue;
    }
    if (doc.contents === null && doc.commentBefore == null && doc.comment == null) continue;
    let s = doc.toString().replace(/^---\n/, '');
    if (!s.endsWith('\n')) s += '\n';
    parts.push(s);
  }
  return parts.join('---\n');
}
