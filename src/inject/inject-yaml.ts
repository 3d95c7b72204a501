// `sextant inject` on YAML text: every document of a multi-document file (and every item of
// a List) is injected; the operations of the injection patch are applied to the parsed YAML,
// so the output keeps the input's other fields, their order, comments and quoting, and a
// document that is not a workload comes out byte for byte as it went in.
import { Document, isMap, isSeq, parseAllDocuments, type Node } from 'yaml';
import { injectionPatch, type WorkloadResult } from './inject.ts';
import { parsePointer, type PatchOperation } from './inject-patch.ts';
import { InjectError, type InjectOptions } from './inject-template.ts';

export interface YamlInjection {
  text: string;
  results: WorkloadResult[];
}

/** A file that cannot be injected: names the file, the document and what is wrong. */
export class InjectFileError extends Error {
  override name = 'InjectFileError';
}

function applyOperation(doc: Document, op: PatchOperation): void {
  const tokens = parsePointer(op.path);
  const last = tokens.pop();
  if (last === undefined) throw new Error('a patch of the whole document is not applied to YAML');
  let parent: unknown = doc.contents;
  for (const t of tokens) {
    if (isSeq(parent)) parent = parent.items[Number(t)];
    else if (isMap(parent)) parent = parent.get(t, true);
    else throw new Error(`${op.path}: no collection at ${JSON.stringify(t)}`);
  }
  const node = (): Node => doc.createNode('value' in op ? op.value : null);
  if (isSeq(parent)) {
    const i = last === '-' ? parent.items.length : Number(last);
    if (op.op === 'add') parent.items.splice(i, 0, node());
    else if (op.op === 'replace') parent.items[i] = node();
    else parent.items.splice(i, 1);
  } else if (isMap(parent)) {
    if (op.op === 'remove') parent.delete(last);
    else parent.set(last, node());
  } else {
    throw new Error(`${op.path}: the parent is not a collection`);
  }
}

/** Whether the source writes block sequences flush with their key (`key:\n- a`), as kubectl does. */
function sequencesFlush(text: string): boolean {
  return /^( *)[^\s#-][^\n]*:[ \t]*\n\1- /m.test(text);
}

/**
 * Injects every workload in `text` (documents separated by `---`; Lists' items too).
 * `source` names the input in errors. Nothing is returned half-injected: any document that
 * cannot be read or injected throws an InjectFileError naming it.
 */
export function injectYaml(text: string, o: InjectOptions, source = '<stdin>'): YamlInjection {
  const docs = parseAllDocuments(text, { prettyErrors: false });
  if (!Array.isArray(docs)) {
    // an empty stream
    return { text, results: [] };
  }
  const results: WorkloadResult[] = [];
  const replacements: { start: number; end: number; text: string }[] = [];
  const indentSeq = !sequencesFlush(text);
  docs.forEach((doc, index) => {
    const where = `${source}: document ${index + 1}`;
    if (doc.errors.length > 0) throw new InjectFileError(`${where}: invalid YAML: ${doc.errors[0]!.message}`);
    const value = doc.toJS({ maxAliasCount: 100 }) as unknown;
    let patch: PatchOperation[];
    let after: unknown;
    try {
      const r = injectionPatch(value as Parameters<typeof injectionPatch>[0], o);
      results.push(...r.results);
      patch = r.patch;
      after = r.after;
    } catch (err) {
      if (err instanceof InjectError) throw new InjectFileError(`${where}: ${err.message}`, { cause: err });
      throw err;
    }
    if (patch.length === 0 || doc.contents === null) return;
    const range = doc.contents.range;
    if (range === undefined || range === null) throw new Error(`${where}: no source range`);
    const original = text.slice(range[0], range[2]);
    let rendered: string;
    if (original.trimStart().startsWith('{')) {
      // A JSON document stays JSON.
      rendered = `${JSON.stringify(after, null, 2)}\n`;
    } else {
      let contents: Document;
      try {
        for (const op of patch) applyOperation(doc, op);
        // Only the document's contents are rewritten: the `---`, directives and comments
        // around them stay as they were.
        contents = new Document(doc.contents, { version: '1.2' });
      } catch {
        // A path through an alias (`template: *shared`): the document is written anew.
        contents = new Document(after, { version: '1.2' });
      }
      rendered = contents.toString({ indentSeq, lineWidth: 0, flowCollectionPadding: false })
        // A comment above the first key is outside the range (it stays where it is): not twice.
        .replace(/^(?:[ \t]*(?:#[^\n]*)?\n)+/, '');
    }
    if (!original.endsWith('\n')) rendered = rendered.replace(/\n$/, '');
    else if (!rendered.endsWith('\n')) rendered += '\n';
    replacements.push({ start: range[0], end: range[2], text: rendered });
  });
  let out = '';
  let at = 0;
  for (const r of replacements) {
    out += text.slice(at, r.start) + r.text;
    at = r.end;
  }
  out += text.slice(at);
  return { text: out, results };
}
