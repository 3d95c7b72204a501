// The host side of the Proxy-Wasm ABI: every function a module may import, with its signature
// (checked against the module's import at load) and its implementation on a VM. A module that
// imports anything not in HOST_FUNCTIONS is refused at load with the names (vm.ts), so a host
// call is either implemented here or the filter never runs: none is a silent no-op.
import { randomFillSync } from 'node:crypto';
import { BufferType, Errno, LogLevel, MapType, MetricType, Status } from './abi.ts';
import { BodyBuffer, HeaderMap, parseSerializedMap } from './header-map.ts';
import type { ContextHandler, WasmVm } from './vm.ts';
import { ProcExit } from './vm.ts';
import type { SharedData, SharedQueues, WasmMetrics } from './shared.ts';

/** A local reply a plugin asked for (proxy_send_local_response). */
export interface LocalResponse {
  status: number;
  details: string;
  body: Buffer;
  headers: [string, string][];
  /** The gRPC status to answer a gRPC request with; undefined when the plugin left it unset (-1). */
  grpcStatus: number | undefined;
}

/** A context as host calls see it: maps, buffers and stream control where it has them. */
export interface HostContext extends ContextHandler {
  /** The map of `type`: a HeaderMap, null when not available in this context now, undefined when unknown. */
  map(type: number): HeaderMap | null | undefined;
  /** The HTTP body buffer of `type`, null when not available now. */
  body(type: number): BodyBuffer | null;
  sendLocalResponse(r: LocalResponse): number;
  continueStream(type: number): number;
  closeStream(type: number): number;
  /** A stream property (request.*, response.*, source.*, …), or undefined. */
  property(path: readonly string[]): Uint8Array | undefined;
  setProperty(path: readonly string[], value: Uint8Array): number;
}

/** What a VM needs from the plugin and the proxy it runs in. */
export interface VmServices {
  readonly pluginName: string;
  readonly rootId: string;
  readonly vmId: string;
  readonly vmConfiguration: Uint8Array;
  readonly pluginConfiguration: Uint8Array;
  /** The VM's environment (vm_config.environment_variables). */
  readonly env: readonly (readonly [string, string])[];
  log(level: number, message: string): void;
  logLevel(): number;
  setTickPeriod(ms: number): void;
  readonly shared: SharedData;
  readonly queues: SharedQueues;
  readonly metrics: WasmMetrics;
  /** Properties of the proxy (node.*, plugin_*), or undefined. */
  nodeProperty(path: readonly string[]): Uint8Array | undefined;
  /** A queue the plugin registered got an item. */
  queueReady(queueId: number): void;
  /** proxy_done: the effective context finished what it deferred after proxy_on_done returned false. */
  done(ctx: ContextHandler): number;
}

type HostFn = (vm: WasmVm, ...args: (number | bigint)[]) => number | undefined;

interface HostFunction {
  signature: string;
  impl: HostFn;
}

const I = 'i32';
const L = 'i64';
const sig = (params: string[], result = I): string => `(${params.join(',')})->${result}`;
const i32s = (n: number): string[] => Array.from({ length: n }, () => I);

/** Largest log line kept from a plugin (longer ones are cut). */
const MAX_LOG_BYTES = 16 * 1024;
/** Largest body a plugin may make a buffer (proxy_set_buffer_bytes). */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

const current = (vm: WasmVm): HostContext | undefined => vm.effective as HostContext | undefined;

const num = (v: number | bigint): number => Number(v) >>> 0;

function str(vm: WasmVm, ptr: number | bigint, len: number | bigint): string | undefined {
  return vm.readString(num(ptr), num(len));
}

