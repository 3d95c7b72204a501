// A fast reader for the plain YAML that Kubernetes manifests use (block mappings and
// sequences, one-line flow collections, plain and quoted scalars, literal block scalars),
// with YAML 1.2 core-schema scalars. Anything outside that subset makes it give up, and the
// caller falls back to the full `yaml` parser; so results are the full parser's or nothing.

/** Thrown internally when the text leaves the supported subset. */
class Unsupported extends Error {}

function bail(): never {
  throw new Unsupported();
}

interface Line {
  indent: number;
  /** The line without its indentation. */
  text: string;
}

/** A document the fast reader read, or the text (and first line) of one it left to the full parser. */
export type FastDocument = { value: unknown } | { text: string; line: number };

/**
 * Splits a YAML stream into documents and reads each one that is within the subset; the
 * others come back as text, with the line they start at, for the full parser. Returns
 * undefined when the stream itself needs the full parser (directives, '...' markers, CRLF).
 */
export function fastReadYamlDocuments(text: string): FastDocument[] | undefined {
  if (text.includes('\r') || text.charCodeAt(0) === 0xfeff) return undefined;
  // Each document is parsed as soon as it ends, so its lines are short-lived garbage.
  const docs: FastDocument[] = [];
  let current: Line[] = [];
  let explicit = false; // the current document was opened by '---'
  let content = false; // the current document has content lines
  let docStart = 0; // offset of the current document's first line
  let docLine = 0; // and its line number (zero-based)
  let line = 0;
  let pos = 0;
  const finish = (end: number): void => {
    if (!explicit && !content) return;
    const raw = text.slice(docStart, end);
    if (raw.includes('\t')) {
      docs.push({ text: raw, line: docLine });
      return;
    }
    try {
      docs.push({ value: parseDocument(current) });
    } catch (err) {
      if (!(err instanceof Unsupported)) throw err;
      docs.push({ text: raw, line: docLine });
    }
  };
  while (pos < text.length) {
    let eol = text.indexOf('\n', pos);
    if (eol < 0) eol = text.length;
    const l = text.slice(pos, eol);
    const lineStart = pos;
    pos = eol + 1;
    line++;
    if (l.charCodeAt(0) === 45 && l.startsWith('---') && (l.length === 3 || l[3] === ' ')) {
      const rest = l.slice(3).trim();
      if (rest !== '' && !rest.startsWith('#')) return undefined;
      finish(lineStart);
      current = [];
      explicit = true;
      content = false;
      docStart = pos;
      docLine = line;
      continue;
    }
    if (l.startsWith('...') || l.startsWith('%')) return undefined;
    let indent = 0;
    while (l.charCodeAt(indent) === 32) indent++;
    const body = indent === 0 ? l : l.slice(indent);
    if (body !== '' && body[0] !== '#') content = true;
    current.push({ indent, text: body });
  }
  finish(text.length);
  return docs;
}

/**
 * Parses a YAML stream into the JS value of each document (null for empty ones), as
 * `yaml`'s parseAllDocuments + toJS would; undefined when any of it is outside the subset.
 */
export function fastParseYamlStream(text: string): unknown[] | undefined {
  const docs = fastReadYamlDocuments(text);
  if (docs === undefined) return undefined;
  const values: unknown[] = [];
  for (const d of docs) {
    if (!('value' in d)) return undefined;
    values.push(d.value);
  }
  return values;
}

function isBlank(l: Line): boolean {
  return l.text === '' || l.text[0] === '#';
}

function parseDocument(lines: Line[]): unknown {
  const p = new DocumentParser(lines);
  const first = p.next();
  if (first < 0) return null;
  const line = lines[first]!;
  const value = p.parseNode(line.indent, -1);
  if (p.next() >= 0) bail(); // trailing content the grammar did not consume
  return value;
}

class DocumentParser {
  private readonly lines: Line[];
  private pos = 0;

  constructor(lines: Line[]) {
    this.lines = lines;
  }

  /** Index of the next significant line (skipping blanks and comments), or -1. */
  next(): number {
    while (this.pos < this.lines.length && isBlank(this.lines[this.pos]!)) this.pos++;
    return this.pos < this.lines.length ? this.pos : -1;
  }

