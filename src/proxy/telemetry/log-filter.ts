// Envoy's access-log filters (AccessLogFilter): which requests a logger writes. The CEL
// extension filter is what Istio's Telemetry `accessLogging.filter.expression` compiles to;
// the common expressions are supported (comparisons of response and request attributes,
// `startsWith`/`endsWith`/`contains`/`matches`, `!`, `&&`, `||`, parentheses) and anything
// else is refused with the expression and what is supported, so a filter never silently
// logs more or less than it says.
import type { ProtoJson } from '../../envoy/index.ts';
import { ConfigError } from '../config/fields.ts';
import type { AccessLogRecord } from './access-log.ts';
import { CEL_ACCESS_LOG_FILTER_TYPE } from '../../envoy/access-log.ts';

export type LogFilter = (r: AccessLogRecord) => boolean;


/** Envoy's response flag bits (CoreResponseFlag), as CEL's `response.flags` (a uint64) holds them. */
const FLAG_BITS: Readonly<Record<string, number>> = {
  LH: 0x1, UH: 0x2, UT: 0x4, LR: 0x8, UR: 0x10, UF: 0x20, UC: 0x40, UO: 0x80, NR: 0x100, DI: 0x200, FI: 0x400,
  RL: 0x800, UAEX: 0x1000, RLSE: 0x2000, DC: 0x4000, URX: 0x8000, SI: 0x10000, IH: 0x20000, DPE: 0x40000,
  UMSDR: 0x80000, RFCF: 0x100000, NFCF: 0x200000, DT: 0x400000, UPE: 0x800000, NC: 0x1000000, OM: 0x2000000,
  DF: 0x4000000, DO: 0x8000000, DR: 0x10000000,
};

/** The bitmask of a record's short flags (`UF,URX`, `-`). */
export function responseFlagBits(flags: string): number {
  if (flags === '' || flags === '-') return 0;
  let bits = 0;
  for (const f of flags.split(',')) bits += FLAG_BITS[f] ?? 0;
  return bits;
}

/** Compiles an AccessLog's `filter` (absent: log everything). */
export function compileLogFilter(v: unknown, at: string): LogFilter | undefined {
  if (v === undefined || v === null) return undefined;
  return compileFilter(v as ProtoJson, at);
}

function compileFilter(f: ProtoJson, at: string): LogFilter {
  const keys = Object.keys(f);
  if (keys.length !== 1) throw new ConfigError(`${at}: an access log filter sets exactly one filter type, got ${keys.length === 0 ? 'none' : keys.join(', ')}`);
  const kind = keys[0]!;
  const body = (f[kind] ?? {}) as ProtoJson;
  const where = `${at}.${kind}`;
  switch (kind) {
    case 'statusCodeFilter': {
      const cmp = compileComparison(body['comparison'], `${where}.comparison`);
      return (r) => cmp(r.responseCode);
    }
    case 'durationFilter': {
      const cmp = compileComparison(body['comparison'], `${where}.comparison`);
      return (r) => cmp(r.durationMs);
    }
    case 'responseFlagFilter': {
      const flags = (body['flags'] as string[] | undefined) ?? [];
      for (const [i, fl] of flags.entries()) if (FLAG_BITS[fl] === undefined) throw new ConfigError(`${where}.flags[${i}]: unknown response flag ${JSON.stringify(fl)}`);
      // no flags listed: any flag at all
      const mask = flags.reduce((m, fl) => m | FLAG_BITS[fl]!, 0);
      return mask === 0 ? (r) => responseFlagBits(r.responseFlags) !== 0 : (r) => (responseFlagBits(r.responseFlags) & mask) !== 0;
    }
    case 'notHealthCheckFilter':
      return () => true; // this proxy answers no health checks on its listeners
    case 'andFilter':
    case 'orFilter': {
      const list = ((body['filters'] as ProtoJson[] | undefined) ?? []).map((x, i) => compileFilter(x, `${where}.filters[${i}]`));
      if (list.length < 2) throw new ConfigError(`${where}.filters: needs at least 2 filters, got ${list.length}`);
      return kind === 'andFilter' ? (r) => list.every((p) => p(r)) : (r) => list.some((p) => p(r));
    }
    case 'extensionFilter': {
      const tc = body['typedConfig'] as ProtoJson | undefined;
      if (tc?.['@type'] !== CEL_ACCESS_LOG_FILTER_TYPE) {
        throw new ConfigError(`${where}.typedConfig: access log filter extension ${JSON.stringify(tc?.['@type'] ?? body['name'] ?? '')} is not supported by this proxy (supported: ${CEL_ACCESS_LOG_FILTER_TYPE})`);
      }
      return compileCel(String(tc['expression'] ?? ''), `${where}.typedConfig.expression`);
    }
    default:
      throw new ConfigError(`${where}: access log filter ${kind} is not supported by this proxy (supported: statusCodeFilter, durationFilter, responseFlagFilter, notHealthCheckFilter, andFilter, orFilter, extensionFilter with a CEL expression)`);
  }
}

