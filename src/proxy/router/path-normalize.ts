// Envoy's request path normalization (the connection manager's `normalize_path`,
// `merge_slashes` and `path_with_escaped_slashes_action`), applied before routing so that
// routes, and whatever reads the path after them, see the path the upstream will get.

/** What to do with `%2F`/`%5C` (escaped slash and backslash) in a path; Envoy's enum names. */
export type EscapedSlashesAction = 'KEEP_UNCHANGED' | 'REJECT_REQUEST' | 'UNESCAPE_AND_REDIRECT' | 'UNESCAPE_AND_FORWARD';

export const ESCAPED_SLASHES_ACTIONS: readonly EscapedSlashesAction[] = ['KEEP_UNCHANGED', 'REJECT_REQUEST', 'UNESCAPE_AND_REDIRECT', 'UNESCAPE_AND_FORWARD'];

/** One connection manager's settings (Istio's `pathNormalization: BASE` is `normalizePath` alone). */
export interface PathNormalization {
  /** RFC 3986 normalization as Envoy does it (Chromium's path canonicalizer). */
  readonly normalizePath: boolean;
  /** `//` collapses to `/`, after normalization. */
  readonly mergeSlashes: boolean;
  readonly escapedSlashes: EscapedSlashesAction;
}

/** Envoy's defaults when the connection manager sets none of the three fields. */
export const NO_PATH_NORMALIZATION: PathNormalization = { normalizePath: false, mergeSlashes: false, escapedSlashes: 'KEEP_UNCHANGED' };

/** The path cannot be normalized (`%00`), or has escaped slashes under REJECT_REQUEST: Envoy answers 400. */
export interface PathRejected { readonly kind: 'reject' }

/** UNESCAPE_AND_REDIRECT unescaped a slash: Envoy answers 307 with `location`, the normalized path and query. */
export interface PathRedirect { readonly kind: 'redirect'; readonly location: string }

export const PATH_REJECTED: PathRejected = Object.freeze({ kind: 'reject' });

/**
 * The origin-form target (path, then query) to route and forward, for a target that starts
 * with `/`. The same string when nothing changes: an already-normal path costs one scan
 * and no allocation. The query is kept as it came; a `#fragment` is dropped (as Istio's
 * sidecars do: Envoy strips it with `http_reject_path_with_fragment` off).
 */
export function normalizeTarget(target: string, n: PathNormalization): string | PathRejected | PathRedirect {
  if (!n.normalizePath && !n.mergeSlashes && n.escapedSlashes === 'KEEP_UNCHANGED') {
    const hash = target.indexOf('#');
    return hash < 0 ? target : target.slice(0, hash);
  }
  if (!mayChange(target, n.mergeSlashes)) return target;
  return normalizeSlow(target, n);
}

// Character classes of Chromium's path canonicalizer (url_canon_path.cc), which Envoy's
// normalize_path uses. SPECIAL marks the characters that need a closer look.
const PASS = 0;
const SPECIAL = 1;
const ESCAPE_BIT = 2;
const ESCAPE = ESCAPE_BIT | SPECIAL; // percent-encoded in the output
const UNESCAPE = 4; // unreserved: a percent-encoded one is decoded
const INVALID_BIT = 8;
const INVALID = INVALID_BIT | SPECIAL; // the path is rejected

const PATH_CHAR = new Uint8Array(256).fill(ESCAPE);
for (const c of "!$&'()*+,/:;=@[]") PATH_CHAR[c.charCodeAt(0)] = PASS;
for (const c of '-_~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz') PATH_CHAR[c.charCodeAt(0)] = UNESCAPE;
PATH_CHAR[0x2e] = SPECIAL; // '.'
PATH_CHAR[0x00] = INVALID;

// What the fast scan stops at: anything the canonicalizer would rewrite, and '#'. A '.'
// matters only after a '/', a '/' after a '/' only when merging.
const SUSPECT = new Uint8Array(256);
for (let c = 0; c < 256; c++) if ((PATH_CHAR[c]! & SPECIAL) !== 0 && c !== 0x2e) SUSPECT[c] = 1;

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
const PERCENT = 0x25;
const QUESTION = 0x3f;

