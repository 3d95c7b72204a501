// Kubernetes label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`), parsed once and matched
// against metadata.labels with Kubernetes semantics (`!=` and `notin` match an absent label).
import { InvalidSelectorError } from './errors.ts';

export type Requirement =
  | { key: string; op: 'in'; values: readonly string[] }
  | { key: string; op: 'notin'; values: readonly string[] }
  | { key: string; op: 'exists' }
  | { key: string; op: 'doesnotexist' };

/** A parsed selector: every requirement must hold. The empty selector matches everything. */
export interface LabelSelector {
  readonly requirements: readonly Requirement[];
  matches(labels: Readonly<Record<string, string>> | undefined): boolean;
  toString(): string;
}

// Label keys: optional DNS-subdomain prefix and '/', then a name of [A-Za-z0-9_.-] up to 63.
const KEY = /^(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const VALUE = /^(?:[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

class Scanner {
  pos = 0;
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  skipSpace(): void {
    while (this.pos < this.text.length && /\s/.test(this.text[this.pos]!)) this.pos++;
  }
  done(): boolean {
    this.skipSpace();
    return this.pos >= this.text.length;
  }
  peek(s: string): boolean {
    this.skipSpace();
    return this.text.startsWith(s, this.pos);
  }
  eat(s: string): boolean {
    if (!this.peek(s)) return false;
    this.pos += s.length;
    return true;
  }
  /** A run of characters that can appear in keys or values. */
  word(): string {
    this.skipSpace();
    const start = this.pos;
    while (this.pos < this.text.length && /[A-Za-z0-9_.\-/]/.test(this.text[this.pos]!)) this.pos++;
    return this.text.slice(start, this.pos);
  }
  fail(expected: string): never {
    throw new InvalidSelectorError(this.text, this.pos, expected);
  }
}

function parseKey(s: Scanner): string {
  const start = s.pos;
  const key = s.word();
  if (key === '' || !KEY.test(key)) {
    s.pos = start;
    s.skipSpace();
    s.fail(`a label key${key === '' ? '' : ` (got ${JSON.stringify(key)})`}`);
  }
  return key;
}

function parseValue(s: Scanner): string {
  const start = s.pos;
  const value = s.word();
  if (!VALUE.test(value)) {
    s.pos = start;
    s.skipSpace();
    s.fail(`a label value (got ${JSON.stringify(value)})`);
  }
  return value;
}

function parseSet(s: Scanner): string[] {
  if (!s.eat('(')) s.fail("'('");
  const values: string[] = [];
  if (s.peek(')')) s.fail('at least one value in the set');
  for (;;) {
    values.push(parseValue(s));
    if (s.eat(')')) return values;
    if (!s.eat(',')) s.fail("',' or ')'");
  }
}

function parseRequirement(s: Scanner): Requirement {
  if (s.eat('!')) return { key: parseKey(s), op: 'doesnotexist' };
  const key = parseKey(s);
  if (s.eat('==') || s.eat('=')) return { key, op: 'in', values: [parseValue(s)] };
  if (s.eat('!=')) return { key, op: 'notin', values: [parseValue(s)] };
  // `in`/`notin` need a space before them, which word() already stopped at.
  const save = s.pos;
  const word = s.word();
  if (word === 'in') return { key, op: 'in', values: parseSet(s) };
  if (word === 'notin') return { key, op: 'notin', values: parseSet(s) };
  s.pos = save;
  return { key, op: 'exists' };
}

function render(r: Requirement): string {
  switch (r.op) {
    case 'exists':
      return r.key;
    case 'doesnotexist':
      return `!${r.key}`;
    case 'in':
      return r.values.length === 1 ? `${r.key}=${r.values[0]}` : `${r.key} in (${r.values.join(',')})`;
    case 'notin':
      return r.values.length === 1 ? `${r.key}!=${r.values[0]}` : `${r.key} notin (${r.values.join(',')})`;
  }
}

/** Parses a selector; throws InvalidSelectorError naming the position and what was expected. */
export function parseLabelSelector(text: string): LabelSelector {
  const s = new Scanner(text);
  const requirements: Requirement[] = [];
  if (!s.done()) {
    for (;;) {
      requirements.push(parseRequirement(s));
      if (s.done()) break;
      if (!s.eat(',')) s.fail("',' or the end of the selector");
    }
  }
  return {
    requirements,
    matches(labels) {
      for (const r of requirements) {
        const has = labels !== undefined && Object.hasOwn(labels, r.key);
        const value = has ? labels[r.key] : undefined;
        switch (r.op) {
          case 'exists':
            if (!has) return false;
            break;
          case 'doesnotexist':
            if (has) return false;
            break;
          case 'in':
            if (value === undefined || !r.values.includes(value)) return false;
            break;
          case 'notin':
            if (value !== undefined && r.values.includes(value)) return false;
            break;
        }
      }
      return true;
    },
    toString() {
      return requirements.map(render).join(',');
    },
  };
}

/** Accepts a selector string or an object of exact matches ({app: 'reviews'}). */
export function toLabelSelector(selector: string | Readonly<Record<string, string>> | LabelSelector | undefined): LabelSelector | undefined {
  if (selector === undefined) return undefined;
  if (typeof selector === 'string') return parseLabelSelector(selector);
  if (isLabelSelector(selector)) return selector;
  const parts = Object.entries(selector).map(([k, v]) => `${k}=${v}`);
  return parseLabelSelector(parts.join(','));
}

function isLabelSelector(x: object): x is LabelSelector {
  return 'requirements' in x && 'matches' in x && typeof (x as { matches: unknown }).matches === 'function';
}
