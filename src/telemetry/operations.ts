// The operation of a request (Istio's and Kiali's `request_operation`): the matched route's
// name, else the first matching RouteTemplates template, else a template learned from the path.
// Every bound is explicit, so the label can go on metrics: a per-service budget of operations
// (then `__other__`), a cap on literal values per path position (then `{*}`), on path depth,
// on segment length and on the number of services tracked. Pure: no I/O, used by the proxy
// (metrics label) and by the pilot's access-log sink alike.

/** The operation every request gets once its service's budget is spent. */
export const OTHER_OPERATION = '__other__';
/** Learned placeholders: an identifier, a segment with too many distinct values, the tail past the depth cap. */
export const ID_SEGMENT = '{id}';
export const ANY_SEGMENT = '{*}';
export const REST_SEGMENTS = '{**}';

export const DEFAULT_OPERATION_BUDGET = 200;
export const DEFAULT_LITERALS_PER_SEGMENT = 10;
export const DEFAULT_MAX_SERVICES = 1000;
export const DEFAULT_MAX_DEPTH = 16;
/** A segment longer than this is never kept as a literal. */
export const MAX_LITERAL_LENGTH = 64;

/** One template a user declared (the `RouteTemplates` kind): `/orders/{id}`, `/files/{path...}`. */
export interface OperationTemplate {
  /**
   * The destination service it applies to: a host (`orders.default.svc.cluster.local`) or its
   * leading labels (`orders`, `orders.default`); absent, every service.
   */
  service?: string;
  /** Methods it applies to (upper case); absent, every method. */
  methods?: readonly string[];
  /**
   * `/`-separated segments: a literal, `{name}` / `:name` / `*` for exactly one segment, and as
   * the last segment `{name...}` / `**` for any number of segments (zero included).
   */
  template: string;
  /** The operation it names; default the template itself. */
  name?: string;
}

export interface OperationNamerOptions {
  /** Distinct operations per service (default 200); past it, `__other__`. */
  budget?: number;
  /** Distinct literal values kept at one position under one prefix (default 10); past it, `{*}`. */
  literalsPerSegment?: number;
  /** Services tracked (default 1,000); past it, a new service's requests are all `__other__`. */
  maxServices?: number;
  /** Segments of a learned template (default 16); deeper ones fold into `{**}`. */
  maxDepth?: number;
  templates?: readonly OperationTemplate[];
}

/** What the namer needs from a request. */
export interface OperationRequest {
  /** The destination service (host or cluster), the budget's key. */
  service: string;
  /** The request path; a query or fragment is dropped. */
  path: string;
  method?: string;
  /** The matched route's name, when the user gave it one. */
  routeName?: string;
}

export class OperationTemplateError extends Error {
  override name = 'OperationTemplateError';
}

type Segment = { kind: 'literal'; value: string } | { kind: 'one' } | { kind: 'rest' };

interface CompiledTemplate {
  service: string | undefined;
  methods: ReadonlySet<string> | undefined;
  segments: Segment[];
  name: string;
}

/** A node of a service's learned path tree: the literal values seen at the next position. */
interface PathNode {
  literals: Map<string, PathNode>;
  /** Shared child for `{id}` and `{*}` segments. */
  wild: PathNode | undefined;
}

interface ServiceState {
  /** Learned operations (the budget). */
  operations: Set<string>;
  /** Route names and declared templates seen. */
  declared: Set<string>;
  root: PathNode;
  nodes: number;
}