/** False when the normalizer would certainly hand back `target` itself. */
function mayChange(target: string, merge: boolean): boolean {
  let prev = 0;
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c === QUESTION) return target.indexOf('#', i + 1) >= 0;
    if (c > 0xff || SUSPECT[c] === 1) return true;
    if (prev === SLASH && (c === DOT || (c === SLASH && merge))) return true;
    prev = c;
  }
  return false;
}

// Envoy's ConnectionManagerUtility::maybeNormalizePath, in its order: fragment, escaped
// slashes, normalize_path, merge_slashes.
function normalizeSlow(target: string, n: PathNormalization): string | PathRejected | PathRedirect {
  const hash = target.indexOf('#');
  const t = hash < 0 ? target : target.slice(0, hash);
  const q = t.indexOf('?');
  let path = q < 0 ? t : t.slice(0, q);
  const query = q < 0 ? '' : t.slice(q);
  let redirect = false;
  if (n.escapedSlashes !== 'KEEP_UNCHANGED' && path.indexOf('%') >= 0) {
    const unescaped = path.replace(ESCAPED_SLASH, unescapeSlash);
    if (unescaped !== path) {
      if (n.escapedSlashes === 'REJECT_REQUEST') return PATH_REJECTED;
      redirect = n.escapedSlashes === 'UNESCAPE_AND_REDIRECT';
      path = unescaped;
    }
  }
  if (n.normalizePath) {
    const canonical = canonicalizePath(path);
    if (canonical === undefined) return PATH_REJECTED;
    path = canonical;
  }
  if (n.mergeSlashes) path = mergeSlashes(path);
  const out = path + query;
  if (redirect) return { kind: 'redirect', location: out };
  return out === target ? target : out;
}

const ESCAPED_SLASH = /%2f|%5c/gi;
const unescapeSlash = (m: string): string => (m.charCodeAt(2) === 0x66 || m.charCodeAt(2) === 0x46 ? '/' : '\\');

/**
 * Envoy's merge_slashes (PathTransformer::mergeSlashes): empty segments dropped, a leading
 * and a trailing slash kept. Like Envoy's, it leaves `//` alone (both ends are slashes).
 */
export function mergeSlashes(path: string): string {
  if (path.indexOf('//') < 0) return path;
  const segments = path.split('/').filter((s) => s !== '');
  return (path.charCodeAt(0) === SLASH ? '/' : '') + segments.join('/') + (path.charCodeAt(path.length - 1) === SLASH ? '/' : '');
}

/**
 * Chromium's path canonicalization as Envoy vendors it (`chromium_url::CanonicalizePath`):
 * dot segments removed (`.`, `..`, `%2e` spelled any case, never above the root), `\` read
 * as `/`, escaped unreserved characters decoded, characters not allowed in a path escaped,
 * other escapes kept exactly (hex case included, so `%2F` stays). Undefined when the path
 * holds a NUL, raw or as `%00` (Envoy rejects it).
 */
