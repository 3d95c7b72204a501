// A fast reader for the plain block-style YAML that config files are almost always written in
// (what kubectl and toYaml print). It gives exactly the values the `yaml` library would, or
// undefined as soon as it meets anything else (anchors, tags, block scalars, flow mappings,
// multi-line scalars, unusual numbers...), and the caller falls back to the full parser.
// The full parser reads ~2,000 small documents a second; this one well over 50,000.

class Unsupported extends Error {}

interface Line {
  indent: number;
  text: string;
}

const NULL_RE = /^(?:~|null|Null|NULL)$/;
const BOOL_RE = /^(?:true|True|TRUE|false|False|FALSE)$/;
const SIMPLE_INT = /^-?(?:0|[1-9][0-9]{0,14})$/;
const SIMPLE_FLOAT = /^-?(?:0|[1-9][0-9]{0,14})\.[0-9]{1,15}$/;
// Anything else the core schema reads as a number (octal, hex, exponents, +sign, .inf, .nan).
const OTHER_NUMBER = /^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;
const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_./-]*$/;

function fail(): never {
  throw new Unsupported();
}

/** Strips a trailing comment (a '#' after whitespace, outside quotes) and trailing spaces. */
function stripComment(s: string): string {
  if (!s.includes('#')) return s.trimEnd();
  let quote = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote !== '') {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = '';
    } else if (c === '"' || c === "'") {
      // Quotes only open a scalar at its start; inside a plain scalar they are ordinary characters.
      const prev = i === 0 ? ' ' : s[i - 1]!;
      if (prev === ' ' || prev === ':' || prev === '-' || prev === '[' || prev === ',') quote = c;
    } else if (c === '#' && (i === 0 || s[i - 1] === ' ' || s[i - 1] === '\t')) {
      return s.slice(0, i).trimEnd();
    }
  }
  return s.trimEnd();
}

function doubleQuoted(s: string): string {
  // s includes both quotes and nothing after them.
  let out = '';
  for (let i = 1; i < s.length - 1; i++) {
    const c = s[i]!;
    if (c === '"') fail();
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = s[++i];
    switch (e) {
      case '\\': out += '\\'; break;
      case '"': out += '"'; break;
      case '/': out += '/'; break;
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '0': out += '\0'; break;
      case 'u': {
        const hex = s.slice(i + 1, i + 5);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail();
        out += String.fromCharCode(parseInt(hex, 16));
        i += 4;
        break;
      }
      default:
        fail();
    }
  }
  return out;
}

function quoted(s: string): string {
  const q = s[0]!;
  // The scalar must close at the very end (trailing content or a multi-line scalar: unsupported).
  if (s.length < 2 || s[s.length - 1] !== q) fail();
  if (q === '"') return doubleQuoted(s);
  const inner = s.slice(1, -1);
  if (inner.replace(/''/g, '').includes("'")) fail();
  return inner.replace(/''/g, "'");
}

/** A scalar (or one-line flow collection) as JSON text. */
function scalar(s: string): string {
  const c = s[0]!;
  if (c === '"' || c === "'") return JSON.stringify(quoted(s));
  if (c === '[' || c === '{') return flow(s);
  // Indicators that start something other than a plain scalar.
  if ('&*!|>%@`?,]}#'.includes(c)) fail();
  if (c === '-' && (s.length === 1 || s[1] === ' ')) fail();
  if (c === ':' && (s.length === 1 || s[1] === ' ')) fail();
  if (s.includes(': ') || s.endsWith(':') || s.includes(' #') || s.includes('\t')) fail();
  if (NULL_RE.test(s)) return 'null';
  if (BOOL_RE.test(s)) return s[0] === 't' || s[0] === 'T' ? 'true' : 'false';
  if (SIMPLE_INT.test(s)) return s === '-0' ? fail() : s;
  if (SIMPLE_FLOAT.test(s)) return s;
  if (OTHER_NUMBER.test(s)) fail();
  return JSON.stringify(s);
}

