// Proxy-Wasm filters for the tests, written in AssemblyScript against the public SDK
// (@solo-io/proxy-runtime) and compiled here with `assemblyscript`. Builds are cached in the OS
// temp directory by the hash of source, flags and compiler and SDK versions.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');
const require = createRequire(path.join(ROOT, 'package.json'));
const CACHE = path.join(os.tmpdir(), 'sextant-wasm-filters');

const PRELUDE = `export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, FilterDataStatusValues, FilterTrailersStatusValues,
  stream_context, send_local_response, HeaderPair, Headers, GrpcStatusValues, LogLevelValues, log, Counter,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, get_property, set_tick_period_milliseconds, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";
// The plugin configuration, read by Root. The SDK's own onConfigure passes the configuration's
// size where the ABI wants a pointer for it (the host then writes at that address) and frees a
// stale buffer when the configuration is empty, so the filters read it themselves.
@external("env", "proxy_get_buffer_bytes")
declare function get_buffer_raw(typ: i32, start: u32, length: u32, ptr: usize, size: usize): u32;
const cfgSlots = new ArrayBuffer(8);
let configuration: string = "";
function readConfiguration(size: u32): bool {
  if (size == 0) return true;
  const p = changetype<usize>(cfgSlots);
  if (get_buffer_raw(7, 0, size, p, p + 4) != 0) return false;
  configuration = String.UTF8.decode(changetype<ArrayBuffer>(load<u32>(p)));
  return true;
}
class Root extends RootContext {
  onConfigure(size: u32): bool { return readConfiguration(size); }
}
`;

