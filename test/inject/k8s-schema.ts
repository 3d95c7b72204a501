// Checks Kubernetes objects against the API's schemas as the kubernetes-models package ships
// them: its JSON schemas of every kind, compiled by ajv (types, enums, required fields,
// formats), and, because those schemas let unknown fields through where kubectl's strict
// field validation refuses them, its TypeScript interfaces, compiled against each object as a
// literal (TypeScript's excess-property check names every field the API does not have).
import path from 'node:path';
import ts from 'typescript';

const REPO = path.resolve(import.meta.dirname, '..', '..');

export interface K8sObject {
  apiVersion: string;
  kind: string;
  [field: string]: unknown;
}

/** `what` names the object in messages (`deploy/pilot.yaml: Deployment sextant-pilot`). */
export interface NamedObject {
  what: string;
  object: K8sObject;
}

interface ModelClass {
  new (data: unknown): { validate(): void };
}

/** The JSON-schema errors of one object (none when valid). */
export async function schemaErrors(o: NamedObject): Promise<string[]> {
  const { apiVersion, kind } = o.object;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(`kubernetes-models/${apiVersion}/${kind}`)) as Record<string, unknown>;
  } catch {
    return [`${o.what}: no schema for ${apiVersion} ${kind}`];
  }
  const Model = mod[kind] as ModelClass;
  try {
    new Model(o.object).validate();
    return [];
  } catch (err) {
    return [`${o.what}: ${(err as Error).message}`];
  }
}

/** Fields the API does not define, one message each, for all the objects at once (one compile). */
export function unknownFieldErrors(objects: readonly NamedObject[]): string[] {
  const file = path.join(REPO, 'test', 'inject', '__k8s_fields_check__.ts');
  const lines = objects.map((o, i) =>
    `const o${i} = ${JSON.stringify(o.object)} satisfies import('kubernetes-models/${o.object.apiVersion}/${o.object.kind}').I${o.object.kind}; void o${i};`);
  const source = lines.join('\n') + '\nexport {};\n';
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, version, onError, create) =>
    path.resolve(name) === file ? ts.createSourceFile(name, source, version) : getSourceFile(name, version, onError, create);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  const out: string[] = [];
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const line = d.file !== undefined && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    const what = objects[line]?.what ?? '(check)';
    out.push(`${what}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`);
  }
  return out;
}

/** Both checks over all the objects. */
export async function kubernetesErrors(objects: readonly NamedObject[]): Promise<string[]> {
  const errors: string[] = [];
  for (const o of objects) errors.push(...(await schemaErrors(o)));
  errors.push(...unknownFieldErrors(objects));
  return errors;
}