/** Splits the inside of a one-line flow collection at commas; fails on nesting or quoted commas. */
function flowItems(inner: string): string[] {
  if (/[[\]{}]/.test(inner)) fail();
  if (inner.trim() === '') return [];
  const items = inner.split(',').map((x) => x.trim());
  // A trailing comma is allowed ("[a, b,]"); an empty item elsewhere is not.
  if (items.at(-1) === '') items.pop();
  for (const item of items) {
    if (item === '') fail();
    if ((item[0] === '"' || item[0] === "'") && (item.length < 2 || item[item.length - 1] !== item[0])) fail(); // a comma inside quotes
  }
  return items;
}

/** The flow collections people write inline, on one line: [a, "b", 3] and {k: v, k2: v2} of scalars. */
function flow(s: string): string {
  const open = s[0];
  const close = open === '[' ? ']' : '}';
  if (s[s.length - 1] !== close) fail();
  const items = flowItems(s.slice(1, -1));
  if (open === '[') {
    return `[${items.map((item) => {
      if (item.includes(':')) fail();
      return scalar(item);
    }).join(',')}]`;
  }
  const keys = new Set<string>();
  const parts: string[] = [];
  for (const item of items) {
    const entry = splitEntry(item);
    if (entry === undefined) fail();
    const [key, value] = entry;
    if (keys.has(key)) fail();
    keys.add(key);
    if (value.includes(':')) fail();
    parts.push(`${JSON.stringify(key)}:${value === '' ? 'null' : scalar(value)}`);
  }
  return `{${parts.join(',')}}`;
}

function isSeqItem(text: string): boolean {
  return text === '-' || text.startsWith('- ');
}

/** Splits "key: value" / "key:" into key and value; undefined when the line is not a mapping entry. */
function splitEntry(text: string): [string, string] | undefined {
  let keyEnd: number;
  let key: string;
  if (text[0] === '"' || text[0] === "'") {
    const close = text.indexOf(text[0], 1);
    if (close < 0) fail();
    keyEnd = close + 1;
    if (text[keyEnd] !== ':') fail();
    key = quoted(text.slice(0, keyEnd));
  } else {
    keyEnd = text.indexOf(':');
    if (keyEnd < 0) return undefined;
    key = text.slice(0, keyEnd);
    if (!PLAIN_KEY.test(key) || NULL_RE.test(key) || BOOL_RE.test(key)) fail();
  }
  const after = text.slice(keyEnd + 1);
  if (after !== '' && after[0] !== ' ') fail(); // "a:b" is a plain scalar in YAML; not worth supporting
  if (key === '__proto__') fail();
  return [key, after.trim()];
}

class Reader {
  private i = 0;
  private readonly lines: Line[];
  constructor(lines: Line[]) {
    this.lines = lines;
  }

  document(): string {
    if (this.lines.length === 0) return 'null';
    const first = this.lines[0]!;
    const v = this.block(first.indent);
    if (this.i !== this.lines.length) fail();
    return v;
  }

  private block(indent: number): string {
    const line = this.lines[this.i]!;
    if (line.indent !== indent) fail();
    if (isSeqItem(line.text)) return this.sequence(indent);
    if (splitEntry(line.text) !== undefined) return this.mapping(indent);
    // A lone scalar as a whole block: only as a document of its own (one line).
    this.i++;
    return scalar(line.text);
  }