/** The filters the tests use, by name: AssemblyScript source after PRELUDE. */
export const FILTER_SOURCES = {
  /** Does nothing: the cost of a WASM filter as such. */
  empty: `
class EmptyRoot extends Root {
  createContext(id: u32): Context { return new Context(id, this); }
}
registerRootContext((id: u32) => { return new EmptyRoot(id); }, "empty");
`,
  /** Adds x-wasm-request to requests and x-wasm-filter (its configuration, or "added") to responses. */
  header: `
class HeaderRoot extends Root {
  createContext(id: u32): Context { return new AddHeader(id, this); }
}
class AddHeader extends Context {
  constructor(id: u32, root: HeaderRoot) { super(id, root); }
  onRequestHeaders(n: u32, eos: bool): FilterHeadersStatusValues {
    stream_context.headers.request.add("x-wasm-request", "seen");
    return FilterHeadersStatusValues.Continue;
  }
  onResponseHeaders(n: u32, eos: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-wasm-filter", configuration == "" ? "added" : configuration);
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32) => { return new HeaderRoot(id); }, "add_header");
`,
  /** Answers 403 for paths starting with its configuration's "denyPrefix"; refuses a configuration without one. */
  deny: `
class DenyRoot extends RootContext {
  prefix: string = "";
  onConfigure(size: u32): bool {
    // no configuration: nothing to deny by, refused
    if (size == 0 || !readConfiguration(size)) return false;
    const cfg = configuration;
    const key = cfg.indexOf("\\"denyPrefix\\"");
    if (key < 0) return false;
    const colon = cfg.indexOf(":", key);
    const open = cfg.indexOf("\\"", colon);
    const close = cfg.indexOf("\\"", open + 1);
    if (colon < 0 || open < 0 || close < 0) return false;
    this.prefix = cfg.substring(open + 1, close);
    return true;
  }
  createContext(id: u32): Context { return new Deny(id, this); }
}
class Deny extends Context {
  constructor(id: u32, root: DenyRoot) { super(id, root); }
  onRequestHeaders(n: u32, eos: bool): FilterHeadersStatusValues {
    const root = changetype<DenyRoot>(this.root_context);
    const path = stream_context.headers.request.get(":path");
    if (path.startsWith(root.prefix)) {
      const h: Headers = [];
      h.push(new HeaderPair(String.UTF8.encode("x-denied-by"), String.UTF8.encode("wasm")));
      send_local_response(403, "wasm_denied", String.UTF8.encode("denied by policy\\n"), h, GrpcStatusValues.PermissionDenied);
      return FilterHeadersStatusValues.StopIteration;
    }
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32) => { return new DenyRoot(id); }, "deny");
`,
  /**
   * Rewrites bodies: the request's "ping" becomes "pong!!" (headers held until the body is in,
   * so the proxy sets its length), the response gets a prefix and "hello" upper-cased (its
   * content-length removed, as the ABI's body-changing filters do).
   */
  body: `
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(typ: i32, start: u32, length: u32, data: usize, size: usize): u32;
class BodyRoot extends Root {
  createContext(id: u32): Context { return new Rewrite(id, this); }
}
class Rewrite extends Context {
  constructor(id: u32, root: BodyRoot) { super(id, root); }
  onRequestHeaders(n: u32, eos: bool): FilterHeadersStatusValues {
    return eos ? FilterHeadersStatusValues.Continue : FilterHeadersStatusValues.StopIteration;
  }
  onRequestBody(size: usize, eos: bool): FilterDataStatusValues {
    if (!eos) return FilterDataStatusValues.StopIterationAndBuffer;
    const body = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.HttpRequestBody, 0, size as u32));
    const out = String.UTF8.encode(body.split("ping").join("pong!!"));
    proxy_set_buffer_bytes(0, 0, size as u32, changetype<usize>(out), out.byteLength);
    return FilterDataStatusValues.Continue;
  }
  onResponseHeaders(n: u32, eos: bool): FilterHeadersStatusValues {
    stream_context.headers.response.remove("content-length");
    return FilterHeadersStatusValues.Continue;
  }
  onResponseBody(size: usize, eos: bool): FilterDataStatusValues {
    if (!eos) return FilterDataStatusValues.StopIterationAndBuffer;
    const body = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, size as u32));
    const out = String.UTF8.encode("rewritten: " + body.split("hello").join("HELLO"));
    proxy_set_buffer_bytes(1, 0, size as u32, changetype<usize>(out), out.byteLength);
    return FilterDataStatusValues.Continue;
  }
}
registerRootContext((id: u32) => { return new BodyRoot(id); }, "body");
`,
  /** Traps (unreachable) on the path /trap; marks other requests. */
  trap: `
class TrapRoot extends Root {
  createContext(id: u32): Context { return new Trap(id, this); }
}
class Trap extends Context {
  constructor(id: u32, root: TrapRoot) { super(id, root); }
  onRequestHeaders(n: u32, eos: bool): FilterHeadersStatusValues {
    if (stream_context.headers.request.get(":path") == "/trap") unreachable();
    stream_context.headers.request.add("x-wasm-trap", "passed");
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32) => { return new TrapRoot(id); }, "trap");
`,
  /** Loops forever on the path /loop. */
  loop: `
let spins: u64 = 0;
class LoopRoot extends Root {
  createContext(id: u32): Context { return new Loop(id, this); }
}
class Loop extends Context {
  constructor(id: u32, root: LoopRoot) { super(id, root); }
  onRequestHeaders(n: u32, eos: bool): FilterHeadersStatusValues {
    if (stream_context.headers.request.get(":path") == "/loop") {
      while (spins != 0xffffffffffffffff) spins = spins * 3 + 1;
    }
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32) => { return new LoopRoot(id); }, "loop");
`,
  /** Calls proxy_http_call, which the host does not provide. */
  httpcall: `
@external("env", "proxy_http_call")
declare function proxy_http_call(up: usize, upLen: usize, h: usize, hLen: usize, b: usize, bLen: usize, t: usize, tLen: usize, timeout: u32, token: usize): u32;
class CallRoot extends Root {
  createContext(id: u32): Context { return new Call(id, this); }
}
class Call extends Context {
  constructor(id: u32, root: CallRoot) { super(id, root); }
  onRequestHeaders(n: u32, eos: bool): FilterHeadersStatusValues {
    proxy_http_call(0, 0, 0, 0, 0, 0, 0, 0, 1000, 0);
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32) => { return new CallRoot(id); }, "httpcall");
`,
  /**
   * Host features: a counter per request, a tick every 20 ms counted in shared data, the path
   * from the request.path property and the tick count as request headers, a log line each.
   */
  features: `
@external("env", "proxy_get_shared_data")
declare function get_shared(k: usize, kLen: usize, v: usize, vLen: usize, cas: usize): u32;
@external("env", "proxy_set_shared_data")
declare function set_shared(k: usize, kLen: usize, v: usize, vLen: usize, cas: u32): u32;
let ticks: u32 = 0;
const slots = new ArrayBuffer(16);
function readShared(key: string): string {
  const k = String.UTF8.encode(key);
  const p = changetype<usize>(slots);
  if (get_shared(changetype<usize>(k), k.byteLength, p, p + 4, p + 8) != 0) return "";
  const size = load<u32>(p + 4);
  if (size == 0) return "";
  return String.UTF8.decode(changetype<ArrayBuffer>(load<u32>(p)));
}
function writeShared(key: string, value: string): void {
  const k = String.UTF8.encode(key);
  const v = String.UTF8.encode(value);
  set_shared(changetype<usize>(k), k.byteLength, changetype<usize>(v), v.byteLength, 0);
}
class FeaturesRoot extends RootContext {
  requests: Counter | null = null;
  onConfigure(size: u32): bool {
    if (!readConfiguration(size)) return false;
    this.requests = new Counter("wasm_features_requests");
    set_tick_period_milliseconds(20);
    return true;
  }
  onTick(): void {
    ticks++;
    writeShared("ticks", ticks.toString());
  }
  createContext(id: u32): Context { return new Features(id, this); }
}
class Features extends Context {
  constructor(id: u32, root: FeaturesRoot) { super(id, root); }
  onRequestHeaders(n: u32, eos: bool): FilterHeadersStatusValues {
    const root = changetype<FeaturesRoot>(this.root_context);
    const c = root.requests;
    if (c !== null) c.increment(1);
    const path = String.UTF8.decode(get_property("request.path"));
    stream_context.headers.request.add("x-wasm-path", path);
    stream_context.headers.request.add("x-wasm-ticks", readShared("ticks"));
    stream_context.headers.request.add("x-wasm-config", configuration);
    log(LogLevelValues.info, "features saw " + path);
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32) => { return new FeaturesRoot(id); }, "features");
`,
} as const;

