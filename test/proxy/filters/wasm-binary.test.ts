// What the WASM host does to a module before it runs it: fuel charged at function entries and
// loop headers (a runaway loop traps instead of holding the event loop), a maximum on its memory,
// and the refusals a module gets at load (no ABI version, host calls not provided or imported
// with the wrong signature, a memory larger than allowed). Modules here are written byte by byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FUEL_EXPORT, WasmModuleError, compileModule, prepareModule } from '../../../src/proxy/filters/wasm/index.ts';

// ---- a tiny module writer

const u32 = (v: number): number[] => {
  const out: number[] = [];
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
};
const str = (s: string): number[] => [...u32(s.length), ...Buffer.from(s)];
const section = (id: number, content: number[]): number[] => [id, ...u32(content.length), ...content];
const vec = (items: number[][]): number[] => [...u32(items.length), ...items.flat()];
const I32 = 0x7f;
const I64 = 0x7e;
const functype = (params: number[], results: number[]): number[] => [0x60, ...vec(params.map((p) => [p])), ...vec(results.map((r) => [r]))];

interface ModuleParts {
  types: number[][];
  imports?: { module: string; name: string; type: number }[];
  /** Type index of each defined function. */
  funcs: number[];
  memory?: { min: number; max?: number };
  exports: { name: string; kind: 0 | 2; index: number }[];
  /** Each body: locals then code (without the final end). */
  bodies: number[][];
}

function module(p: ModuleParts): Uint8Array {
  const bytes = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  bytes.push(...section(1, vec(p.types)));
  if (p.imports) bytes.push(...section(2, vec(p.imports.map((i) => [...str(i.module), ...str(i.name), 0x00, ...u32(i.type)]))));
  bytes.push(...section(3, vec(p.funcs.map((t) => u32(t)))));
  if (p.memory) bytes.push(...section(5, vec([p.memory.max === undefined ? [0x00, ...u32(p.memory.min)] : [0x01, ...u32(p.memory.min), ...u32(p.memory.max)]])));
  bytes.push(...section(7, vec(p.exports.map((e) => [...str(e.name), e.kind, ...u32(e.index)]))));
  bytes.push(...section(10, vec(p.bodies.map((b) => { const body = [...b, 0x0b]; return [...u32(body.length), ...body]; }))));
  return Uint8Array.from(bytes);
}

const NO_LOCALS = [0x00];

/** A Proxy-Wasm-shaped module: ABI marker, malloc, memory, plus `extra` exported functions. */
function proxyModule(extra: { name: string; type: number; body: number[] }[] = [], more: Partial<ModuleParts> = {}): Uint8Array {
  const imports = more.imports ?? [];
  const base = imports.length;
  const fns = [
    { name: 'proxy_abi_version_0_2_1', type: 0, body: NO_LOCALS },
    { name: 'malloc', type: 1, body: [...NO_LOCALS, 0x41, ...u32(1024)] }, // always address 1024
    ...extra,
  ];
  return module({
    types: more.types ?? [functype([], []), functype([I32], [I32]), functype([], [I32]), functype([I32, I32, I32], [I32])],
    imports,
    funcs: fns.map((f) => f.type),
    memory: more.memory ?? { min: 1 },
    exports: [{ name: 'memory', kind: 2, index: 0 }, ...fns.map((f, i) => ({ name: f.name, kind: 0 as const, index: base + i }))],
    bodies: fns.map((f) => f.body),
  });
}

const LIMITS = { maxMemoryPages: 4, callFuel: 10_000 };

function instantiate(bytes: Uint8Array): WebAssembly.Instance {
  return new WebAssembly.Instance(new WebAssembly.Module(prepareModule(bytes, { maxMemoryPages: LIMITS.maxMemoryPages, initialFuel: LIMITS.callFuel }).bytes as Uint8Array<ArrayBuffer>), {});
}

test('a loop that never ends traps once its fuel is spent, and the fuel left says so', () => {
  // spin: loop br 0 end
  const inst = instantiate(proxyModule([{ name: 'spin', type: 0, body: [...NO_LOCALS, 0x03, 0x40, 0x0c, 0x00, 0x0b] }]));
  const fuel = inst.exports[FUEL_EXPORT] as WebAssembly.Global;
  fuel.value = 5000;
  assert.throws(() => (inst.exports['spin'] as () => void)(), (e: unknown) => e instanceof WebAssembly.RuntimeError);
  assert.ok((fuel.value as number) < 0, `fuel ${String(fuel.value)}`);
});

test('a bounded loop costs its iterations: the fuel left shows what it charged', () => {
  // count(n): local i; loop (i += 1; br_if 0 (i < n)) ; return i
  const body = [...vec([[1, I32]]), 0x03, 0x40, 0x20, 0x01, 0x41, 0x01, 0x6a, 0x21, 0x01, 0x20, 0x01, 0x20, 0x00, 0x48, 0x0d, 0x00, 0x0b, 0x20, 0x01];
  const inst = instantiate(proxyModule([{ name: 'count', type: 1, body }]));
  const fuel = inst.exports[FUEL_EXPORT] as WebAssembly.Global;
  fuel.value = 1_000_000;
  assert.equal((inst.exports['count'] as (n: number) => number)(100), 100);
  const spent = 1_000_000 - (fuel.value as number);
  // the function's own 3 instructions (loop, local.get, end) once, the loop's 9 (its end included) per pass
  assert.equal(spent, 3 + 100 * 9);
  fuel.value = 500;
  assert.throws(() => (inst.exports['count'] as (n: number) => number)(100), WebAssembly.RuntimeError);
});

