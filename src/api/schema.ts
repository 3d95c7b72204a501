// A small structural-schema language for Istio specs and the walker that checks a value
// against it: types, enums, bounds, required fields, oneOf groups, unknown fields, and
// per-node rules (the CRDs' CEL rules, written in TypeScript). Schemas are built once at
// module load; the walker allocates only path strings and errors.

/** Where errors are collected during one validation. */
export interface Issues {
  add(path: string, detail: string): void;
  /** How many issues were added so far: rules compare it to tell whether they added any. */
  readonly count: number;
}

/** A rule run on a node after its structural checks passed. */
export type NodeRule<T> = (value: T, path: string, issues: Issues) => void;

interface Base<T> {
  rules?: ReadonlyArray<NodeRule<T>>;
}

export interface StringSchema extends Base<string> {
  t: 'string';
  enum?: readonly string[];
  minLength?: number;
  maxLength?: number;
  pattern?: RegExp;
  /** Shown instead of the raw pattern when it does not match. */
  patternHint?: string;
}
export interface IntSchema extends Base<number> {
  t: 'int';
  min?: number;
  max?: number;
}
export interface NumberSchema extends Base<number> {
  t: 'number';
  min?: number;
  max?: number;
}
export interface BoolSchema extends Base<boolean> {
  t: 'bool';
}
export interface ObjectSchema extends Base<Record<string, unknown>> {
  t: 'object';
  fields: Readonly<Record<string, Schema>>;
  required?: readonly string[];
  /** Groups of fields of which at most one may be set (proto oneofs). */
  oneOf?: ReadonlyArray<readonly string[]>;
  minProperties?: number;
  /**
   * Run the rules even when a field below failed, as the API server runs a CEL rule on an
   * object whose fields have their own errors (rules that only count which fields are set).
   */
  rulesDespiteFieldErrors?: boolean;
}
export interface MapSchema extends Base<Record<string, unknown>> {
  t: 'map';
  values: Schema;
  minProperties?: number;
  maxProperties?: number;
  key?: NodeRule<string>;
}
export interface ArraySchema extends Base<unknown[]> {
  t: 'array';
  items: Schema;
  minItems?: number;
  maxItems?: number;
  /** x-kubernetes-list-type: map: these item fields identify an item; duplicates rejected. */
  mapKey?: string;
}
/** Any JSON (proto Struct, x-kubernetes-preserve-unknown-fields). */
export interface AnySchema extends Base<unknown> {
  t: 'any';
  /** Require a mapping (a Struct) rather than any JSON value. */
  object?: boolean;
}

export type Schema = StringSchema | IntSchema | NumberSchema | BoolSchema | ObjectSchema | MapSchema | ArraySchema | AnySchema;

// ---------------------------------------------------------------- builders

export const str = (o: Omit<StringSchema, 't'> = {}): StringSchema => ({ t: 'string', ...o });
export const int = (o: Omit<IntSchema, 't'> = {}): IntSchema => ({ t: 'int', ...o });
export const num = (o: Omit<NumberSchema, 't'> = {}): NumberSchema => ({ t: 'number', ...o });
export const bool = (): BoolSchema => ({ t: 'bool' });
export const any = (o: Omit<AnySchema, 't'> = {}): AnySchema => ({ t: 'any', ...o });
export const obj = (fields: Record<string, Schema>, o: Omit<ObjectSchema, 't' | 'fields'> = {}): ObjectSchema => ({ t: 'object', fields, ...o });
export const map = (values: Schema, o: Omit<MapSchema, 't' | 'values'> = {}): MapSchema => ({ t: 'map', values, ...o });
export const arr = (items: Schema, o: Omit<ArraySchema, 't' | 'items'> = {}): ArraySchema => ({ t: 'array', items, ...o });
export const strs = (o: Omit<ArraySchema, 't' | 'items'> = {}, item: StringSchema = str()): ArraySchema => arr(item, o);
/** uint32 as the CRDs declare it. */
export const uint32 = (rules?: ReadonlyArray<NodeRule<number>>): IntSchema => (rules ? int({ min: 0, max: 4294967295, rules }) : int({ min: 0, max: 4294967295 }));
export const int32 = (o: Omit<IntSchema, 't'> = {}): IntSchema => int({ min: -2147483648, max: 2147483647, ...o });
export const strEnum = (values: readonly string[]): StringSchema => str({ enum: values });

