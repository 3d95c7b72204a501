// One WebAssembly VM running a Proxy-Wasm module: compiled once per module content (metered,
// memory bounded, imports checked against what this host provides), instantiated per plugin,
// and called with a fuel budget per call. A trap, a call out of fuel, or proc_exit leaves the
// VM broken: the plugin replaces it (plugin.ts).
import { createHash } from 'node:crypto';
import { FUEL_EXPORT, WasmModuleError, prepareModule } from './binary.ts';
import type { ModuleImport } from './binary.ts';
import { SUPPORTED_ABI_VERSIONS } from './abi.ts';
import { HOST_FUNCTIONS, hostImports } from './host-calls.ts';
import type { VmServices } from './host-calls.ts';

export { WasmModuleError };

/** Bounds every VM is held to. */
export interface VmLimits {
  /** Largest linear memory, in 64 KiB pages. */
  maxMemoryPages: number;
  /** Fuel per call into the module (each function entry and loop iteration costs its instructions). */
  callFuel: number;
}

export const DEFAULT_VM_LIMITS: VmLimits = Object.freeze({ maxMemoryPages: 512, callFuel: 50_000_000 });

/** A module compiled for this host: metered, bounded, its imports all provided. */
export interface CompiledModule {
  sha256: string;
  module: WebAssembly.Module;
  abi: string;
  exports: ReadonlySet<string>;
  imports: readonly ModuleImport[];
  /** Bytes of the original module. */
  size: number;
}

const WASM_PAGE = 65536;

/**
 * Prepares and compiles a module; throws WasmModuleError naming what this host cannot run:
 * not a module, no Proxy-Wasm ABI version export, host calls it does not provide (all of them,
 * by name), an import of the wrong type, a memory above the limit.
 */
export function compileModule(bytes: Uint8Array, limits: VmLimits): CompiledModule {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const prepared = prepareModule(bytes, { maxMemoryPages: limits.maxMemoryPages, initialFuel: limits.callFuel });
  const abi = SUPPORTED_ABI_VERSIONS.find((v) => prepared.exports.includes(`proxy_abi_version_${v}`));
  if (abi === undefined) {
    const declared = prepared.exports.filter((e) => e.startsWith('proxy_abi_version_')).map((e) => e.slice('proxy_abi_version_'.length).replaceAll('_', '.'));
    throw new WasmModuleError(declared.length > 0
      ? `the module speaks Proxy-Wasm ABI ${declared.join(', ')}; this host runs ${SUPPORTED_ABI_VERSIONS.map((v) => v.replaceAll('_', '.')).join(' and ')}`
      : 'the module exports no proxy_abi_version_* function: it is not a Proxy-Wasm module');
  }
  if (!prepared.exports.includes('proxy_on_memory_allocate') && !prepared.exports.includes('malloc')) {
    throw new WasmModuleError('the module exports neither proxy_on_memory_allocate nor malloc: the host cannot hand it data');
  }
  const missing: string[] = [];
  for (const imp of prepared.imports) {
    if (imp.kind === 'memory' && imp.module === 'env' && imp.name === 'memory') continue;
    const fn = imp.kind === 'function' ? HOST_FUNCTIONS.get(`${imp.module}.${imp.name}`) : undefined;
    if (fn === undefined) missing.push(`${imp.module}.${imp.name}${imp.kind === 'function' ? '' : ` (${imp.kind})`}`);
  }
  if (missing.length > 0) {
    const hint = missing.includes('env.abort') ? ' (AssemblyScript: build with --use abort=abort_proc_exit)' : '';
    throw new WasmModuleError(`the module imports ${missing.join(', ')}, which this host does not provide${hint}`);
  }
  checkImportTypes(prepared.imports);
  let module: WebAssembly.Module;
  try {
    module = new WebAssembly.Module(prepared.bytes as Uint8Array<ArrayBuffer>);
  } catch (err) {
    throw new WasmModuleError(`the module does not compile: ${(err as Error).message}`);
  }
  if (!prepared.memory && !WebAssembly.Module.exports(module).some((e) => e.kind === 'memory')) {
    throw new WasmModuleError('the module has no memory: a Proxy-Wasm module exports its linear memory as "memory"');
  }
  if (!prepared.exports.includes('memory') && prepared.memory?.imported !== true) {
    throw new WasmModuleError('the module does not export its memory as "memory"');
  }
  return { sha256, module, abi, exports: new Set(prepared.exports), imports: prepared.imports, size: bytes.length };
}