  /** A block node starting at the next significant line, which has the given indent. */
  parseNode(indent: number, parentIndent: number): unknown {
    const line = this.lines[this.pos]!;
    if (line.indent !== indent || indent <= parentIndent) bail();
    if (isSeqItem(line.text)) return this.parseSequence(indent);
    if (findMappingColon(line.text) >= 0) return this.parseMapping(indent);
    // A lone scalar or flow collection as the whole node.
    this.pos++;
    return this.inlineValue(line.text, parentIndent);
  }

  private parseMapping(indent: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    while (true) {
      const i = this.next();
      if (i < 0) break;
      const line = this.lines[i]!;
      if (line.indent < indent) break;
      if (line.indent > indent || isSeqItem(line.text)) bail();
      const colon = findMappingColon(line.text);
      if (colon < 0) bail();
      const key = parseKey(line.text.slice(0, colon));
      if (Object.prototype.hasOwnProperty.call(out, key)) bail(); // duplicate: let the full parser report it
      const rest = line.text.slice(colon + 1).trimStart();
      this.pos++;
      let value: unknown;
      if (rest === '' || rest[0] === '#') value = this.blockValue(indent, true);
      else value = this.inlineValue(rest, indent);
      if (key === '__proto__') bail();
      out[key] = value;
    }
    return out;
  }

  private parseSequence(indent: number): unknown[] {
    const out: unknown[] = [];
    while (true) {
      const i = this.next();
      if (i < 0) break;
      const line = this.lines[i]!;
      if (line.indent < indent) break;
      if (line.indent > indent) bail();
      if (!isSeqItem(line.text)) break;
      let off = 1;
      while (line.text[off] === ' ') off++;
      const rest = line.text.slice(off);
      if (rest === '' || rest[0] === '#') {
        this.pos++;
        out.push(this.blockValue(indent, false));
        continue;
      }
      if (isSeqItem(rest)) bail(); // "- - x"
      if (findMappingColon(rest) >= 0) {
        // A compact mapping: its first key is on the dash line. Re-read that line as if the
        // dash were indentation.
        const col = indent + off;
        this.lines[i] = { indent: col, text: rest };
        out.push(this.parseMapping(col));
        continue;
      }
      this.pos++;
      out.push(this.inlineValue(rest, indent));
    }
    return out;
  }

  /**
   * The value of a key or item with nothing after its indicator: a more-indented block, or
   * (for a mapping key) a sequence at the same indent, or null.
   */
  private blockValue(indent: number, allowSameIndentSeq: boolean): unknown {
    const i = this.next();
    if (i < 0) return null;
    const line = this.lines[i]!;
    if (line.indent > indent) return this.parseNode(line.indent, indent);
    if (allowSameIndentSeq && line.indent === indent && isSeqItem(line.text)) return this.parseSequence(indent);
    return null;
  }

  /** A value written on the line itself (after "key:" or "- "). */
  private inlineValue(text: string, parentIndent: number): unknown {
    const c = text[0];
    if (c === '|') return this.literalBlock(text, parentIndent);
    let value: unknown;
    if (c === '[' || c === '{') {
      const f = new FlowParser(text);
      value = f.parseValue();
      f.expectEnd();
    } else if (c === '"' || c === "'") {
      const [s, end] = c === '"' ? readDoubleQuoted(text, 0) : readSingleQuoted(text, 0);
      const rest = text.slice(end).trimStart();
      if (rest !== '' && rest[0] !== '#') bail();
      if (text.length > end && text[end] !== ' ') bail();
      value = s;
    } else {
      value = resolvePlain(plainBlockScalar(text));
    }
    // A more-indented line right after an inline value would continue it (a multi-line
    // scalar, or an error): both are left to the full parser.
    const i = this.next();
    if (i >= 0 && this.lines[i]!.indent > parentIndent) bail();
    return value;
  }