  private sequence(indent: number): string {
    const out: string[] = [];
    while (this.i < this.lines.length) {
      const line = this.lines[this.i]!;
      if (line.indent < indent) break;
      if (line.indent > indent) fail();
      if (!isSeqItem(line.text)) break; // back to the mapping this sequence is a value of
      const rest = line.text === '-' ? '' : line.text.slice(2);
      const pad = rest.length - rest.trimStart().length;
      const item = rest.trimStart();
      if (item === '') {
        this.i++;
        const next = this.lines[this.i];
        if (next !== undefined && next.indent > indent) out.push(this.block(next.indent));
        else out.push('null');
      } else if (isSeqItem(item)) {
        fail(); // "- - x"
      } else if (item[0] !== '"' && item[0] !== "'" && item[0] !== '[' && item[0] !== '{' && splitEntry(item) !== undefined) {
        // "- key: value": a mapping whose first entry shares the dash's line.
        this.lines[this.i] = { indent: indent + 2 + pad, text: item };
        out.push(this.mapping(indent + 2 + pad));
      } else if ((item[0] === '"' || item[0] === "'") && /^(["']).*\1:(?: |$)/.test(item)) {
        this.lines[this.i] = { indent: indent + 2 + pad, text: item };
        out.push(this.mapping(indent + 2 + pad));
      } else {
        out.push(scalar(item));
        this.i++;
      }
    }
    return `[${out.join(',')}]`;
  }

  private mapping(indent: number): string {
    const keys = new Set<string>();
    const out: string[] = [];
    while (this.i < this.lines.length) {
      const line = this.lines[this.i]!;
      if (line.indent < indent) break;
      if (line.indent > indent) fail();
      if (isSeqItem(line.text)) break; // a sequence at the parent key's indent ends this mapping
      const entry = splitEntry(line.text);
      if (entry === undefined) fail();
      const [key, value] = entry;
      if (keys.has(key)) fail(); // duplicate key: the full parser reports it
      keys.add(key);
      this.i++;
      if (value !== '') {
        out.push(`${JSON.stringify(key)}:${scalar(value)}`);
        continue;
      }
      const next = this.lines[this.i];
      if (next !== undefined && (next.indent > indent || (next.indent === indent && isSeqItem(next.text)))) {
        out.push(`${JSON.stringify(key)}:${next.indent === indent ? this.sequence(indent) : this.block(next.indent)}`);
      } else {
        out.push(`${JSON.stringify(key)}:null`);
      }
    }
    return `{${out.join(',')}}`;
  }
}

/** The documents of a YAML stream as JS values; see readSimpleYamlAsJson. */
export function readSimpleYaml(text: string): unknown[] | undefined {
  return readSimpleYamlAsJson(text)?.map((d) => JSON.parse(d) as unknown);
}

/**
 * The documents of a YAML stream, each as JSON text ("null" for empty documents), or undefined
 * when the text uses anything beyond plain block style and must go to the full parser.
 */
export function readSimpleYamlAsJson(text: string): string[] | undefined {
  if (text.charCodeAt(0) === 0xfeff) return undefined;
  const docs: Line[][] = [];
  let current: Line[] = [];
  let sawMarker = false;
  try {
    const rawLines = text.split('\n');
    for (let n = 0; n < rawLines.length; n++) {
      let raw = rawLines[n]!;
      if (raw.endsWith('\r')) raw = raw.slice(0, -1);
      if (raw.startsWith('---') && (raw.length === 3 || raw[3] === ' ' || raw[3] === '\t')) {
        if (stripComment(raw.slice(3)).trim() !== '') fail(); // content after the marker
        if (sawMarker || current.length > 0) docs.push(current);
        current = [];
        sawMarker = true;
        continue;
      }
      if (raw.startsWith('...') || raw.startsWith('%')) fail();
      const body = raw.trimStart();
      if (body === '' || body[0] === '#') continue;
      const indentText = raw.slice(0, raw.length - body.length);
      if (indentText.includes('\t')) fail();
      const content = stripComment(body);
      if (content === '') continue;
      current.push({ indent: indentText.length, text: content });
    }
    if (current.length > 0 || sawMarker || docs.length === 0) docs.push(current);
    // A stream with nothing in it has no documents at all.
    if (docs.length === 1 && docs[0]!.length === 0 && !sawMarker) return [];
    return docs.map((lines) => new Reader(lines).document());
  } catch (err) {
    if (err instanceof Unsupported) return undefined;
    throw err;
  }
}