function compileComparison(v: unknown, at: string): (n: number) => boolean {
  const c = (v ?? {}) as ProtoJson;
  const value = c['value'] as ProtoJson | undefined;
  if (value?.['runtimeKey'] !== undefined && value['runtimeKey'] !== '') throw new ConfigError(`${at}.value.runtimeKey: runtime values are not supported by this proxy; use defaultValue`);
  const n = Number(value?.['defaultValue'] ?? 0);
  switch (c['op'] ?? 'EQ') {
    case 'EQ': return (x) => x === n;
    case 'GE': return (x) => x >= n;
    case 'LE': return (x) => x <= n;
    case 'NE': return (x) => x !== n;
    default: throw new ConfigError(`${at}.op: unknown comparison ${JSON.stringify(c['op'])}`);
  }
}

// ---------------------------------------------------------------- CEL subset

type Value = number | string | boolean;
type Eval = (r: AccessLogRecord) => Value;
type Kind = 'int' | 'string' | 'bool' | 'flags';

interface Typed {
  kind: Kind;
  ev: Eval;
}

/** The attributes an expression may read (Envoy's attribute names), with their types. */
const ATTRIBUTES: Readonly<Record<string, Typed>> = {
  'response.code': { kind: 'int', ev: (r) => r.responseCode },
  'response.code_details': { kind: 'string', ev: (r) => r.responseCodeDetails },
  'response.flags': { kind: 'flags', ev: (r) => responseFlagBits(r.responseFlags) },
  'response.size': { kind: 'int', ev: (r) => r.bytesSent },
  'request.path': { kind: 'string', ev: (r) => r.path },
  'request.url_path': { kind: 'string', ev: (r) => { const q = r.path.indexOf('?'); return q < 0 ? r.path : r.path.slice(0, q); } },
  'request.method': { kind: 'string', ev: (r) => r.method },
  'request.host': { kind: 'string', ev: (r) => r.authority ?? '' },
  'request.protocol': { kind: 'string', ev: (r) => r.protocol },
  'request.id': { kind: 'string', ev: (r) => r.requestId ?? '' },
  'request.useragent': { kind: 'string', ev: (r) => r.userAgent ?? '' },
  'request.size': { kind: 'int', ev: (r) => r.bytesReceived },
  'request.duration': { kind: 'int', ev: (r) => r.durationMs },
  'source.address': { kind: 'string', ev: (r) => hostOf(r.downstreamRemoteAddress) },
  'source.port': { kind: 'int', ev: (r) => portOf(r.downstreamRemoteAddress) },
  'destination.address': { kind: 'string', ev: (r) => hostOf(r.downstreamLocalAddress) },
  'destination.port': { kind: 'int', ev: (r) => portOf(r.downstreamLocalAddress) },
  'upstream.address': { kind: 'string', ev: (r) => hostOf(r.upstreamHost ?? '') },
  'upstream.port': { kind: 'int', ev: (r) => portOf(r.upstreamHost ?? '') },
  'xds.route_name': { kind: 'string', ev: (r) => r.routeName ?? '' },
  'xds.cluster_name': { kind: 'string', ev: (r) => r.upstreamCluster ?? '' },
  'connection.mtls': { kind: 'bool', ev: (r) => r.downstreamPeerUriSan !== undefined },
};

function hostOf(a: string): string {
  const i = a.lastIndexOf(':');
  return (i < 0 ? a : a.slice(0, i)).replace(/^\[|\]$/g, '');
}

function portOf(a: string): number {
  const i = a.lastIndexOf(':');
  return i < 0 ? 0 : Number(a.slice(i + 1)) || 0;
}

type Token = { t: 'num'; v: number } | { t: 'str'; v: string } | { t: 'id'; v: string } | { t: 'op'; v: string };