/** Parses and checks a template; throws OperationTemplateError naming what is wrong. */
export function compileOperationTemplate(t: OperationTemplate): CompiledTemplate {
  const where = `template ${JSON.stringify(t.template)}`;
  if (typeof t.template !== 'string' || !t.template.startsWith('/')) throw new OperationTemplateError(`${where}: must start with '/'`);
  if (t.template.includes('?') || t.template.includes('#')) throw new OperationTemplateError(`${where}: must not contain a query or fragment`);
  const parts = splitPath(t.template);
  const segments: Segment[] = [];
  parts.forEach((p, i) => {
    if (p === '**' || /^\{[A-Za-z_][A-Za-z0-9_]*\.\.\.\}$/.test(p)) {
      if (i !== parts.length - 1) throw new OperationTemplateError(`${where}: '${p}' (any number of segments) must be the last segment`);
      segments.push({ kind: 'rest' });
    } else if (p === '*' || /^\{[A-Za-z_][A-Za-z0-9_]*\}$/.test(p) || /^:[A-Za-z_][A-Za-z0-9_]*$/.test(p)) {
      segments.push({ kind: 'one' });
    } else if (/[{}]/.test(p)) {
      throw new OperationTemplateError(`${where}: segment '${p}' is neither a literal nor a whole-segment placeholder ({name}, :name, *, {name...}, **)`);
    } else {
      segments.push({ kind: 'literal', value: p });
    }
  });
  const name = t.name ?? t.template;
  if (name === '') throw new OperationTemplateError(`${where}: the name must not be empty`);
  return {
    service: t.service === undefined || t.service === '' ? undefined : t.service,
    methods: t.methods === undefined || t.methods.length === 0 ? undefined : new Set(t.methods.map((m) => m.toUpperCase())),
    segments,
    name,
  };
}

/** The path without query and fragment, split into its non-empty segments. */
function splitPath(path: string): string[] {
  let end = path.length;
  const q = path.indexOf('?');
  if (q >= 0) end = q;
  const h = path.indexOf('#');
  if (h >= 0 && h < end) end = h;
  return path.slice(0, end).split('/').filter((s) => s !== '');
}

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const NUMBER = /^[+-]?\d+(?:[.,]\d+)*$/;
const HEX = /^(?:0x)?[0-9a-f]{16,}$/i;
const TOKEN = /^[A-Za-z0-9_.~=+-]{16,}$/;

/**
 * Whether a path segment is an identifier: a number, a UUID, hex of 16 digits or more, or a
 * long token (16 characters or more) with digits in it (ULIDs, base64 keys, `order-20240101-…`).
 */
export function isIdentifierSegment(segment: string): boolean {
  if (NUMBER.test(segment) || UUID.test(segment) || HEX.test(segment)) return true;
  return TOKEN.test(segment) && /\d/.test(segment);
}

function matches(t: CompiledTemplate, parts: readonly string[]): boolean {
  const segs = t.segments;
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i]!;
    if (s.kind === 'rest') return true;
    const p = parts[i];
    if (p === undefined) return false;
    if (s.kind === 'literal' && s.value !== p) return false;
  }
  return parts.length === segs.length;
}

function serviceMatches(rule: string | undefined, service: string): boolean {
  return rule === undefined || rule === service || (service.startsWith(rule) && service.charCodeAt(rule.length) === 46 /* '.' */);
}

/**
 * Names requests by operation with bounded memory. One instance per process (per proxy, per
 * sink); cheap enough for the request path: a template match or a walk of a small tree.
 */
export class OperationNamer {
  readonly budget: number;
  readonly literalsPerSegment: number;
  readonly maxServices: number;
  readonly maxDepth: number;
  private templates: CompiledTemplate[] = [];
  private readonly services = new Map<string, ServiceState>();
  private readonly maxNodes: number;

  constructor(opts: OperationNamerOptions = {}) {
    this.budget = positive('budget', opts.budget ?? DEFAULT_OPERATION_BUDGET);
    this.literalsPerSegment = positive('literalsPerSegment', opts.literalsPerSegment ?? DEFAULT_LITERALS_PER_SEGMENT);
    this.maxServices = positive('maxServices', opts.maxServices ?? DEFAULT_MAX_SERVICES);
    this.maxDepth = positive('maxDepth', opts.maxDepth ?? DEFAULT_MAX_DEPTH);
    // Each admitted operation adds at most maxDepth nodes; refused ones may add a few more.
    this.maxNodes = this.budget * this.maxDepth * 2;
    this.setTemplates(opts.templates ?? []);
  }

  /** Replaces the declared templates (a RouteTemplates change); operations already counted stay counted. */
  setTemplates(templates: readonly OperationTemplate[]): void {
    this.templates = templates.map(compileOperationTemplate);
  }