  private literalBlock(header: string, parentIndent: number): string {
    const h = header.replace(/\s+#.*$/, '').trimEnd();
    let chomp: 'clip' | 'strip' | 'keep';
    if (h === '|') chomp = 'clip';
    else if (h === '|-') chomp = 'strip';
    else if (h === '|+') chomp = 'keep';
    else bail();
    const body: string[] = [];
    let contentIndent = -1;
    while (this.pos < this.lines.length) {
      const l = this.lines[this.pos]!;
      if (l.text === '') {
        body.push('');
        // Whitespace-only lines longer than the indentation carry content (or are an error
        // before the first line): both are rare, leave them to the full parser.
        if (contentIndent < 0 ? l.indent > parentIndent + 1 : l.indent > contentIndent) bail();
        this.pos++;
        continue;
      }
      if (contentIndent < 0) {
        if (l.indent <= parentIndent) break;
        contentIndent = l.indent;
      }
      if (l.indent < contentIndent) {
        if (l.indent > parentIndent) bail();
        break;
      }
      body.push(' '.repeat(l.indent - contentIndent) + l.text);
      this.pos++;
    }
    // Trailing blank lines taken above belong to the chomping, not to the next node.
    let end = body.length;
    while (end > 0 && body[end - 1] === '') end--;
    const trailing = body.length - end;
    const content = body.slice(0, end).join('\n');
    if (end === 0) return chomp === 'keep' ? '\n'.repeat(trailing) : '';
    if (chomp === 'strip') return content;
    if (chomp === 'clip') return content + '\n';
    return content + '\n' + '\n'.repeat(trailing);
  }
}

function isSeqItem(text: string): boolean {
  return text[0] === '-' && (text.length === 1 || text[1] === ' ');
}

/**
 * Position of the ':' that ends a block mapping key on this line, or -1 when the line is not
 * a "key: value" line. Quoted keys are supported; complex keys are not.
 */
function findMappingColon(text: string): number {
  const c = text[0];
  if (c === '"' || c === "'") {
    const [, end] = c === '"' ? readDoubleQuoted(text, 0) : readSingleQuoted(text, 0);
    let j = end;
    while (text[j] === ' ') j++;
    if (text[j] === ':' && (j + 1 === text.length || text[j + 1] === ' ')) return j;
    return -1;
  }
  if (c === '[' || c === '{' || c === '#' || c === '|' || c === '>') return -1;
  for (let j = 0; j < text.length; j++) {
    const ch = text[j];
    if (ch === ':' && (j + 1 === text.length || text[j + 1] === ' ')) return j;
    if (ch === '#' && j > 0 && text[j - 1] === ' ') return -1;
  }
  return -1;
}

function parseKey(raw: string): string {
  const k = raw.trimEnd();
  if (k === '') bail();
  const c = k[0];
  if (c === '"' || c === "'") {
    const [s, end] = c === '"' ? readDoubleQuoted(k, 0) : readSingleQuoted(k, 0);
    if (end !== k.length) bail();
    return s;
  }
  checkPlainStart(k);
  const v = resolvePlain(k);
  if (typeof v !== 'string') bail(); // null/bool/number keys: rare, leave to the full parser
  return v;
}

const INDICATORS = new Set(['?', '&', '*', '!', '|', '>', '%', '@', '`', '[', ']', '{', '}', ',', '#', "'", '"']);

function checkPlainStart(s: string): void {
  const c = s[0]!;
  if (INDICATORS.has(c)) bail();
  if ((c === '-' || c === ':' || c === '?') && (s.length === 1 || s[1] === ' ')) bail();
}

/** A plain scalar in block context: up to a comment; must not hold ": " or end in ":". */
function plainBlockScalar(text: string): string {
  checkPlainStart(text);
  let end = text.length;
  const hash = text.indexOf(' #');
  if (hash >= 0) end = hash;
  const s = text.slice(0, end).trimEnd();
  if (s.includes(': ') || s.endsWith(':')) bail();
  return s;
}

const NULL_RE = /^(?:~|[Nn]ull|NULL)?$/;
const BOOL_RE = /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/;
const OCT_RE = /^0o[0-7]+$/;
const INT_RE = /^[-+]?[0-9]+$/;
const HEX_RE = /^0x[0-9a-fA-F]+$/;
const NAN_RE = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const EXP_RE = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/;
const FLOAT_RE = /^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/;

/** YAML 1.2 core schema resolution of a plain scalar, as the `yaml` package does it. */
export function resolvePlain(s: string): unknown {
  const c = s.charCodeAt(0);
  // Fast path: most plain scalars in manifests are words that start with a letter.
  const letter = (c >= 97 && c <= 122) || (c >= 65 && c <= 90);
  if (letter) {
    if (c === 110 || c === 78) { if (NULL_RE.test(s)) return null; }
    else if (c === 116 || c === 84 || c === 102 || c === 70) {
      if (BOOL_RE.test(s)) return s[0] === 't' || s[0] === 'T';
    }
    return s;
  }
  if (NULL_RE.test(s)) return null;
  if (INT_RE.test(s)) {
    const n = parseInt(s, 10);
    if (!Number.isSafeInteger(n)) bail(); // the full parser's rounding rules decide
    return n;
  }
  if (OCT_RE.test(s)) return parseInt(s.slice(2), 8);
  if (HEX_RE.test(s)) return parseInt(s.slice(2), 16);
  if (NAN_RE.test(s)) return s.endsWith('nan') || s.endsWith('NaN') || s.endsWith('NAN') ? NaN : s[0] === '-' ? -Infinity : Infinity;
  if (EXP_RE.test(s) || FLOAT_RE.test(s)) return parseFloat(s);
  return s;
}

function readSingleQuoted(text: string, start: number): [string, number] {
  let out = '';
  let j = start + 1;
  while (true) {
    const k = text.indexOf("'", j);
    if (k < 0) bail(); // multi-line: unsupported
    out += text.slice(j, k);
    if (text[k + 1] === "'") {
      out += "'";
      j = k + 2;
      continue;
    }
    return [out, k + 1];
  }
}

const ESCAPES: Readonly<Record<string, string>> = {
  '0': '\0', a: '\x07', b: '\b', t: '\t', n: '\n', v: '\v', f: '\f', r: '\r', e: '\x1b', ' ': ' ',
  '"': '"', '/': '/', '\\': '\\', N: '\u0085', _: '\u00a0', L: '\u2028', P: '\u2029',
};

function readDoubleQuoted(text: string, start: number): [string, number] {
  let out = '';
  let j = start + 1;
  while (j < text.length) {
    const ch = text[j]!;
    if (ch === '"') return [out, j + 1];
    if (ch !== '\\') {
      out += ch;
      j++;
      continue;
    }
    const e = text[j + 1];
    if (e === undefined) bail();
    const simple = ESCAPES[e];
    if (simple !== undefined) {
      out += simple;
      j += 2;
      continue;
    }
    const len = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
    if (len === 0) bail();
    const hex = text.slice(j + 2, j + 2 + len);
    if (hex.length !== len || !/^[0-9a-fA-F]+$/.test(hex)) bail();
    out += String.fromCodePoint(parseInt(hex, 16));
    j += 2 + len;
  }
  return bail(); // unterminated on this line: multi-line quoted scalar
}

/** One-line flow collections: [a, "b", {k: v}] and {k: v, l: [1, 2]}. */
class FlowParser {
  private readonly s: string;
  private i = 0;