function tokenize(src: string, fail: (msg: string) => never): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) { i++; continue; }
    if (/[0-9]/.test(c)) {
      const m = /^(0x[0-9a-fA-F]+|\d+)u?/.exec(src.slice(i))!;
      out.push({ t: 'num', v: Number(m[1]) });
      i += m[0].length;
      continue;
    }
    if (c === '"' || c === '\'') {
      let j = i + 1;
      let s = '';
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\' && j + 1 < src.length) { s += src[j + 1]; j += 2; continue; }
        s += src[j];
        j++;
      }
      if (j >= src.length) fail(`unterminated string at column ${i + 1}`);
      out.push({ t: 'str', v: s });
      i = j + 1;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i))!;
      out.push({ t: 'id', v: m[0] });
      i += m[0].length;
      continue;
    }
    const two = src.slice(i, i + 2);
    if (['&&', '||', '==', '!=', '<=', '>='].includes(two)) { out.push({ t: 'op', v: two }); i += 2; continue; }
    if ('()[].!<>,'.includes(c)) { out.push({ t: 'op', v: c }); i++; continue; }
    fail(`unexpected character ${JSON.stringify(c)} at column ${i + 1}`);
  }
  return out;
}

const SUPPORTED = 'supported: comparisons (== != < <= > >=) of response.code, response.code_details, response.flags, response.size, '
  + 'request.path, request.url_path, request.method, request.host, request.protocol, request.id, request.useragent, request.size, '
  + 'request.duration, request.headers[NAME], source/destination/upstream .address and .port, xds.route_name, xds.cluster_name, '
  + 'connection.mtls; the string methods startsWith, endsWith, contains, matches; !, &&, || and parentheses';

/** Compiles a CEL expression of the supported subset into a predicate; anything else is a ConfigError naming it. */
export function compileCel(expression: string, at: string): LogFilter {
  const fail = (msg: string): never => { throw new ConfigError(`${at}: ${JSON.stringify(expression)}: ${msg} (${SUPPORTED})`); };
  if (expression.trim() === '') fail('empty expression');
  const toks = tokenize(expression, fail);
  let p = 0;
  const peek = (): Token | undefined => toks[p];
  const isOp = (v: string): boolean => { const t = toks[p]; return t !== undefined && t.t === 'op' && t.v === v; };
  const expect = (v: string): void => { if (!isOp(v)) fail(`expected ${JSON.stringify(v)}${p < toks.length ? ` before token ${p + 1}` : ' at the end'}`); p++; };

  const asBool = (x: Typed, what: string): Eval => {
    if (x.kind !== 'bool') fail(`${what} is not a condition (a ${x.kind === 'flags' ? 'flag set' : x.kind})`);
    return x.ev;
  };

  const orExpr = (): Typed => {
    let left = andExpr();
    while (isOp('||')) {
      p++;
      const l = asBool(left, 'the left side of ||');
      const r = asBool(andExpr(), 'the right side of ||');
      left = { kind: 'bool', ev: (rec) => (l(rec) as boolean) || (r(rec) as boolean) };
    }
    return left;
  };
  const andExpr = (): Typed => {
    let left = relation();
    while (isOp('&&')) {
      p++;
      const l = asBool(left, 'the left side of &&');
      const r = asBool(relation(), 'the right side of &&');
      left = { kind: 'bool', ev: (rec) => (l(rec) as boolean) && (r(rec) as boolean) };
    }
    return left;
  };
  const relation = (): Typed => {
    const left = unary();
    const t = peek();
    if (t?.t !== 'op' || !['==', '!=', '<', '<=', '>', '>='].includes(t.v)) return left;
    p++;
    const right = unary();
    return compare(left, t.v, right, fail);
  };
  const unary = (): Typed => {
    if (isOp('!')) {
      p++;
      const x = asBool(unary(), 'the operand of !');
      return { kind: 'bool', ev: (r) => !(x(r) as boolean) };
    }
    return member();
  };
  const member = (): Typed => {
    let x = primary();
    while (isOp('.')) {
      p++;
      const m = peek();
      if (m?.t !== 'id') fail('expected a method name after "."');
      p++;
      const method = (m as { v: string }).v;
      expect('(');
      const argTok = peek();
      if (argTok?.t !== 'str') fail(`${method}() takes one string literal`);
      p++;
      expect(')');
      const arg = (argTok as { v: string }).v;
      if (x.kind !== 'string') fail(`${method}() applies to strings`);
      const s = x.ev;
      switch (method) {
        case 'startsWith': x = { kind: 'bool', ev: (r) => (s(r) as string).startsWith(arg) }; break;
        case 'endsWith': x = { kind: 'bool', ev: (r) => (s(r) as string).endsWith(arg) }; break;
        case 'contains': x = { kind: 'bool', ev: (r) => (s(r) as string).includes(arg) }; break;
        case 'matches': {
          let re: RegExp;
          try { re = new RegExp(arg); } catch (err) { return fail(`matches(): invalid regular expression: ${(err as Error).message}`); }
          x = { kind: 'bool', ev: (r) => re.test(s(r) as string) };
          break;
        }
        default: fail(`unsupported method ${method}()`);
      }
    }
    return x;
  };
  const primary = (): Typed => {
    const t = peek();
    if (t === undefined) return fail('unexpected end of expression');
    if (t.t === 'op' && t.v === '(') {
      p++;
      const x = orExpr();
      expect(')');
      return x;
    }
    p++;
    if (t.t === 'num') return { kind: 'int', ev: () => t.v };
    if (t.t === 'str') return { kind: 'string', ev: () => t.v };
    if (t.t === 'op') return fail(`unexpected ${JSON.stringify(t.v)}`);
    if (t.v === 'true' || t.v === 'false') { const b = t.v === 'true'; return { kind: 'bool', ev: () => b }; }
    if (isOp('(')) return fail(`unsupported function ${t.v}()`);
    // an attribute: ident(.ident)* or request.headers['name']
    let name = t.v;
    const isCall = (t2: Token | undefined): boolean => t2 !== undefined && t2.t === 'op' && t2.v === '(';
    while (isOp('.') && toks[p + 1]?.t === 'id' && !isCall(toks[p + 2])) {
      name += `.${(toks[p + 1] as { v: string }).v}`;
      p += 2;
    }
    if (name === 'request.headers' || name === 'response.headers') {
      if (name === 'response.headers') fail('response.headers is not supported');
      expect('[');
      const h = peek();
      if (h?.t !== 'str') fail('request.headers[...] takes a string literal');
      p++;
      expect(']');
      const header = (h as { v: string }).v.toLowerCase();
      return { kind: 'string', ev: (r) => r.requestHeader(header) ?? '' };
    }
    const attr = ATTRIBUTES[name];
    if (attr === undefined) return fail(`unsupported attribute ${name}`);
    return attr;
  };

  const result = orExpr();
  if (p < toks.length) fail(`unexpected token ${p + 1}`);
  const ev = asBool(result, 'the expression');
  return (r) => ev(r) === true;
}