/**
 * Every host function the module imports must have the ABI's signature: a module declaring
 * another (an SDK bug, another ABI version) would otherwise pass its arguments to the wrong
 * parameters.
 */
function checkImportTypes(imports: readonly ModuleImport[]): void {
  const wrong: string[] = [];
  for (const imp of imports) {
    if (imp.kind !== 'function') continue;
    const name = `${imp.module}.${imp.name}`;
    const expected = HOST_FUNCTIONS.get(name)!.signature;
    if (imp.signature !== expected) wrong.push(`${name} is imported as ${imp.signature ?? '?'}, the ABI's is ${expected}`);
  }
  if (wrong.length > 0) throw new WasmModuleError(`the module imports host calls with the wrong signature: ${wrong.join('; ')}`);
}

/** Why a call into a VM failed; the VM is broken afterwards. */
export class VmFailure extends Error {
  override name = 'VmFailure';
  readonly kind: 'trap' | 'budget' | 'exit' | 'stack';
  constructor(kind: VmFailure['kind'], message: string) {
    super(message);
    this.kind = kind;
  }
}

/** proc_exit from the module (AssemblyScript's abort): thrown through the wasm frames. */
export class ProcExit extends Error {
  override name = 'ProcExit';
  readonly code: number;
  constructor(code: number) {
    super(`the module exited (proc_exit ${code})`);
    this.code = code;
  }
}

/** What host calls act on: a plugin (root) context or an HTTP stream context. */
export interface ContextHandler {
  readonly id: number;
  readonly kind: 'root' | 'http';
}

/** A live instance of a compiled module. */
export class WasmVm {
  readonly compiled: CompiledModule;
  readonly services: VmServices;
  readonly limits: VmLimits;
  readonly contexts = new Map<number, ContextHandler>();
  /** The context host calls act on: the one called into, or the one set by proxy_set_effective_context. */
  effective: ContextHandler | undefined;
  /** Set once a call failed: the VM must not be called again. */
  broken: VmFailure | undefined;
  private readonly instance: WebAssembly.Instance;
  private readonly memory: WebAssembly.Memory;
  private readonly fuel: WebAssembly.Global;
  private readonly allocator: (size: number) => number;
  private view: Uint8Array;
  private depth = 0;
  private nextId = 1;

  constructor(compiled: CompiledModule, services: VmServices, limits: VmLimits) {
    this.compiled = compiled;
    this.services = services;
    this.limits = limits;
    const imports = hostImports(this);
    let memory: WebAssembly.Memory | undefined;
    if (compiled.imports.some((i) => i.kind === 'memory')) {
      memory = new WebAssembly.Memory({ initial: 1, maximum: limits.maxMemoryPages });
      (imports['env'] as Record<string, unknown>)['memory'] = memory;
    }
    try {
      this.instance = new WebAssembly.Instance(compiled.module, imports);
    } catch (err) {
      throw this.failure(err, 'instantiation');
    }
    const exp = this.instance.exports;
    this.memory = memory ?? (exp['memory'] as WebAssembly.Memory);
    this.fuel = exp[FUEL_EXPORT] as WebAssembly.Global;
    this.view = new Uint8Array(this.memory.buffer);
    const alloc = (exp['proxy_on_memory_allocate'] ?? exp['malloc']) as (size: number) => number;
    this.allocator = alloc;
  }

  /** A fresh context id (root and stream contexts share one sequence per VM). */
  newContextId(): number {
    return this.nextId++;
  }

  has(fn: string): boolean {
    return typeof this.instance.exports[fn] === 'function';
  }

