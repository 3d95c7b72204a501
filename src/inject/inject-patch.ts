// JSON Patch (RFC 6902) between a workload before and after injection: the admission webhook
// answers with it, and `sextant inject` applies the same operations to the YAML document, so
// both paths change exactly the same fields.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** The operations injection produces: only add, replace and remove (RFC 6902 §4.1–4.3). */
export type PatchOperation =
  | { op: 'add'; path: string; value: JsonValue }
  | { op: 'replace'; path: string; value: JsonValue }
  | { op: 'remove'; path: string };

/** One reference token of a JSON Pointer (RFC 6901): `~` → `~0`, `/` → `~1`. */
export function escapePointerToken(token: string | number): string {
  return String(token).replaceAll('~', '~0').replaceAll('/', '~1');
}

/** A JSON Pointer from its tokens: `['metadata', 'annotations', 'a/b']` → `/metadata/annotations/a~1b`. */
export function toPointer(tokens: readonly (string | number)[]): string {
  return tokens.map((t) => `/${escapePointerToken(t)}`).join('');
}

/** The tokens of a JSON Pointer (`''` is the whole document). */
export function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new Error(`invalid JSON Pointer ${JSON.stringify(pointer)}: must start with /`);
  return pointer.slice(1).split('/').map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function isObject(v: unknown): v is Record<string, JsonValue> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

/**
 * Where `after` is `before` with elements inserted (every element of `before` kept, in
 * order), the indexes of `after` that are new; else undefined.
 */
function insertions(before: readonly JsonValue[], after: readonly JsonValue[]): number[] | undefined {
  const added: number[] = [];
  let i = 0;
  for (let j = 0; j < after.length; j++) {
    if (i < before.length && jsonEqual(before[i], after[j])) i++;
    else added.push(j);
  }
  return i === before.length ? added : undefined;
}

/**
 * The operations that turn `before` into `after`, prefixed with `base` (a pointer). Objects
 * are compared key by key; an array that only gained elements gets one `add` per new element
 * (so a patch inserting the sidecar first reads `add /spec/containers/0`), one of the same
 * length element by element, any other changed array is replaced whole.
 */
export function diff(before: JsonValue, after: JsonValue, base: readonly (string | number)[] = []): PatchOperation[] {
  if (jsonEqual(before, after)) return [];
  if (isObject(before) && isObject(after)) {
    const ops: PatchOperation[] = [];
    for (const k of Object.keys(before)) if (!Object.hasOwn(after, k)) ops.push({ op: 'remove', path: toPointer([...base, k]) });
    for (const [k, v] of Object.entries(after)) {
      if (!Object.hasOwn(before, k)) ops.push({ op: 'add', path: toPointer([...base, k]), value: v });
      else ops.push(...diff(before[k]!, v, [...base, k]));
    }
    return ops;
  }
  if (Array.isArray(before) && Array.isArray(after)) {
    const added = insertions(before, after);
    if (added !== undefined) {
      return added.map((j) => ({ op: 'add', path: toPointer([...base, j === after.length - 1 && j >= before.length ? '-' : j]), value: after[j]! }));
    }
    // The same elements, some changed (a List's items): element by element.
    if (before.length === after.length) return before.flatMap((b, i) => diff(b, after[i]!, [...base, i]));
  }
  return [{ op: 'replace', path: toPointer(base), value: after }];
}

/** Prefixes every operation's path with `prefix` (a pointer such as `/spec/template`). */
export function rebase(ops: readonly PatchOperation[], prefix: string): PatchOperation[] {
  return ops.map((o) => ({ ...o, path: prefix + o.path }));
}