  constructor(s: string) {
    this.s = s;
  }

  private ws(): void {
    while (this.s[this.i] === ' ') this.i++;
  }

  expectEnd(): void {
    this.ws();
    if (this.i < this.s.length && this.s[this.i] !== '#') bail();
    if (this.i < this.s.length && this.s[this.i - 1] !== ' ') bail();
  }

  parseValue(): unknown {
    this.ws();
    const c = this.s[this.i];
    if (c === '[') return this.seq();
    if (c === '{') return this.map();
    if (c === '"' || c === "'") {
      const [v, end] = c === '"' ? readDoubleQuoted(this.s, this.i) : readSingleQuoted(this.s, this.i);
      this.i = end;
      return v;
    }
    return resolvePlain(this.plain());
  }

  /** A plain scalar inside a flow collection; ':' anywhere in it is left to the full parser. */
  private plain(): string {
    const start = this.i;
    while (this.i < this.s.length) {
      const ch = this.s[this.i]!;
      if (ch === ',' || ch === ']' || ch === '}') break;
      if (ch === ':' || ch === '#' || ch === '[' || ch === '{') bail();
      this.i++;
    }
    const v = this.s.slice(start, this.i).trimEnd();
    if (v === '') bail();
    checkPlainStart(v);
    return v;
  }

