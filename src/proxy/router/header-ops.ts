// Request/response header operations from routes, virtual hosts and route configurations
// (headers_to_add with append actions, headers_to_remove), compiled once. Values may use a
// few of Envoy's command operators (%DOWNSTREAM_REMOTE_ADDRESS%, %REQ(x)%, …).
import type { RawHeader } from '../http/index.ts';
import { ConfigError } from '../config/fields.ts';

/** What the value formatter can see of the request. */
export interface HeaderFormatContext {
  downstreamRemoteAddress: string;
  downstreamRemotePort: number;
  downstreamLocalAddress: string;
  downstreamLocalPort: number;
  upstreamHost?: string | undefined;
  requestHeaders: readonly RawHeader[];
}

type AppendAction = 'APPEND_IF_EXISTS_OR_ADD' | 'ADD_IF_ABSENT' | 'OVERWRITE_IF_EXISTS_OR_ADD' | 'OVERWRITE_IF_EXISTS';

interface AddOp {
  name: string;
  lower: string;
  value: (ctx: HeaderFormatContext) => string;
  action: AppendAction;
  keepEmpty: boolean;
}

export interface HeaderOps {
  remove: ReadonlySet<string>;
  add: readonly AddOp[];
}

const HOP_BY_HOP_PROTECTED = new Set(['host', ':authority', ':path', ':method', ':scheme', 'transfer-encoding', 'content-length', 'connection']);

export function compileHeaderOps(add: unknown, remove: unknown, at: string, response = false): HeaderOps | undefined {
  const adds = (add as { header?: { key?: string; value?: string; rawValue?: string }; append?: boolean; appendAction?: string; keepEmptyValue?: boolean }[] | undefined) ?? [];
  const removes = (remove as string[] | undefined) ?? [];
  if (adds.length === 0 && removes.length === 0) return undefined;
  const field = response ? 'responseHeadersToAdd' : 'requestHeadersToAdd';
  const ops: AddOp[] = adds.map((a, i) => {
    const name = a.header?.key ?? '';
    if (!name || /[\s:]/.test(name.replace(/^:/, ''))) throw new ConfigError(`${at}.${field}[${i}].header.key: invalid header name ${JSON.stringify(name)}`);
    if (HOP_BY_HOP_PROTECTED.has(name.toLowerCase()) && !response) throw new ConfigError(`${at}.${field}[${i}].header.key: ${name} may not be modified`);
    const raw = a.header?.value ?? (a.header?.rawValue !== undefined ? Buffer.from(a.header.rawValue, 'base64').toString('latin1') : '');
    let action: AppendAction = (a.appendAction as AppendAction | undefined) ?? 'APPEND_IF_EXISTS_OR_ADD';
    // The deprecated `append` wrapper wins when set: false means overwrite.
    if (a.append === false) action = 'OVERWRITE_IF_EXISTS_OR_ADD';
    return { name, lower: name.toLowerCase(), value: compileFormat(raw, `${at}.${field}[${i}].header.value`), action, keepEmpty: a.keepEmptyValue === true };
  });
  return { remove: new Set(removes.map((r) => r.toLowerCase())), add: ops };
}

/** Applies ops to a header list, returning a new list (names keep their case and order). */
export function applyHeaderOps(headers: RawHeader[], ops: HeaderOps | undefined, ctx: HeaderFormatContext): RawHeader[] {
  if (!ops) return headers;
  let out = ops.remove.size > 0 ? headers.filter((h) => !ops.remove.has(h.name.toLowerCase())) : headers;
  for (const op of ops.add) {
    const value = op.value(ctx);
    if (value === '' && !op.keepEmpty) continue;
    const exists = out.some((h) => h.name.toLowerCase() === op.lower);
    switch (op.action) {
      case 'ADD_IF_ABSENT':
        if (!exists) out = [...out, { name: op.name, value }];
        break;
      case 'OVERWRITE_IF_EXISTS':
        if (exists) out = [...out.filter((h) => h.name.toLowerCase() !== op.lower), { name: op.name, value }];
        break;
      case 'OVERWRITE_IF_EXISTS_OR_ADD':
        out = [...out.filter((h) => h.name.toLowerCase() !== op.lower), { name: op.name, value }];
        break;
      default:
        out = [...out, { name: op.name, value }];
    }
  }
  return out;
}

function compileFormat(raw: string, at: string): (ctx: HeaderFormatContext) => string {
  if (!raw.includes('%')) return () => raw;
  const parts: ((ctx: HeaderFormatContext) => string)[] = [];
  const re = /%([A-Z_]+)(?:\(([^)]*)\))?%|%%/g;
  let last = 0;
  for (let m = re.exec(raw); m; m = re.exec(raw)) {
    const lit = raw.slice(last, m.index);
    if (lit) parts.push(() => lit);
    last = re.lastIndex;
    if (m[0] === '%%') { parts.push(() => '%'); continue; }
    const op = m[1]!;
    const arg = m[2];
    switch (op) {
      case 'DOWNSTREAM_REMOTE_ADDRESS': parts.push((c) => `${c.downstreamRemoteAddress}:${c.downstreamRemotePort}`); break;
      case 'DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT': parts.push((c) => c.downstreamRemoteAddress); break;
      case 'DOWNSTREAM_LOCAL_ADDRESS': parts.push((c) => `${c.downstreamLocalAddress}:${c.downstreamLocalPort}`); break;
      case 'DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT': parts.push((c) => c.downstreamLocalAddress); break;
      case 'DOWNSTREAM_LOCAL_PORT': parts.push((c) => String(c.downstreamLocalPort)); break;
      case 'UPSTREAM_REMOTE_ADDRESS': parts.push((c) => c.upstreamHost ?? ''); break;
      case 'START_TIME': parts.push(() => new Date().toISOString()); break;
      case 'HOSTNAME': parts.push(() => process.env['HOSTNAME'] ?? ''); break;
      case 'REQ': {
        const name = (arg ?? '').split('?')[0]!.toLowerCase();
        parts.push((c) => c.requestHeaders.find((h) => h.name.toLowerCase() === name)?.value ?? '');
        break;
      }
      default:
        throw new ConfigError(`${at}: unsupported command operator %${op}%`);
    }
  }
  const tail = raw.slice(last);
  if (tail) parts.push(() => tail);
  return (ctx) => parts.map((p) => p(ctx)).join('');
}