export type FilterName = keyof typeof FILTER_SOURCES;

interface Asc {
  ready: Promise<void>;
  main(argv: string[], options: { stdout: unknown; stderr: unknown }, cb: (err: Error | null) => void): void;
  createMemoryStream(): { toString(): string };
}

let asc: Asc | undefined;

function versions(): string {
  const v = (p: string): string => (JSON.parse(readFileSync(require.resolve(`${p}/package.json`), 'utf8')) as { version: string }).version;
  return `${v('assemblyscript')}+${v('@solo-io/proxy-runtime')}`;
}

/**
 * The module of filter `name` (optimized when asked: the benchmark measures what people ship),
 * built once per content and cached across runs.
 */
export async function buildFilter(name: FilterName, opts: { optimize?: boolean } = {}): Promise<Buffer> {
  const source = PRELUDE + FILTER_SOURCES[name];
  const flags = ['--use', 'abort=abort_proc_exit', ...(opts.optimize === true ? ['-O3'] : [])];
  const key = createHash('sha256').update(JSON.stringify([source, flags, versions()])).digest('hex').slice(0, 24);
  const out = path.join(CACHE, `${name}-${key}.wasm`);
  if (existsSync(out)) return readFileSync(out);
  mkdirSync(CACHE, { recursive: true });
  const dir = mkdtempSync(path.join(os.tmpdir(), `sextant-asc-${name}-`));
  try {
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
    mkdirSync(path.join(dir, 'assembly'));
    writeFileSync(path.join(dir, 'assembly', 'index.ts'), source);
    asc ??= require('assemblyscript/cli/asc') as Asc;
    await asc.ready;
    const stderr = asc.createMemoryStream();
    const built = path.join(dir, 'filter.wasm');
    await new Promise<void>((resolve, reject) => {
      asc!.main(['assembly/index.ts', '--baseDir', dir, '-b', built, ...flags], { stdout: asc!.createMemoryStream(), stderr }, (err) => {
        if (err) reject(new Error(`assemblyscript could not build filter ${name}: ${err.message}\n${stderr.toString()}`));
        else resolve();
      });
    });
    // written whole, then moved into place: a concurrent test never reads half a module
    const tmp = `${out}.${process.pid}.tmp`;
    writeFileSync(tmp, readFileSync(built));
    renameSync(tmp, out);
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