export function canonicalizePath(spec: string): string | undefined {
  const end = spec.length;
  const out: number[] = [];
  if (end === 0) return '/';
  if (!isSlash(spec.charCodeAt(0))) out.push(SLASH);
  let ok = true;
  // the index in `out` of the last '%' that began no valid escape (see nestedEscape)
  let lastInvalidPercent = -Infinity;
  for (let i = 0; i < end; i++) {
    const c = spec.charCodeAt(i);
    if (c > 0xff) return undefined; // targets are latin1 (one char per byte)
    const flags = PATH_CHAR[c]!;
    if ((flags & SPECIAL) === 0) {
      out.push(c);
      continue;
    }
    const dotLen = dotAt(spec, i, end);
    if (dotLen > 0) {
      if (out.length > 0 && out[out.length - 1] === SLASH) {
        const after = i + dotLen;
        let consumed = 0;
        if (after === end) {
          // "." at the end: the current directory
        } else if (isSlash(spec.charCodeAt(after))) {
          consumed = 1;
        } else {
          const second = dotAt(spec, after, end);
          const afterSecond = after + second;
          if (second > 0 && (afterSecond === end || isSlash(spec.charCodeAt(afterSecond)))) {
            consumed = afterSecond === end ? second : second + 1;
            backUpToPreviousSlash(out);
          } else {
            out.push(DOT); // a name that starts with a dot
            i += dotLen - 1;
            continue;
          }
        }
        i += dotLen + consumed - 1;
      } else {
        out.push(DOT);
        i += dotLen - 1;
      }
    } else if (c === BACKSLASH) {
      out.push(SLASH);
    } else if (c === PERCENT) {
      const value = i + 3 <= end ? hexPair(spec.charCodeAt(i + 1), spec.charCodeAt(i + 2)) : -1;
      if (value < 0) {
        lastInvalidPercent = out.length;
        out.push(PERCENT);
        continue;
      }
      const vflags = PATH_CHAR[value]!;
      if ((vflags & UNESCAPE) !== 0) {
        out.push(value);
        if (lastInvalidPercent >= out.length - 3) nestedEscape(spec, i + 3, end, lastInvalidPercent, out);
      } else {
        out.push(PERCENT, spec.charCodeAt(i + 1), spec.charCodeAt(i + 2));
        if ((vflags & INVALID_BIT) !== 0) ok = false;
      }
      i += 2;
    } else {
      if ((flags & INVALID_BIT) !== 0) ok = false;
      out.push(PERCENT, HEX[c >> 4]!, HEX[c & 15]!);
    }
  }
  return ok ? Buffer.from(out).toString('latin1') : undefined;
}

const HEX = Array.from('0123456789ABCDEF', (h) => h.charCodeAt(0));

function isSlash(c: number): boolean {
  return c === SLASH || c === BACKSLASH;
}

// 1 for '.', 3 for "%2e"/"%2E", else 0.
function dotAt(spec: string, i: number, end: number): number {
  const c = spec.charCodeAt(i);
  if (c === DOT) return 1;
  if (c === PERCENT && i + 3 <= end && spec.charCodeAt(i + 1) === 0x32) {
    const e = spec.charCodeAt(i + 2);
    if (e === 0x65 || e === 0x45) return 3;
  }
  return 0;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

function hexPair(a: number, b: number): number {
  const h = hexDigit(a);
  const l = hexDigit(b);
  return h < 0 || l < 0 ? -1 : (h << 4) | l;
}

// `out` ends with '/': drop the last segment, never the root slash.
function backUpToPreviousSlash(out: number[]): void {
  let i = out.length - 1;
  if (i === 0) return;
  i--;
  while (out[i] !== SLASH && i > 0) i--;
  out.length = i + 1;
}

/**
 * Chromium's CheckForNestedEscapes: a '%' that began no escape, followed by characters just
 * decoded, must not become an escape in the output ("%%30%30" would read as "%00" to
 * whoever decodes next), so that '%' is written as "%25".
 */
function nestedEscape(spec: string, next: number, end: number, percentAt: number, out: number[]): void {
  const length = out.length;
  const lastDecoded = out[length - 1]!;
  const appendNext = percentAt === length - 2;
  if (appendNext) {
    if (next === end || spec.charCodeAt(next) >= 0x80) return;
    out.push(spec.charCodeAt(next));
  }
  if (percentAt + 3 <= out.length && hexPair(out[percentAt + 1]!, out[percentAt + 2]!) >= 0) {
    if (!appendNext) out.push(out[percentAt + 1]!);
    out[percentAt + 1] = 0x32;
    out[percentAt + 2] = 0x35;
    out.push(lastDecoded);
  } else if (appendNext) {
    out.length = length;
  }
}