test('recursion without end is stopped by fuel or the stack, whichever comes first: a trap either way', () => {
  // rec: call rec
  const inst = instantiate(proxyModule([{ name: 'rec', type: 0, body: [...NO_LOCALS, 0x10, 0x02] }]));
  (inst.exports[FUEL_EXPORT] as WebAssembly.Global).value = 1_000_000;
  assert.throws(() => (inst.exports['rec'] as () => void)(), (e: unknown) => e instanceof WebAssembly.RuntimeError || e instanceof RangeError);
});

test('memory gets a maximum: growing past it fails as memory.grow does (-1), the module keeps running', () => {
  // grow(n): memory.grow n
  const inst = instantiate(proxyModule([{ name: 'grow', type: 1, body: [...NO_LOCALS, 0x20, 0x00, 0x40, 0x00] }]));
  (inst.exports[FUEL_EXPORT] as WebAssembly.Global).value = 1000;
  const grow = inst.exports['grow'] as (n: number) => number;
  assert.equal(grow(3), 1); // 1 → 4 pages: the limit
  assert.equal(grow(1), -1);
  assert.equal((inst.exports['memory'] as WebAssembly.Memory).buffer.byteLength, 4 * 65536);
  // a declared maximum above the limit is lowered, one below it kept
  assert.deepEqual(prepareModule(proxyModule([], { memory: { min: 1, max: 100 } }), { maxMemoryPages: 4, initialFuel: 1 }).memory, { initialPages: 1, maximumPages: 4, imported: false });
  assert.deepEqual(prepareModule(proxyModule([], { memory: { min: 1, max: 2 } }), { maxMemoryPages: 4, initialFuel: 1 }).memory, { initialPages: 1, maximumPages: 2, imported: false });
});

test('refusals name what is wrong: memory over the limit, not a module, no ABI version, no allocator', () => {
  assert.throws(() => compileModule(proxyModule([], { memory: { min: 5 } }), LIMITS),
    { name: 'WasmModuleError', message: 'memory 0 needs 5 pages at start, more than the 4 pages (256 KiB) a module may have' });
  assert.throws(() => compileModule(Buffer.from('not wasm at all'), LIMITS), { message: 'not a WebAssembly module (no \\0asm magic number)' });
  const noAbi = module({ types: [functype([I32], [I32])], funcs: [0], memory: { min: 1 }, exports: [{ name: 'memory', kind: 2, index: 0 }, { name: 'malloc', kind: 0, index: 0 }], bodies: [[...NO_LOCALS, 0x20, 0x00]] });
  assert.throws(() => compileModule(noAbi, LIMITS), { message: 'the module exports no proxy_abi_version_* function: it is not a Proxy-Wasm module' });
  const oldAbi = module({ types: [functype([], [])], funcs: [0], memory: { min: 1 }, exports: [{ name: 'memory', kind: 2, index: 0 }, { name: 'proxy_abi_version_0_1_0', kind: 0, index: 0 }], bodies: [NO_LOCALS] });
  assert.throws(() => compileModule(oldAbi, LIMITS), { message: 'the module speaks Proxy-Wasm ABI 0.1.0; this host runs 0.2.1 and 0.2.0' });
  const noMalloc = module({ types: [functype([], [])], funcs: [0], memory: { min: 1 }, exports: [{ name: 'memory', kind: 2, index: 0 }, { name: 'proxy_abi_version_0_2_1', kind: 0, index: 0 }], bodies: [NO_LOCALS] });
  assert.throws(() => compileModule(noMalloc, LIMITS), { message: 'the module exports neither proxy_on_memory_allocate nor malloc: the host cannot hand it data' });
});

test('every host call a module imports must exist here, with the ABI\'s signature; all missing ones are named', () => {
  const imports = [
    { module: 'env', name: 'proxy_http_call', type: 2 },
    { module: 'env', name: 'proxy_grpc_call', type: 2 },
    { module: 'env', name: 'proxy_log', type: 3 },
  ];
  assert.throws(() => compileModule(proxyModule([], { imports }), LIMITS),
    { message: 'the module imports env.proxy_http_call, env.proxy_grpc_call, which this host does not provide' });
  // AssemblyScript's default abort import gets a hint
  assert.throws(() => compileModule(proxyModule([], { imports: [{ module: 'env', name: 'abort', type: 0 }] }), LIMITS),
    { message: 'the module imports env.abort, which this host does not provide (AssemblyScript: build with --use abort=abort_proc_exit)' });
  // proxy_log as (i32,i32,i32)->i32 is fine; as ()->i32 it is not
  assert.equal(compileModule(proxyModule([], { imports: [{ module: 'env', name: 'proxy_log', type: 3 }] }), LIMITS).abi, '0_2_1');
  assert.throws(() => compileModule(proxyModule([], { imports: [{ module: 'env', name: 'proxy_log', type: 2 }] }), LIMITS),
    { message: 'the module imports host calls with the wrong signature: env.proxy_log is imported as ()->i32, the ABI\'s is (i32,i32,i32)->i32' });
  // i64 parameters are part of the signature
  const types = [functype([], []), functype([I32], [I32]), functype([], [I32]), functype([I32, I32, I32], [I32]), functype([I32, I64], [I32])];
  assert.equal(compileModule(proxyModule([], { types, imports: [{ module: 'env', name: 'proxy_increment_metric', type: 4 }] }), LIMITS).imports[0]!.signature, '(i32,i64)->i32');
});

test('a module using an instruction the host cannot meter is refused, naming it', () => {
  // 0xfb (GC) is not metered
  assert.throws(() => compileModule(proxyModule([{ name: 'gc', type: 0, body: [...NO_LOCALS, 0xfb, 0x00] }]), LIMITS),
    (e: unknown) => e instanceof WasmModuleError && /^function 2: instruction 0xfb at byte \d+ is not one this host can meter$/.test(e.message));
});