function latin1(vm: WasmVm, ptr: number | bigint, len: number | bigint): string | undefined {
  const b = vm.read(num(ptr), num(len));
  return b === undefined ? undefined : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

/** A property path: NUL-separated tokens (the ABI), or dot-separated as some SDKs write them. */
function propertyPath(raw: string): string[] {
  const parts = raw.split('\u0000').filter((p) => p !== '');
  return parts.length === 1 && parts[0]!.includes('.') ? parts[0]!.split('.') : parts;
}

function mapOf(vm: WasmVm, type: number): HeaderMap | number {
  const ctx = current(vm);
  if (ctx === undefined) return Status.BAD_ARGUMENT;
  const m = ctx.map(type);
  if (m === undefined) return Status.BAD_ARGUMENT;
  if (m === null) return Status.NOT_FOUND;
  return m;
}

const env: Record<string, HostFunction> = {
  proxy_log: {
    signature: sig(i32s(3)),
    impl: (vm, level, ptr, size) => {
      const l = Number(level);
      if (!(l >= LogLevel.TRACE && l <= LogLevel.CRITICAL)) return Status.BAD_ARGUMENT;
      if (!vm.inBounds(num(ptr), num(size))) return Status.INVALID_MEMORY_ACCESS;
      // below the log level nothing is read: SDKs log a lot at debug
      if (l < vm.services.logLevel()) return Status.OK;
      vm.services.log(l, str(vm, ptr, Math.min(num(size), MAX_LOG_BYTES))!);
      return Status.OK;
    },
  },
  proxy_get_log_level: {
    signature: sig([I]),
    impl: (vm, ret) => (vm.writeU32(num(ret), vm.services.logLevel()) ? Status.OK : Status.INVALID_MEMORY_ACCESS),
  },
  proxy_get_current_time_nanoseconds: {
    signature: sig([I]),
    impl: (vm, ret) => (vm.writeU64(num(ret), nowNanos()) ? Status.OK : Status.INVALID_MEMORY_ACCESS),
  },
  proxy_set_tick_period_milliseconds: {
    signature: sig([I]),
    impl: (vm, ms) => {
      vm.services.setTickPeriod(num(ms));
      return Status.OK;
    },
  },
  proxy_get_buffer_bytes: {
    signature: sig(i32s(5)),
    impl: (vm, type, start, max, retPtr, retSize) => {
      const data = bufferData(vm, Number(type));
      if (typeof data === 'number') return data;
      const s = num(start);
      const m = num(max);
      if (s > data.length) return Status.BAD_ARGUMENT;
      const slice = data.subarray(s, Math.min(data.length, s + m));
      // as Envoy's host: nothing is written for no bytes (SDKs pass a size, not a pointer, when it is 0)
      if (slice.length === 0) return Status.OK;
      return vm.giveBytes(slice, num(retPtr), num(retSize)) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
  },
  proxy_get_buffer_status: {
    signature: sig(i32s(3)),
    impl: (vm, type, retLen, retFlags) => {
      const data = bufferData(vm, Number(type));
      if (typeof data === 'number') return data;
      return vm.writeU32(num(retLen), data.length) && vm.writeU32(num(retFlags), 0) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
  },
  proxy_set_buffer_bytes: {
    signature: sig(i32s(5)),
    impl: (vm, type, start, size, ptr, len) => {
      const t = Number(type);
      if (t === BufferType.VM_CONFIGURATION || t === BufferType.PLUGIN_CONFIGURATION) return Status.BAD_ARGUMENT;
      if (!(t >= 0 && t <= BufferType.FOREIGN_FUNCTION_ARGUMENTS)) return Status.BAD_ARGUMENT;
      const buf = current(vm)?.body(t) ?? null;
      if (buf === null || !buf.writable) return Status.NOT_FOUND;
      const value = vm.read(num(ptr), num(len));
      if (value === undefined) return Status.INVALID_MEMORY_ACCESS;
      if (buf.data.length - Math.min(num(size), buf.data.length) + value.length > MAX_BODY_BYTES) return Status.BAD_ARGUMENT;
      buf.set(num(start), num(size), value);
      return Status.OK;
    },
  },
  proxy_get_header_map_size: {
    signature: sig(i32s(2)),
    impl: (vm, type, ret) => {
      const m = mapOf(vm, Number(type));
      if (typeof m === 'number') return m;
      return vm.writeU32(num(ret), m.serializedSize()) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
  },
  proxy_get_header_map_pairs: {
    signature: sig(i32s(3)),
    impl: (vm, type, retPtr, retSize) => {
      const m = mapOf(vm, Number(type));
      if (typeof m === 'number') return m;
      return vm.giveBytes(m.serialize(), num(retPtr), num(retSize)) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
  },
  proxy_set_header_map_pairs: {
    signature: sig(i32s(3)),
    impl: (vm, type, ptr, size) => {
      const m = mapOf(vm, Number(type));
      if (typeof m === 'number') return m;
      if (!m.writable) return Status.BAD_ARGUMENT;
      const raw = vm.read(num(ptr), num(size));
      if (raw === undefined) return Status.INVALID_MEMORY_ACCESS;
      const pairs = parseSerializedMap(raw);
      if (pairs === undefined) return Status.PARSE_FAILURE;
      return m.setAll(pairs) ? Status.OK : Status.BAD_ARGUMENT;
    },
  },
  proxy_get_header_map_value: {
    signature: sig(i32s(5)),
    impl: (vm, type, kPtr, kLen, retPtr, retSize) => {
      const m = mapOf(vm, Number(type));
      if (typeof m === 'number') return m;
      const key = latin1(vm, kPtr, kLen);
      if (key === undefined) return Status.INVALID_MEMORY_ACCESS;
      const v = m.get(key);
      if (v === undefined) return Status.NOT_FOUND;
      return vm.giveBytes(Buffer.from(v, 'latin1'), num(retPtr), num(retSize)) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
  },
  proxy_add_header_map_value: {
    signature: sig(i32s(5)),
    impl: (vm, type, kPtr, kLen, vPtr, vLen) => editMap(vm, Number(type), kPtr, kLen, vPtr, vLen, 'add'),
  },
  proxy_replace_header_map_value: {
    signature: sig(i32s(5)),
    impl: (vm, type, kPtr, kLen, vPtr, vLen) => editMap(vm, Number(type), kPtr, kLen, vPtr, vLen, 'replace'),
  },
  proxy_remove_header_map_value: {
    signature: sig(i32s(3)),
    impl: (vm, type, kPtr, kLen) => {
      const m = mapOf(vm, Number(type));
      if (typeof m === 'number') return m;
      if (!m.writable) return Status.BAD_ARGUMENT;
      const key = latin1(vm, kPtr, kLen);
      if (key === undefined) return Status.INVALID_MEMORY_ACCESS;
      m.remove(key);
      return Status.OK;
    },
  },
  proxy_continue_stream: {
    signature: sig([I]),
    impl: (vm, type) => current(vm)?.continueStream(Number(type)) ?? Status.BAD_ARGUMENT,
  },
  proxy_close_stream: {
    signature: sig([I]),
    impl: (vm, type) => current(vm)?.closeStream(Number(type)) ?? Status.BAD_ARGUMENT,
  },
  proxy_send_local_response: {
    signature: sig(i32s(8)),
    impl: (vm, status, dPtr, dLen, bPtr, bLen, hPtr, hLen, grpc) => {
      const ctx = current(vm);
      if (ctx === undefined) return Status.BAD_ARGUMENT;
      const details = str(vm, dPtr, dLen);
      const body = vm.read(num(bPtr), num(bLen));
      const rawHeaders = vm.read(num(hPtr), num(hLen));
      if (details === undefined || body === undefined || rawHeaders === undefined) return Status.INVALID_MEMORY_ACCESS;
      const headers = parseSerializedMap(rawHeaders);
      if (headers === undefined) return Status.PARSE_FAILURE;
      const g = Number(grpc) | 0;
      return ctx.sendLocalResponse({ status: num(status), details, body: Buffer.from(body), headers, grpcStatus: g >= 0 && g <= 16 ? g : undefined });
    },
  },
  // Removed from the ABI in 0.2.0 but still declared by SDKs: the route is chosen after the
  // WASM filters of each point of the chain have run, so there is no cached route to clear.
  proxy_clear_route_cache: {
    signature: sig([]),
    impl: () => Status.OK,
  },
  proxy_get_shared_data: {
    signature: sig(i32s(5)),
    impl: (vm, kPtr, kLen, retPtr, retSize, retCas) => {
      const key = str(vm, kPtr, kLen);
      if (key === undefined) return Status.INVALID_MEMORY_ACCESS;
      const e = vm.services.shared.get(key);
      if (e === undefined) return Status.NOT_FOUND;
      if (!vm.inBounds(num(retCas), 4)) return Status.INVALID_MEMORY_ACCESS;
      if (!vm.giveBytes(e.value, num(retPtr), num(retSize))) return Status.INVALID_MEMORY_ACCESS;
      vm.writeU32(num(retCas), e.cas);
      return Status.OK;
    },
  },
  proxy_set_shared_data: {
    signature: sig(i32s(5)),
    impl: (vm, kPtr, kLen, vPtr, vLen, cas) => {
      const key = str(vm, kPtr, kLen);
      const value = vm.read(num(vPtr), num(vLen));
      if (key === undefined || value === undefined) return Status.INVALID_MEMORY_ACCESS;
      const r = vm.services.shared.set(key, value, num(cas));
      return r === 'ok' ? Status.OK : r === 'cas_mismatch' ? Status.CAS_MISMATCH : Status.INTERNAL_FAILURE;
    },
  },
  proxy_register_shared_queue: {
    signature: sig(i32s(3)),
    impl: (vm, nPtr, nLen, ret) => {
      const name = str(vm, nPtr, nLen);
      if (name === undefined) return Status.INVALID_MEMORY_ACCESS;
      if (!vm.inBounds(num(ret), 4)) return Status.INVALID_MEMORY_ACCESS;
      const id = vm.services.queues.register(vm.services.vmId, name, (q) => vm.services.queueReady(q));
      if (id === undefined) return Status.INTERNAL_FAILURE;
      vm.writeU32(num(ret), id);
      return Status.OK;
    },
  },
  proxy_resolve_shared_queue: {
    signature: sig(i32s(5)),
    impl: (vm, vPtr, vLen, nPtr, nLen, ret) => {
      const vmId = str(vm, vPtr, vLen);
      const name = str(vm, nPtr, nLen);
      if (vmId === undefined || name === undefined) return Status.INVALID_MEMORY_ACCESS;
      const id = vm.services.queues.resolve(vmId, name);
      if (id === undefined) return Status.NOT_FOUND;
      return vm.writeU32(num(ret), id) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
  },
  proxy_enqueue_shared_queue: {
    signature: sig(i32s(3)),
    impl: (vm, id, vPtr, vLen) => {
      const value = vm.read(num(vPtr), num(vLen));
      if (value === undefined) return Status.INVALID_MEMORY_ACCESS;
      const r = vm.services.queues.enqueue(num(id), value);
      return r === 'ok' ? Status.OK : r === 'not_found' ? Status.NOT_FOUND : Status.INTERNAL_FAILURE;
    },
  },
  proxy_dequeue_shared_queue: {
    signature: sig(i32s(3)),
    impl: (vm, id, retPtr, retSize) => {
      const r = vm.services.queues.dequeue(num(id));
      if (r === 'not_found') return Status.NOT_FOUND;
      if (r === 'empty') return Status.EMPTY;
      return vm.giveBytes(r, num(retPtr), num(retSize)) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
  },
  proxy_define_metric: {
    signature: sig(i32s(4)),
    impl: (vm, type, nPtr, nLen, ret) => {
      const t = Number(type);
      const kind = t === MetricType.COUNTER ? 'counter' : t === MetricType.GAUGE ? 'gauge' : t === MetricType.HISTOGRAM ? 'histogram' : undefined;
      if (kind === undefined) return Status.BAD_ARGUMENT;
      const name = str(vm, nPtr, nLen);
      if (name === undefined) return Status.INVALID_MEMORY_ACCESS;
      if (name === '' || !vm.inBounds(num(ret), 4)) return name === '' ? Status.BAD_ARGUMENT : Status.INVALID_MEMORY_ACCESS;
      const id = vm.services.metrics.define(kind, name);
      if (id === undefined) return Status.BAD_ARGUMENT;
      vm.writeU32(num(ret), id);
      return Status.OK;
    },
  },
  proxy_increment_metric: {
    signature: sig([I, L]),
    impl: (vm, id, delta) => {
      const r = vm.services.metrics.increment(num(id), BigInt(delta));
      return r === 'ok' ? Status.OK : r === 'not_found' ? Status.NOT_FOUND : Status.BAD_ARGUMENT;
    },
  },
  proxy_record_metric: {
    signature: sig([I, L]),
    impl: (vm, id, value) => (vm.services.metrics.record(num(id), BigInt.asUintN(64, BigInt(value))) === 'ok' ? Status.OK : Status.NOT_FOUND),
  },
  proxy_get_metric: {
    signature: sig(i32s(2)),
    impl: (vm, id, ret) => {
      const r = vm.services.metrics.get(num(id));
      if (r === 'not_found') return Status.NOT_FOUND;
      if (r === 'bad_argument') return Status.BAD_ARGUMENT;
      return vm.writeU64(num(ret), r) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
  },
  proxy_get_property: {
    signature: sig(i32s(4)),
    impl: (vm, pPtr, pLen, retPtr, retSize) => {
      const raw = str(vm, pPtr, pLen);
      if (raw === undefined) return Status.INVALID_MEMORY_ACCESS;
      const path = propertyPath(raw);
      const v = current(vm)?.property(path) ?? vm.services.nodeProperty(path);
      if (v === undefined) return Status.NOT_FOUND;
      return vm.giveBytes(v, num(retPtr), num(retSize)) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    },
  },
  proxy_set_property: {
    signature: sig(i32s(4)),
    impl: (vm, pPtr, pLen, vPtr, vLen) => {
      const raw = str(vm, pPtr, pLen);
      const value = vm.read(num(vPtr), num(vLen));
      if (raw === undefined || value === undefined) return Status.INVALID_MEMORY_ACCESS;
      return current(vm)?.setProperty(propertyPath(raw), value) ?? Status.NOT_FOUND;
    },
  },
  proxy_set_effective_context: {
    signature: sig([I]),
    impl: (vm, id) => {
      const ctx = vm.contexts.get(num(id));
      if (ctx === undefined) return Status.BAD_ARGUMENT;
      vm.effective = ctx;
      return Status.OK;
    },
  },
  proxy_done: {
    signature: sig([]),
    impl: (vm) => (vm.effective === undefined ? Status.NOT_FOUND : vm.services.done(vm.effective)),
  },
  // No foreign functions are registered in this host: every name is NOT_FOUND, as the ABI says.
  proxy_call_foreign_function: {
    signature: sig(i32s(6)),
    impl: () => Status.NOT_FOUND,
  },
  // Only meaningful in HTTP and gRPC call callbacks, which this host never makes (proxy_http_call
  // and the gRPC calls are not provided: a module importing them is refused).
  proxy_get_status: {
    signature: sig(i32s(3)),
    impl: () => Status.NOT_FOUND,
  },
};

function editMap(vm: WasmVm, type: number, kPtr: number | bigint, kLen: number | bigint, vPtr: number | bigint, vLen: number | bigint, op: 'add' | 'replace'): number {
  const m = mapOf(vm, type);
  if (typeof m === 'number') return m;
  if (!m.writable) return Status.BAD_ARGUMENT;
  const key = latin1(vm, kPtr, kLen);
  const value = latin1(vm, vPtr, vLen);
  if (key === undefined || value === undefined) return Status.INVALID_MEMORY_ACCESS;
  return (op === 'add' ? m.add(key, value) : m.replace(key, value)) ? Status.OK : Status.BAD_ARGUMENT;
}

/** The bytes of buffer `type` in the effective context, or the status to return. */
function bufferData(vm: WasmVm, type: number): Uint8Array | number {
  if (type === BufferType.VM_CONFIGURATION) return vm.services.vmConfiguration;
  if (type === BufferType.PLUGIN_CONFIGURATION) return vm.services.pluginConfiguration;
  if (!(type >= 0 && type <= BufferType.FOREIGN_FUNCTION_ARGUMENTS)) return Status.BAD_ARGUMENT;
  const b = current(vm)?.body(type) ?? null;
  return b === null ? Status.NOT_FOUND : b.data;
}

function nowNanos(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

const STDOUT = 1;
const STDERR = 2;

/** The WASI functions the ABI lists for wasm32-wasi modules; no filesystem, no arguments. */
function wasi(): Record<string, HostFunction> {
  return {
    fd_write: {
      signature: sig(i32s(4)),
      impl: (vm, fd, iovs, iovsLen, retWritten) => {
        const f = Number(fd);
        if (f !== STDOUT && f !== STDERR) return Errno.BADF;
        let text = '';
        let written = 0;
        for (let i = 0; i < num(iovsLen); i++) {
          const iov = vm.read(num(iovs) + i * 8, 8);
          if (iov === undefined) return Errno.FAULT;
          const dv = new DataView(iov.buffer, iov.byteOffset, 8);
          const part = vm.readString(dv.getUint32(0, true), dv.getUint32(4, true));
          if (part === undefined) return Errno.FAULT;
          if (text.length < MAX_LOG_BYTES) text += part;
          written += dv.getUint32(4, true);
        }
        if (!vm.writeU32(num(retWritten), written)) return Errno.FAULT;
        const level = f === STDOUT ? LogLevel.INFO : LogLevel.ERROR;
        if (level >= vm.services.logLevel()) vm.services.log(level, text.slice(0, MAX_LOG_BYTES).replace(/\n$/, ''));
        return Errno.SUCCESS;
      },
    },
    fd_read: { signature: sig(i32s(4)), impl: () => Errno.BADF },
    fd_close: { signature: sig([I]), impl: () => Errno.BADF },
    fd_seek: { signature: sig([I, L, I, I]), impl: () => Errno.BADF },
    fd_fdstat_get: {
      signature: sig(i32s(2)),
      impl: (vm, fd, ret) => {
        const f = Number(fd);
        if (f !== STDOUT && f !== STDERR) return Errno.BADF;
        // fdstat: filetype (u8) character device (2), flags (u16) append, rights (u64 ×2)
        const stat = new Uint8Array(24);
        stat[0] = 2;
        stat[2] = 1;
        return vm.write(num(ret), stat) ? Errno.SUCCESS : Errno.FAULT;
      },
    },
    fd_fdstat_set_flags: { signature: sig(i32s(2)), impl: () => Errno.NOTSUP },
    fd_prestat_get: { signature: sig(i32s(2)), impl: () => Errno.BADF },
    fd_prestat_dir_name: { signature: sig(i32s(3)), impl: () => Errno.BADF },
    environ_sizes_get: {
      signature: sig(i32s(2)),
      impl: (vm, retCount, retSize) => {
        const entries = environ(vm);
        const size = entries.reduce((a, e) => a + e.length + 1, 0);
        return vm.writeU32(num(retCount), entries.length) && vm.writeU32(num(retSize), size) ? Errno.SUCCESS : Errno.FAULT;
      },
    },
    environ_get: {
      signature: sig(i32s(2)),
      impl: (vm, retArray, retBuffer) => {
        let at = num(retBuffer);
        let i = 0;
        for (const e of environ(vm)) {
          const bytes = Buffer.concat([e, Buffer.from([0])]);
          if (!vm.writeU32(num(retArray) + i * 4, at) || !vm.write(at, bytes)) return Errno.FAULT;
          at += bytes.length;
          i++;
        }
        return Errno.SUCCESS;
      },
    },
    args_sizes_get: {
      signature: sig(i32s(2)),
      impl: (vm, retArgc, retSize) => (vm.writeU32(num(retArgc), 0) && vm.writeU32(num(retSize), 0) ? Errno.SUCCESS : Errno.FAULT),
    },
    args_get: { signature: sig(i32s(2)), impl: () => Errno.SUCCESS },
    clock_time_get: {
      signature: sig([I, L, I]),
      impl: (vm, id, _precision, ret) => {
        const c = Number(id);
        const t = c === 0 ? nowNanos() : c === 1 ? process.hrtime.bigint() : undefined;
        if (t === undefined) return Errno.NOTSUP;
        return vm.writeU64(num(ret), t) ? Errno.SUCCESS : Errno.FAULT;
      },
    },
    clock_res_get: {
      signature: sig(i32s(2)),
      impl: (vm, id, ret) => (Number(id) > 1 ? Errno.NOTSUP : vm.writeU64(num(ret), 1000n) ? Errno.SUCCESS : Errno.FAULT),
    },
    random_get: {
      signature: sig(i32s(2)),
      impl: (vm, ptr, len) => {
        const n = num(len);
        if (n > 64 * 1024) return Errno.INVAL;
        const b = new Uint8Array(n);
        randomFillSync(b);
        return vm.write(num(ptr), b) ? Errno.SUCCESS : Errno.FAULT;
      },
    },
    sched_yield: { signature: sig([]), impl: () => Errno.SUCCESS },
    poll_oneoff: { signature: sig(i32s(4)), impl: () => Errno.NOTSUP },
    proc_exit: {
      signature: sig([I], '()'),
      impl: (_vm, code) => {
        throw new ProcExit(Number(code));
      },
    },
  };
}

function environ(vm: WasmVm): Buffer[] {
  return vm.services.env.map(([k, v]) => Buffer.from(`${k}=${v}`, 'utf8'));
}

const WASI = wasi();

/** Every function a module may import, by `module.name`. */
export const HOST_FUNCTIONS: ReadonlyMap<string, HostFunction> = new Map([
  ...Object.entries(env).map(([n, f]) => [`env.${n}`, f] as const),
  ...Object.entries(WASI).map(([n, f]) => [`wasi_snapshot_preview1.${n}`, f] as const),
  // AssemblyScript and older toolchains name the preview0 module.
  ...Object.entries(WASI).map(([n, f]) => [`wasi_unstable.${n}`, f] as const),
]);

/** The import object for one VM: each host function bound to it. */
export function hostImports(vm: WasmVm): WebAssembly.Imports {
  const out: Record<string, Record<string, unknown>> = { env: {}, wasi_snapshot_preview1: {}, wasi_unstable: {} };
  for (const imp of vm.compiled.imports) {
    if (imp.kind !== 'function') continue;
    const f = HOST_FUNCTIONS.get(`${imp.module}.${imp.name}`);
    if (f === undefined) continue;
    const impl = f.impl;
    out[imp.module] ??= {};
    out[imp.module]![imp.name] = (...args: (number | bigint)[]) => impl(vm, ...args);
  }
  return out as WebAssembly.Imports;
}

export { MapType };