  private seq(): unknown[] {
    this.i++; // [
    const out: unknown[] = [];
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return out;
    }
    while (true) {
      out.push(this.parseValue());
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        this.ws();
        if (this.s[this.i] === ']') bail(); // trailing comma
        continue;
      }
      if (c === ']') {
        this.i++;
        return out;
      }
      bail();
    }
  }

  private map(): Record<string, unknown> {
    this.i++; // {
    const out: Record<string, unknown> = {};
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return out;
    }
    while (true) {
      this.ws();
      let key: string;
      const c = this.s[this.i];
      if (c === '"' || c === "'") {
        const [k, end] = c === '"' ? readDoubleQuoted(this.s, this.i) : readSingleQuoted(this.s, this.i);
        this.i = end;
        key = k;
      } else {
        const start = this.i;
        while (this.i < this.s.length && this.s[this.i] !== ':' && this.s[this.i] !== ',' && this.s[this.i] !== '}') this.i++;
        const raw = this.s.slice(start, this.i).trimEnd();
        if (raw === '') bail();
        checkPlainStart(raw);
        const v = resolvePlain(raw);
        if (typeof v !== 'string') bail();
        key = v;
      }
      this.ws();
      if (this.s[this.i] !== ':' || this.s[this.i + 1] !== ' ') bail();
      this.i += 2;
      if (Object.prototype.hasOwnProperty.call(out, key) || key === '__proto__') bail();
      out[key] = this.parseValue();
      this.ws();
      const d = this.s[this.i];
      if (d === ',') {
        this.i++;
        this.ws();
        if (this.s[this.i] === '}') bail();
        continue;
      }
      if (d === '}') {
        this.i++;
        return out;
      }
      bail();
    }
  }
}

// ---------------------------------------------------------------- writing

const PLAIN_SAFE = /^[A-Za-z0-9_./][A-Za-z0-9_./=+-]*$/;

function scalarYaml(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return '.nan';
    if (!Number.isFinite(v)) return v > 0 ? '.inf' : '-.inf';
    return String(v);
  }
  if (typeof v === 'bigint') return v.toString();
  const s = String(v);
  // Plain only when it reads back as the same string; JSON's double-quoted form is valid YAML.
  if (PLAIN_SAFE.test(s) && resolvePlain(s) === s) return s;
  return JSON.stringify(s);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function emitMapping(o: Record<string, unknown>, indent: string, out: string[]): void {
  for (const k in o) {
    const v = o[k];
    if (v === undefined) continue;
    const key = `${indent}${scalarYaml(k)}:`;
    if (Array.isArray(v)) {
      if (v.length === 0) out.push(`${key} []`);
      else {
        out.push(key);
        emitSequence(v, indent + '  ', out);
      }
    } else if (isPlainObject(v)) {
      if (!hasDefined(v)) out.push(`${key} {}`);
      else {
        out.push(key);
        emitMapping(v, indent + '  ', out);
      }
    } else {
      out.push(`${key} ${scalarYaml(v)}`);
    }
  }
}

function hasDefined(o: Record<string, unknown>): boolean {
  for (const k in o) if (o[k] !== undefined) return true;
  return false;
}

function emitSequence(a: unknown[], indent: string, out: string[]): void {
  for (const v of a) {
    if (Array.isArray(v)) {
      if (v.length === 0) out.push(`${indent}- []`);
      else {
        out.push(`${indent}-`);
        emitSequence(v, indent + '  ', out);
      }
    } else if (isPlainObject(v)) {
      if (!hasDefined(v)) {
        out.push(`${indent}- {}`);
        continue;
      }
      // The first key goes on the dash line: emit the mapping, then splice in the dash.
      const start = out.length;
      emitMapping(v, indent + '  ', out);
      out[start] = `${indent}- ${out[start]!.slice(indent.length + 2)}`;
    } else {
      out.push(`${indent}- ${scalarYaml(v)}`);
    }
  }
}

/**
 * Writes plain data (mappings, sequences, strings, numbers, booleans, null) as block YAML that
 * both this reader and the full parser read back to the same value.
 */
export function emitYaml(value: Record<string, unknown>): string {
  const out: string[] = [];
  emitMapping(value, '', out);
  return out.length === 0 ? '{}\n' : out.join('\n') + '\n';
}
