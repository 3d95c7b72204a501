// What both backends do to an atomic batch (ConfigStore.apply) before touching storage: every
// op checked and validated, no key named twice, at most MAX_APPLY_OPS ops.
import type { Resource } from '../api/index.ts';
import { ConflictError, InvalidArgumentError } from './errors.ts';
import { checkSegments, keyOf, prepareWrite, sameContent } from './object.ts';
import { MAX_APPLY_OPS, type ApplyOp } from './store.ts';

/** One op of a batch, checked: its key, and for a put the validated resource (namespace defaulted). */
export interface PreparedOp {
  op: 'put' | 'delete';
  key: string;
  kind: string;
  namespace: string;
  name: string;
  /** put: the resource to store (without the store-set fields). */
  resource: Resource | undefined;
  ifMatch: string | undefined;
}

/** Checks and validates a batch; throws InvalidArgumentError or ValidationFailedError (the first invalid resource, all its errors). */
export function prepareBatch(ops: readonly ApplyOp[]): PreparedOp[] {
  if (!Array.isArray(ops)) throw new InvalidArgumentError('apply takes a list of ops');
  if (ops.length > MAX_APPLY_OPS) throw new InvalidArgumentError(`a batch holds at most ${MAX_APPLY_OPS} ops, got ${ops.length}`);
  const seen = new Set<string>();
  const out: PreparedOp[] = [];
  for (const op of ops) {
    const ifMatch = op.ifMatch === undefined || op.ifMatch === '' ? undefined : op.ifMatch;
    let prepared: PreparedOp;
    if (op.op === 'put') {
      const { key, resource } = prepareWrite(op.resource);
      const { resourceVersion: _rv, ...metadata } = resource.metadata;
      prepared = { op: 'put', key, kind: resource.kind, namespace: metadata.namespace, name: metadata.name, resource: { ...resource, metadata }, ifMatch };
    } else if (op.op === 'delete') {
      checkSegments(op.kind, op.namespace, op.name);
      prepared = { op: 'delete', key: keyOf(op.kind, op.namespace, op.name), kind: op.kind, namespace: op.namespace, name: op.name, resource: undefined, ifMatch };
    } else {
      throw new InvalidArgumentError(`unknown op ${JSON.stringify((op as { op?: unknown }).op)}: expected put or delete`);
    }
    if (seen.has(prepared.key)) throw new InvalidArgumentError(`${prepared.key} is named twice in one batch`);
    seen.add(prepared.key);
    out.push(prepared);
  }
  return out;
}

/** Throws ConflictError when the op names a version and the resource is not at it. */
export function checkIfMatch(op: PreparedOp, actual: string | undefined): void {
  if (op.ifMatch !== undefined && op.ifMatch !== actual) throw new ConflictError(op.key, op.ifMatch, actual);
}

/** What a put does to the current state: nothing (same content), create, or update. */
export function putEffect(op: PreparedOp, current: Resource | undefined): 'none' | 'create' | 'update' {
  if (current === undefined) return 'create';
  return sameContent(current, op.resource!) ? 'none' : 'update';
}
