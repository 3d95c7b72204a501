// ConfigError: one problem in one config document, naming the file, the document's
// index, the resource (Kind/namespace/name) and the field path, like istioctl does. Values
// an error repeats are cut to MAX_QUOTED_CHARS, so a 1 MB annotation or host name costs a
// log line, a CLI error or a status page 128 characters, not a megabyte.

export interface ConfigErrorInit {
  file?: string;
  index?: number;
  /** Kind/namespace/name; empty when the document has no usable kind or name. */
  resource: string;
  /** Field path in the document, e.g. spec.http[0].route[1].weight; empty for the whole document. */
  path: string;
  /** What is wrong and what is expected. */
  detail: string;
}

/**
 * One problem in one document. `resource`, `path` and `detail` hold the text as given, except
 * that an over-long value in them (a quoted string, a name, a bracketed key, an unbroken run
 * of characters) is cut to MAX_QUOTED_CHARS and followed by `… (N bytes)`.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
  file?: string;
  index?: number;
  resource: string;
  path: string;
  detail: string;

  constructor(init: ConfigErrorInit) {
    const bounded: ConfigErrorInit = {
      resource: init.resource.split('/').map(abbreviate).join('/'),
      path: abbreviatePath(init.path),
      detail: abbreviateText(init.detail),
    };
    if (init.file !== undefined) bounded.file = init.file;
    if (init.index !== undefined) bounded.index = init.index;
    super(formatConfigError(bounded));
    if (init.file !== undefined) this.file = init.file;
    if (init.index !== undefined) this.index = init.index;
    this.resource = bounded.resource;
    this.path = bounded.path;
    this.detail = bounded.detail;
  }

  /** One line: "file:index Kind/ns/name: spec.x.y: what is expected". */
  override toString(): string {
    return this.message;
  }
}

function formatConfigError(e: ConfigErrorInit): string {
  let where = '';
  if (e.file !== undefined) where = e.index !== undefined ? `${e.file}:${e.index}` : e.file;
  const parts: string[] = [];
  if (where !== '' && e.resource !== '') parts.push(`${where} ${e.resource}`);
  else if (where !== '') parts.push(where);
  else if (e.resource !== '') parts.push(e.resource);
  if (e.path !== '') parts.push(e.path);
  parts.push(e.detail);
  // One error per line, always: a multi-line detail (e.g. a YAML excerpt) is folded.
  return parts.join(': ').replace(/\s*\n\s*/g, ' ');
}

/** The most characters of one value an error message repeats. */
export const MAX_QUOTED_CHARS = 128;

/** `value` whole when short; else its first MAX_QUOTED_CHARS characters, "…" and its size in bytes. */
export function abbreviate(value: string): string {
  return abbreviateTo(value, MAX_QUOTED_CHARS);
}

/**
 * abbreviate() with another bound: `value` whole when at most `maxChars` characters, else its
 * first `maxChars` characters, "…" and its size in bytes. For text kept whole where it can be,
 * such as a proxy's NACK message.
 */
export function abbreviateTo(value: string, maxChars: number): string {
  if (value.length <= maxChars) return value;
  return `${cut(value, maxChars)}… (${Buffer.byteLength(value)} bytes)`;
}

/** `value` JSON-quoted as errors quote values, cut like abbreviate() when long: `"aaa…"… (N bytes)`. */
export function quote(value: string): string {
  if (value.length <= MAX_QUOTED_CHARS) return JSON.stringify(value);
  return `${JSON.stringify(cut(value))}… (${Buffer.byteLength(value)} bytes)`;
}

function cut(value: string, max = MAX_QUOTED_CHARS): string {
  const head = value.slice(0, max);
  // Never split a surrogate pair.
  const last = head.charCodeAt(head.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? head.slice(0, -1) : head;
}

/** A field path with long map keys cut: `metadata.labels[aaa…… (N bytes)]`. */
function abbreviatePath(path: string): string {
  if (path.length <= MAX_QUOTED_CHARS) return path;
  return path.replace(/\[([^\]]*)\]/g, (whole, key: string) => (key.length > MAX_QUOTED_CHARS ? `[${abbreviate(key)}]` : whole));
}

/**
 * Free text with every long value cut: JSON-quoted strings (as the checks quote values) and,
 * outside quotes, unbroken runs of non-space characters. A linear scan, not a regex, so a
 * megabyte of input costs one pass.
 */
export function abbreviateText(text: string): string {
  if (text.length <= MAX_QUOTED_CHARS) return text;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === '"') {
      const end = closingQuote(text, i);
      if (end > 0) {
        const literal = text.slice(i, end + 1);
        out += literal.length > MAX_QUOTED_CHARS + 2 ? quote(unquote(literal)) : literal;
        i = end + 1;
        continue;
      }
    }
    if (/\s/.test(ch)) {
      out += ch;
      i++;
      continue;
    }
    let j = i;
    while (j < text.length && text[j] !== '"' && !/\s/.test(text[j]!)) j++;
    if (j === i) j++; // an unmatched quote
    out += abbreviate(text.slice(i, j));
    i = j;
  }
  return out;
}

/** Index of the quote closing the string literal that opens at `start`, or -1. */
function closingQuote(text: string, start: number): number {
  for (let k = start + 1; k < text.length; k++) {
    const c = text.charCodeAt(k);
    if (c === 0x5c) k++; // backslash escapes the next character
    else if (c === 0x22) return k;
    else if (c === 0x0a) return -1;
  }
  return -1;
}

function unquote(literal: string): string {
  try {
    const v: unknown = JSON.parse(literal);
    if (typeof v === 'string') return v;
  } catch {
    // not JSON: keep the characters between the quotes
  }
  return literal.slice(1, -1);
}