function compare(left: Typed, op: string, right: Typed, fail: (msg: string) => never): Typed {
  // response.flags: a bit set in Envoy's CEL; compared with a number (0: none) or, as Istio's
  // docs write it, with the access log's flag string ("-" for none, or "NR", "UF,URX").
  if (left.kind === 'flags' || right.kind === 'flags') {
    const [flags, other] = left.kind === 'flags' ? [left, right] : [right, left];
    if (op !== '==' && op !== '!=') fail(`response.flags compares only with == or !=`);
    let eq: (r: AccessLogRecord) => boolean;
    if (other.kind === 'int') {
      eq = (r) => flags.ev(r) === other.ev(r);
    } else if (other.kind === 'string') {
      eq = (r) => {
        const want = other.ev(r) as string;
        return flags.ev(r) === (want === '' || want === '-' ? 0 : responseFlagBits(want));
      };
    } else {
      return fail('response.flags compares with a number or a flag string');
    }
    return { kind: 'bool', ev: op === '==' ? eq : (r) => !eq(r) };
  }
  if (left.kind !== right.kind) fail(`cannot compare a ${left.kind} with a ${right.kind}`);
  if (left.kind === 'bool' && op !== '==' && op !== '!=') fail(`booleans compare only with == or !=`);
  const l = left.ev;
  const r = right.ev;
  switch (op) {
    case '==': return { kind: 'bool', ev: (x) => l(x) === r(x) };
    case '!=': return { kind: 'bool', ev: (x) => l(x) !== r(x) };
    case '<': return { kind: 'bool', ev: (x) => l(x) < r(x) };
    case '<=': return { kind: 'bool', ev: (x) => l(x) <= r(x) };
    case '>': return { kind: 'bool', ev: (x) => l(x) > r(x) };
    default: return { kind: 'bool', ev: (x) => l(x) >= r(x) };
  }
}