// ---------------------------------------------------------------- walker

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return 'object';
  return typeof v;
}

function quote(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 80 ? s.slice(0, 77) + '...' : s;
}

/** Joins a parent path and a field name. */
export function child(path: string, field: string): string {
  return path === '' ? field : `${path}.${field}`;
}

/**
 * Checks value against schema, reporting each problem at its field path. A null value is
 * treated as absent (Kubernetes prunes nulls before validating), so callers check presence.
 * Returns true when no structural problem was found below this node.
 */
export function walk(schema: Schema, value: unknown, path: string, issues: Issues): boolean {
  switch (schema.t) {
    case 'string': {
      if (typeof value !== 'string') return wrongType(path, value, 'string', issues);
      let ok = true;
      if (schema.enum !== undefined && !schema.enum.includes(value)) {
        issues.add(path, `Unsupported value: ${quote(value)}: supported values: ${schema.enum.map((e) => `"${e}"`).join(', ')}`);
        ok = false;
      }
      if (schema.minLength !== undefined && value.length < schema.minLength) {
        issues.add(path, `Invalid value: ${quote(value)}: ${path} in body should be at least ${schema.minLength} chars long`);
        ok = false;
      }
      if (schema.maxLength !== undefined && value.length > schema.maxLength) {
        issues.add(path, `Too long: may not be longer than ${schema.maxLength}`);
        ok = false;
      }
      if (schema.pattern !== undefined && !schema.pattern.test(value)) {
        issues.add(path, `Invalid value: ${quote(value)}: ${path} in body should match '${schema.patternHint ?? schema.pattern.source}'`);
        ok = false;
      }
      if (ok && schema.rules) return runRules(schema.rules, value, path, issues);
      return ok;
    }
    case 'int': {
      if (typeof value !== 'number' || !Number.isInteger(value)) return wrongType(path, value, 'integer', issues);
      return checkRange(schema, value, path, issues);
    }
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return wrongType(path, value, 'number', issues);
      return checkRange(schema, value, path, issues);
    }
    case 'bool':
      if (typeof value !== 'boolean') return wrongType(path, value, 'boolean', issues);
      return true;
    case 'any':
      if (schema.object === true && !isObject(value)) return wrongType(path, value, 'object', issues);
      return schema.rules ? runRules(schema.rules, value, path, issues) : true;
    case 'object': {
      if (!isObject(value)) return wrongType(path, value, 'object', issues);
      let ok = true;
      const fields = schema.fields;
      for (const k in value) {
        const v = value[k];
        const s = fields[k];
        if (s === undefined) {
          issues.add(child(path, k), `unknown field "${k}"`);
          ok = false;
          continue;
        }
        if (v === null || v === undefined) continue;
        if (!walk(s, v, child(path, k), issues)) ok = false;
      }
      if (schema.required !== undefined) {
        for (const r of schema.required) {
          // a required field written as null is not pruned: the API server reports its type
          if (value[r] === null && fields[r] !== undefined) {
            issues.add(child(path, r), `Invalid value: "null": ${child(path, r)} in body must be of type ${schemaTypeName(fields[r])}: "null"`);
            ok = false;
          } else if (value[r] === undefined || value[r] === null) {
            issues.add(child(path, r), 'Required value');
            ok = false;
          }
        }
      }
      if (schema.oneOf !== undefined) {
        for (const group of schema.oneOf) {
          let set = 0;
          for (const g of group) if (value[g] !== undefined && value[g] !== null) set++;
          if (set > 1) {
            issues.add(path, `Invalid value: "object": only one of ${group.join(', ')} may be set`);
            ok = false;
          }
        }
      }
      if ((ok || schema.rulesDespiteFieldErrors === true) && schema.rules) return runRules(schema.rules, value, path, issues) && ok;
      return ok;
    }
    case 'map': {
      if (!isObject(value)) return wrongType(path, value, 'object', issues);
      let ok = true;
      let n = 0;
      for (const k in value) {
        n++;
        const p = `${path}[${k}]`;
        if (schema.key !== undefined) {
          const before = issues.count;
          schema.key(k, path, issues);
          if (issues.count !== before) ok = false;
        }
        const v = value[k];
        if (v === null || v === undefined) {
          if (schema.values.t !== 'any') {
            issues.add(p, 'Invalid value: null: a value is required');
            ok = false;
          }
          continue;
        }
        if (!walk(schema.values, v, p, issues)) ok = false;
      }
      if (schema.minProperties !== undefined && n < schema.minProperties) {
        issues.add(path, `Invalid value: ${n}: ${path} in body should have at least ${schema.minProperties} properties`);
        ok = false;
      }
      if (schema.maxProperties !== undefined && n > schema.maxProperties) {
        issues.add(path, `Too many: ${n}: must have at most ${schema.maxProperties} items`);
        ok = false;
      }
      if (ok && schema.rules) return runRules(schema.rules, value, path, issues);
      return ok;
    }
    case 'array': {
      if (!Array.isArray(value)) return wrongType(path, value, 'array', issues);
      let ok = true;
      if (schema.minItems !== undefined && value.length < schema.minItems) {
        issues.add(path, `Invalid value: ${value.length}: should have at least ${schema.minItems} items`);
        ok = false;
      }
      if (schema.maxItems !== undefined && value.length > schema.maxItems) {
        issues.add(path, `Too many: ${value.length}: must have at most ${schema.maxItems} items`);
        ok = false;
      }
      for (let i = 0; i < value.length; i++) {
        const v = value[i];
        const p = `${path}[${i}]`;
        if (v === null || v === undefined) {
          // As the API server words it: a null item is not of the item's type.
          issues.add(p, `Invalid value: "null": ${p} in body must be of type ${schemaTypeName(schema.items)}: "null"`);
          ok = false;
          continue;
        }
        if (!walk(schema.items, v, p, issues)) ok = false;
      }
      if (ok && schema.mapKey !== undefined) {
        const seen = new Set<unknown>();
        for (let i = 0; i < value.length; i++) {
          const key = (value[i] as Record<string, unknown>)[schema.mapKey];
          if (seen.has(key)) {
            issues.add(`${path}[${i}]`, `Duplicate value: {"${schema.mapKey}":${JSON.stringify(key)}}`);
            ok = false;
          }
          seen.add(key);
        }
      }
      if (ok && schema.rules) return runRules(schema.rules, value, path, issues);
      return ok;
    }
  }
}