  /**
   * Calls an export with `ctx` as the current context and a full fuel budget; returns its
   * result (0 for none). A trap, fuel running out or proc_exit breaks the VM and throws VmFailure.
   */
  call(ctx: ContextHandler | undefined, fn: string, ...args: number[]): number {
    if (this.broken) throw this.broken;
    const f = this.instance.exports[fn] as ((...a: number[]) => number | undefined) | undefined;
    if (typeof f !== 'function') return 0;
    const outer = this.effective;
    const top = this.depth === 0;
    if (top) this.fuel.value = this.limits.callFuel;
    this.effective = ctx;
    this.depth++;
    try {
      const r = f(...args);
      return typeof r === 'number' ? r : 0;
    } catch (err) {
      const failure = this.failure(err, fn);
      this.broken = failure;
      throw failure;
    } finally {
      this.depth--;
      this.effective = outer;
    }
  }

  private failure(err: unknown, where: string): VmFailure {
    if (err instanceof VmFailure) return err;
    const e = err as Error;
    let fuelLeft = 1;
    try {
      fuelLeft = this.fuel === undefined ? 1 : (this.fuel.value as number);
    } catch { /* no instance yet */ }
    if (fuelLeft < 0) return new VmFailure('budget', `${where} ran out of its per-call budget (${this.limits.callFuel} fuel)`);
    if (e instanceof ProcExit) return new VmFailure('exit', `${where}: ${e.message}`);
    if (e instanceof RangeError && /call stack/i.test(e.message)) return new VmFailure('stack', `${where}: stack overflow`);
    if (err instanceof WebAssembly.RuntimeError) return new VmFailure('trap', `${where} trapped: ${e.message}`);
    if (err instanceof WebAssembly.LinkError) return new VmFailure('trap', `${where}: ${e.message}`);
    return new VmFailure('trap', `${where} failed: ${e instanceof Error ? e.message : String(err)}`);
  }

  // ---------------------------------------------------------------- memory

  private bytesView(): Uint8Array {
    // a grown memory detaches the old buffer
    if (this.view.buffer !== this.memory.buffer) this.view = new Uint8Array(this.memory.buffer);
    return this.view;
  }

  /** True when [ptr, ptr+len) lies in memory. */
  inBounds(ptr: number, len: number): boolean {
    return ptr >= 0 && len >= 0 && ptr + len <= this.memory.buffer.byteLength;
  }

  /** A copy of memory bytes, or undefined when out of bounds. */
  read(ptr: number, len: number): Uint8Array | undefined {
    ptr >>>= 0;
    len >>>= 0;
    if (!this.inBounds(ptr, len)) return undefined;
    return this.bytesView().slice(ptr, ptr + len);
  }

  readString(ptr: number, len: number): string | undefined {
    const b = this.read(ptr, len);
    return b === undefined ? undefined : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
  }

  writeU32(ptr: number, v: number): boolean {
    ptr >>>= 0;
    if (!this.inBounds(ptr, 4)) return false;
    new DataView(this.memory.buffer).setUint32(ptr, v >>> 0, true);
    return true;
  }

  writeU64(ptr: number, v: bigint): boolean {
    ptr >>>= 0;
    if (!this.inBounds(ptr, 8)) return false;
    new DataView(this.memory.buffer).setBigUint64(ptr, BigInt.asUintN(64, v), true);
    return true;
  }

  write(ptr: number, data: Uint8Array): boolean {
    ptr >>>= 0;
    if (!this.inBounds(ptr, data.length)) return false;
    this.bytesView().set(data, ptr);
    return true;
  }

  /**
   * Copies `data` into memory the module allocates (its proxy_on_memory_allocate / malloc) and
   * stores its address and size at `ptrPtr` and `sizePtr`. False when the pointers are bad or
   * the module could not allocate.
   */
  giveBytes(data: Uint8Array, ptrPtr: number, sizePtr: number): boolean {
    if (!this.inBounds(ptrPtr >>> 0, 4) || !this.inBounds(sizePtr >>> 0, 4)) return false;
    let ptr = 0;
    if (data.length > 0) {
      // a nested call into the module: same budget, same effective context
      this.depth++;
      try {
        ptr = this.allocator(data.length) >>> 0;
      } finally {
        this.depth--;
      }
      if (ptr === 0 || !this.write(ptr, data)) return false;
    }
    return this.writeU32(ptrPtr, ptr) && this.writeU32(sizePtr, data.length);
  }

  /** Bytes of linear memory now. */
  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** The memory's size limit in bytes. */
  get memoryLimitBytes(): number {
    return this.limits.maxMemoryPages * WASM_PAGE;
  }
}