  /** The operation of one request. */
  name(req: OperationRequest): string {
    const state = this.stateOf(req.service);
    if (state === undefined) return OTHER_OPERATION;
    // route names and declared templates are bounded by the config: always their own operation
    if (req.routeName !== undefined && req.routeName !== '') return this.admitDeclared(state, req.routeName);
    const parts = splitPath(req.path);
    const method = req.method?.toUpperCase();
    for (const t of this.templates) {
      if (!serviceMatches(t.service, req.service)) continue;
      if (t.methods !== undefined && (method === undefined || !t.methods.has(method))) continue;
      if (matches(t, parts)) return this.admitDeclared(state, t.name);
    }
    return this.admit(state, this.learn(state, parts));
  }

  /** The learned template of a path for a service, without counting it (for tests and tools). */
  template(service: string, path: string): string {
    const state = this.stateOf(service);
    return state === undefined ? OTHER_OPERATION : this.learn(state, splitPath(path));
  }

  /** Operations counted so far for a service: declared ones, then learned ones (at most the budget). */
  operationsOf(service: string): string[] {
    const s = this.services.get(service);
    return s === undefined ? [] : [...s.declared, ...s.operations];
  }

  /** Services tracked, operations and tree nodes held: what the memory bound is about. */
  size(): { services: number; operations: number; nodes: number } {
    let operations = 0;
    let nodes = 0;
    for (const s of this.services.values()) {
      operations += s.operations.size + s.declared.size;
      nodes += s.nodes;
    }
    return { services: this.services.size, operations, nodes };
  }

  private stateOf(service: string): ServiceState | undefined {
    let state = this.services.get(service);
    if (state === undefined) {
      if (this.services.size >= this.maxServices) return undefined;
      state = { operations: new Set(), declared: new Set(), root: { literals: new Map(), wild: undefined }, nodes: 1 };
      this.services.set(service, state);
    }
    return state;
  }

  // A learned operation: counted against the service's budget, `__other__` past it.
  private admit(state: ServiceState, operation: string): string {
    if (state.operations.has(operation) || state.declared.has(operation)) return operation;
    if (state.operations.size >= this.budget) return OTHER_OPERATION;
    state.operations.add(operation);
    return operation;
  }

  // A route name or declared template: never refused for learned ones filling the budget first
  // (their number is the config's; at most the budget more are held per service).
  private admitDeclared(state: ServiceState, operation: string): string {
    if (state.declared.has(operation) || state.operations.has(operation)) return operation;
    if (state.declared.size >= this.budget) return OTHER_OPERATION;
    state.declared.add(operation);
    return operation;
  }

  // Walks the service's tree: identifiers become {id}; a literal is kept while its position
  // (under the same prefix) has seen fewer than `literalsPerSegment` values, else it is {*}.
  private learn(state: ServiceState, parts: readonly string[]): string {
    if (parts.length === 0) return '/';
    let node = state.root;
    let out = '';
    const depth = Math.min(parts.length, this.maxDepth);
    for (let i = 0; i < depth; i++) {
      const p = parts[i]!;
      let seg: string;
      let next: PathNode | undefined;
      if (isIdentifierSegment(p)) {
        seg = ID_SEGMENT;
      } else if (p.length <= MAX_LITERAL_LENGTH) {
        next = node.literals.get(p);
        if (next === undefined && node.literals.size < this.literalsPerSegment && state.nodes < this.maxNodes) {
          next = { literals: new Map(), wild: undefined };
          node.literals.set(p, next);
          state.nodes++;
        }
        seg = next === undefined ? ANY_SEGMENT : p;
      } else {
        seg = ANY_SEGMENT;
      }
      if (next === undefined) {
        if (node.wild === undefined && state.nodes < this.maxNodes) {
          node.wild = { literals: new Map(), wild: undefined };
          state.nodes++;
        }
        next = node.wild;
      }
      out += '/' + seg;
      if (next === undefined) {
        // The tree is full: the rest of the path cannot be told apart any more.
        if (i < parts.length - 1) out += '/' + REST_SEGMENTS;
        return out;
      }
      node = next;
    }
    if (parts.length > depth) out += '/' + REST_SEGMENTS;
    return out;
  }
}

function positive(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`OperationNamer: ${name} must be a positive integer, got ${v}`);
  return v;
}