/** The OpenAPI type name of a schema, as Kubernetes' messages name it. */
function schemaTypeName(s: Schema): string {
  switch (s.t) {
    case 'int': return 'integer';
    case 'bool': return 'boolean';
    case 'map': return 'object';
    case 'any': return 'object';
    default: return s.t;
  }
}

function wrongType(path: string, value: unknown, expected: string, issues: Issues): false {
  issues.add(path, `Invalid value: ${quote(typeof value === 'object' ? typeName(value) : value)}: expected ${expected}, got ${typeName(value)}`);
  return false;
}

function runRules<T>(rules: ReadonlyArray<NodeRule<T>>, value: T, path: string, issues: Issues): boolean {
  const before = issues.count;
  for (const r of rules) r(value, path, issues);
  return issues.count === before;
}

/** The bounds and rules shared by integer and number schemas. */
function checkRange(schema: IntSchema | NumberSchema, value: number, path: string, issues: Issues): boolean {
  if (schema.min !== undefined && value < schema.min) {
    issues.add(path, `Invalid value: ${value}: should be greater than or equal to ${schema.min}`);
    return false;
  }
  if (schema.max !== undefined && value > schema.max) {
    issues.add(path, `Invalid value: ${value}: should be less than or equal to ${schema.max}`);
    return false;
  }
  return schema.rules ? runRules(schema.rules, value, path, issues) : true;
}
