// Reads a WebAssembly binary and rewrites it for the host before it is compiled: every function
// entry and loop header charges fuel from a mutable global the host refills before each call,
// so a call that runs too long traps instead of holding the event loop (Node cannot preempt
// synchronous wasm on its own thread), and the module's memory gets a maximum. No function,
// global or type index moves: the fuel global is appended, the charges are inserted in place.

/** A module the host cannot take: the message names what is wrong (offset, instruction, limit). */
export class WasmModuleError extends Error {
  override name = 'WasmModuleError';
}

export type ImportKind = 'function' | 'table' | 'memory' | 'global' | 'tag';

export interface ModuleImport {
  module: string;
  name: string;
  kind: ImportKind;
  /** A function import's type, as `(i32,i64)->i32`. */
  signature?: string;
}

export interface PreparedModule {
  /** The rewritten binary (metered, memory bounded). */
  bytes: Uint8Array;
  imports: readonly ModuleImport[];
  exports: readonly string[];
  /** The memory the module declares or imports: pages (64 KiB) at start and the maximum it now has. */
  memory: { initialPages: number; maximumPages: number; imported: boolean } | undefined;
  /** Metering points inserted (function entries and loop headers). */
  meteringPoints: number;
}

export interface PrepareOptions {
  /** The largest memory the module may grow to, in 64 KiB pages. */
  maxMemoryPages: number;
  /** Fuel the module starts with (its start function runs at instantiation). */
  initialFuel: number;
}

/** The export through which the host reads and refills a module's fuel. */
export const FUEL_EXPORT = '__sextant_fuel';

const MAGIC = 0x6d736100; // "\0asm"
const SECTION_RANK: Readonly<Record<number, number>> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 };
const GLOBAL_SECTION = 6;
const EXPORT_SECTION = 7;
const IMPORT_KINDS: readonly ImportKind[] = ['function', 'table', 'memory', 'global', 'tag'];

class Reader {
  pos: number;
  readonly end: number;
  readonly buf: Uint8Array;

  constructor(buf: Uint8Array, pos = 0, end = buf.length) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  u8(): number {
    if (this.pos >= this.end) throw new WasmModuleError(`unexpected end of the module at byte ${this.pos}`);
    return this.buf[this.pos++]!;
  }

  /** Unsigned LEB128, at most 32 bits. */
  u32(): number {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      const b = this.u8();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
    throw new WasmModuleError(`malformed LEB128 integer at byte ${this.pos}`);
  }

  /** Any LEB128 (signed or unsigned, up to 64 bits), skipped. */
  skipLeb(): void {
    for (let i = 0; i < 10; i++) if ((this.u8() & 0x80) === 0) return;
    throw new WasmModuleError(`malformed LEB128 integer at byte ${this.pos}`);
  }

  skip(n: number): void {
    if (this.pos + n > this.end) throw new WasmModuleError(`unexpected end of the module at byte ${this.pos}`);
    this.pos += n;
  }

  name(): string {
    const n = this.u32();
    const start = this.pos;
    this.skip(n);
    return new TextDecoder('utf-8', { fatal: true }).decode(this.buf.subarray(start, start + n));
  }
}

class Writer {
  private chunks: number[] = [];
  private parts: Uint8Array[] = [];
  length = 0;

  byte(b: number): this {
    this.chunks.push(b);
    this.length++;
    return this;
  }

  u32(v: number): this {
    do {
      let b = v & 0x7f;
      v = Math.floor(v / 128);
      if (v !== 0) b |= 0x80;
      this.byte(b);
    } while (v !== 0);
    return this;
  }

  s32(v: number): this {
    for (;;) {
      const b = v & 0x7f;
      v >>= 7;
      if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) return this.byte(b);
      this.byte(b | 0x80);
    }
  }

  bytes(b: Uint8Array): this {
    this.flush();
    this.parts.push(b);
    this.length += b.length;
    return this;
  }

  name(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.u32(b.length).bytes(b);
  }

  private flush(): void {
    if (this.chunks.length > 0) {
      this.parts.push(Uint8Array.from(this.chunks));
      this.chunks = [];
    }
  }

  finish(): Uint8Array {
    this.flush();
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

interface Section {
  id: number;
  /** Content bytes (after id and size). */
  start: number;
  end: number;
}

/**
 * Checks and rewrites a module: metered, memory bounded. Throws WasmModuleError naming what is
 * wrong (not a module, memory larger than allowed, 64-bit memory, an instruction this host cannot
 * meter); the result still goes through WebAssembly.Module, which validates everything else.
 */
export function prepareModule(input: Uint8Array, opts: PrepareOptions): PreparedModule {
  const buf = input;
  if (buf.length < 8 || new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(0, true) !== MAGIC) {
    throw new WasmModuleError('not a WebAssembly module (no \\0asm magic number)');
  }
  const version = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(4, true);
  if (version !== 1) throw new WasmModuleError(`WebAssembly binary version ${version} is not supported (only 1)`);
  const r = new Reader(buf, 8);
  const sections: Section[] = [];
  let lastRank = 0;
  while (!r.done) {
    const id = r.u8();
    const size = r.u32();
    const start = r.pos;
    r.skip(size);
    if (id !== 0) {
      const rank = SECTION_RANK[id];
      if (rank === undefined) throw new WasmModuleError(`unknown section id ${id} at byte ${start}`);
      if (rank <= lastRank) throw new WasmModuleError(`section id ${id} out of order at byte ${start}`);
      lastRank = rank;
    }
    sections.push({ id, start, end: start + size });
  }

  const imports: ModuleImport[] = [];
  const exports: string[] = [];
  let importedGlobals = 0;
  let definedGlobals = 0;
  let memory: PreparedModule['memory'];
  const replaced = new Map<Section, Uint8Array>();
  let types: string[] = [];

  for (const s of sections) {
    const sr = new Reader(buf, s.start, s.end);
    if (s.id === 1) {
      types = readTypes(sr);
    } else if (s.id === 2) {
      const n = sr.u32();
      for (let i = 0; i < n; i++) {
        const module = sr.name();
        const name = sr.name();
        const kindByte = sr.u8();
        const kind = IMPORT_KINDS[kindByte];
        if (kind === undefined) throw new WasmModuleError(`import ${module}.${name}: unknown kind ${kindByte}`);
        const imp: ModuleImport = { module, name, kind };
        imports.push(imp);
        if (kind === 'function') {
          const t = sr.u32();
          const sig = types[t];
          if (sig === undefined) throw new WasmModuleError(`import ${module}.${name}: unknown type index ${t}`);
          imp.signature = sig;
        }
        else if (kind === 'table') { readRefType(sr); readLimits(sr, `import ${module}.${name}`); }
        else if (kind === 'memory') {
          const l = readLimits(sr, `import ${module}.${name}`);
          if (l.memory64) throw new WasmModuleError(`import ${module}.${name}: 64-bit memory is not supported`);
          if (l.min > opts.maxMemoryPages) throw new WasmModuleError(`imported memory ${module}.${name} needs ${l.min} pages at start, more than the ${opts.maxMemoryPages} pages (${opts.maxMemoryPages * 64} KiB) a module may have`);
          memory = { initialPages: l.min, maximumPages: Math.min(l.max ?? opts.maxMemoryPages, opts.maxMemoryPages), imported: true };
        } else if (kind === 'global') { readValType(sr); sr.u8(); importedGlobals++; }
        else { sr.u8(); sr.u32(); }
      }
    } else if (s.id === 5) {
      replaced.set(s, boundMemories(sr, opts.maxMemoryPages, (m) => { memory ??= m; }));
    } else if (s.id === GLOBAL_SECTION) {
      definedGlobals = sr.u32();
    } else if (s.id === EXPORT_SECTION) {
      const n = sr.u32();
      for (let i = 0; i < n; i++) {
        exports.push(sr.name());
        sr.u8();
        sr.u32();
      }
    }
  }
  if (exports.includes(FUEL_EXPORT)) throw new WasmModuleError(`the module already exports ${FUEL_EXPORT}, the name the host meters it by`);
  const fuelGlobal = importedGlobals + definedGlobals;

  // The fuel global (i32, mutable, starting at the instantiation budget) and its export.
  const globalEntry = new Writer().byte(0x7f).byte(0x01).byte(0x41).s32(Math.min(opts.initialFuel, 0x7fffffff)).byte(0x0b).finish();
  const exportEntry = new Writer().name(FUEL_EXPORT).byte(0x03).u32(fuelGlobal).finish();
  let meteringPoints = 0;
  for (const s of sections) {
    if (s.id === GLOBAL_SECTION) replaced.set(s, appendToVector(buf, s, globalEntry));
    else if (s.id === EXPORT_SECTION) replaced.set(s, appendToVector(buf, s, exportEntry));
    else if (s.id === 10) {
      const out = meterCode(buf, s, fuelGlobal);
      meteringPoints = out.points;
      replaced.set(s, out.bytes);
    }
  }
  const added: { id: number; content: Uint8Array }[] = [];
  if (!sections.some((s) => s.id === GLOBAL_SECTION)) added.push({ id: GLOBAL_SECTION, content: new Writer().u32(1).bytes(globalEntry).finish() });
  if (!sections.some((s) => s.id === EXPORT_SECTION)) added.push({ id: EXPORT_SECTION, content: new Writer().u32(1).bytes(exportEntry).finish() });

  const w = new Writer().bytes(buf.subarray(0, 8));
  const emit = (id: number, content: Uint8Array): void => { w.byte(id).u32(content.length).bytes(content); };
  const emitAddedBefore = (rank: number): void => {
    while (added.length > 0 && SECTION_RANK[added[0]!.id]! < rank) {
      const a = added.shift()!;
      emit(a.id, a.content);
    }
  };
  for (const s of sections) {
    if (s.id !== 0) emitAddedBefore(SECTION_RANK[s.id]!);
    emit(s.id, replaced.get(s) ?? buf.subarray(s.start, s.end));
  }
  emitAddedBefore(Infinity);
  return { bytes: w.finish(), imports, exports, memory, meteringPoints };
}

interface Limits {
  min: number;
  max: number | undefined;
  shared: boolean;
  memory64: boolean;
}

function readLimits(r: Reader, what: string): Limits {
  const flags = r.u8();
  if (flags > 7) throw new WasmModuleError(`${what}: unknown limits flags 0x${flags.toString(16)}`);
  const memory64 = (flags & 4) !== 0;
  const min = memory64 ? readU64AsNumber(r) : r.u32();
  const max = (flags & 1) !== 0 ? (memory64 ? readU64AsNumber(r) : r.u32()) : undefined;
  return { min, max, shared: (flags & 2) !== 0, memory64 };
}

function readU64AsNumber(r: Reader): number {
  let result = 0;
  let shift = 0;
  for (let i = 0; i < 10; i++) {
    const b = r.u8();
    result += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return result;
    shift += 7;
  }
  throw new WasmModuleError(`malformed LEB128 integer at byte ${r.pos}`);
}

/** The memory section with every memory's maximum at most `maxPages`. */
function boundMemories(r: Reader, maxPages: number, seen: (m: NonNullable<PreparedModule['memory']>) => void): Uint8Array {
  const n = r.u32();
  const w = new Writer().u32(n);
  for (let i = 0; i < n; i++) {
    const l = readLimits(r, `memory ${i}`);
    if (l.memory64) throw new WasmModuleError(`memory ${i}: 64-bit memory is not supported`);
    if (l.min > maxPages) throw new WasmModuleError(`memory ${i} needs ${l.min} pages at start, more than the ${maxPages} pages (${maxPages * 64} KiB) a module may have`);
    const max = Math.min(l.max ?? maxPages, maxPages);
    seen({ initialPages: l.min, maximumPages: max, imported: false });
    w.byte(l.shared ? 3 : 1).u32(l.min).u32(max);
  }
  return w.finish();
}

/** A vector section (count, entries) with one more entry at its end. */
function appendToVector(buf: Uint8Array, s: Section, entry: Uint8Array): Uint8Array {
  const r = new Reader(buf, s.start, s.end);
  const n = r.u32();
  return new Writer().u32(n + 1).bytes(buf.subarray(r.pos, s.end)).bytes(entry).finish();
}

const VALTYPE_NAMES: Readonly<Record<number, string>> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128', 0x70: 'funcref', 0x6f: 'externref' };

/** The type section's function types as `(i32,i32)->i32`; GC type definitions are not supported. */
function readTypes(r: Reader): string[] {
  const n = r.u32();
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const form = r.u8();
    if (form !== 0x60) throw new WasmModuleError(`type ${i}: type form 0x${form.toString(16)} is not supported (only function types)`);
    const list = (): string => {
      const k = r.u32();
      const names: string[] = [];
      for (let j = 0; j < k; j++) {
        const at = r.pos;
        readValType(r);
        names.push(VALTYPE_NAMES[r.buf[at]!] ?? 'ref');
      }
      return names.join(',');
    };
    const params = list();
    const results = list();
    out.push(`(${params})->${results === '' ? '()' : results}`);
  }
  return out;
}

// Value types: numbers, v128, funcref/externref, and the typed references (0x63/0x64 heap type).
function readValType(r: Reader): void {
  const b = r.u8();
  if (b === 0x63 || b === 0x64) r.skipLeb();
  else if (!(b >= 0x69 && b <= 0x7f)) throw new WasmModuleError(`unknown value type 0x${b.toString(16)} at byte ${r.pos - 1}`);
}

function readRefType(r: Reader): void {
  readValType(r);
}

function readBlockType(r: Reader): void {
  const b = r.buf[r.pos];
  if (b === undefined) throw new WasmModuleError(`unexpected end of the module at byte ${r.pos}`);
  if (b === 0x40 || (b >= 0x69 && b <= 0x7f)) { r.pos++; return; }
  if (b === 0x63 || b === 0x64) { r.pos++; r.skipLeb(); return; }
  r.skipLeb(); // a type index (s33)
}

function readMemArg(r: Reader): void {
  const align = r.u32();
  if ((align & 0x40) !== 0) r.u32(); // multi-memory: a memory index follows
  r.skipLeb(); // offset
}

/** The charge inserted at a metering point: fuel -= cost; trap when it goes below zero. */
function charge(w: Writer, global: number, cost: number): void {
  w.byte(0x23).u32(global).byte(0x41).s32(cost).byte(0x6b).byte(0x24).u32(global)
    .byte(0x23).u32(global).byte(0x41).byte(0x00).byte(0x48).byte(0x04).byte(0x40).byte(0x00).byte(0x0b);
}

/**
 * The code section with a charge at every function entry and loop header. A point charges the
 * instructions of its region (the function body or the loop body, nested loops excluded): an
 * upper bound of the work one pass through it does, so fuel bounds the instructions executed.
 */
function meterCode(buf: Uint8Array, s: Section, global: number): { bytes: Uint8Array; points: number } {
  const r = new Reader(buf, s.start, s.end);
  const n = r.u32();
  const w = new Writer().u32(n);
  let points = 0;
  for (let f = 0; f < n; f++) {
    const size = r.u32();
    const bodyStart = r.pos;
    const bodyEnd = bodyStart + size;
    if (bodyEnd > s.end) throw new WasmModuleError(`function body ${f} runs past the code section`);
    const br = new Reader(buf, bodyStart, bodyEnd);
    const groups = br.u32();
    for (let i = 0; i < groups; i++) {
      br.u32();
      readValType(br);
    }
    const codeStart = br.pos;
    const { offsets, costs } = scanBody(br, f);
    const body = new Writer().bytes(buf.subarray(bodyStart, codeStart));
    let from = codeStart;
    for (let i = 0; i < offsets.length; i++) {
      body.bytes(buf.subarray(from, offsets[i]!));
      charge(body, global, Math.min(costs[i]!, 0x7fffffff));
      from = offsets[i]!;
    }
    body.bytes(buf.subarray(from, bodyEnd));
    const out = body.finish();
    w.u32(out.length).bytes(out);
    points += offsets.length;
    r.pos = bodyEnd;
  }
  return { bytes: w.finish(), points };
}

/**
 * Walks one function's instructions: where to insert charges (the code start and right after
 * each loop's block type) and what each region costs.
 */
function scanBody(r: Reader, func: number): { offsets: number[]; costs: number[] } {
  const offsets = [r.pos];
  const costs = [0];
  const regions = [0]; // region ids, innermost last
  const control: boolean[] = []; // per open block: is it a loop
  for (;;) {
    const at = r.pos;
    const op = r.u8();
    costs[regions[regions.length - 1]!]!++;
    switch (op) {
      case 0x02: case 0x04: case 0x06: // block, if, try
        readBlockType(r);
        control.push(false);
        break;
      case 0x03: // loop
        readBlockType(r);
        control.push(true);
        regions.push(offsets.length);
        offsets.push(r.pos);
        costs.push(0);
        break;
      case 0x1f: { // try_table
        readBlockType(r);
        const clauses = r.u32();
        for (let i = 0; i < clauses; i++) {
          const kind = r.u8();
          if (kind === 0 || kind === 1) r.u32();
          r.u32();
        }
        control.push(false);
        break;
      }
      case 0x0b: case 0x18: { // end, delegate
        if (op === 0x18) r.u32();
        if (control.length === 0) {
          if (op !== 0x0b) throw new WasmModuleError(`function ${func}: delegate outside a try at byte ${at}`);
          if (r.pos !== r.end) throw new WasmModuleError(`function ${func}: code after the final end at byte ${r.pos}`);
          return { offsets, costs };
        }
        if (control.pop()) regions.pop();
        break;
      }
      default:
        skipImmediates(r, op, func, at);
    }
  }
}

function skipImmediates(r: Reader, op: number, func: number, at: number): void {
  if (op === 0x00 || op === 0x01 || op === 0x05 || op === 0x0f || op === 0x19 || op === 0x0a || op === 0x1a || op === 0x1b || op === 0xd1 || op === 0xd3 || op === 0xd4) return; // ref.is_null, ref.eq, ref.as_non_null
  if (op >= 0x45 && op <= 0xc4) return; // numeric instructions, sign extension
  switch (op) {
    case 0x07: case 0x08: case 0x09: // catch, throw, rethrow
    case 0x0c: case 0x0d: // br, br_if
    case 0x10: case 0x12: // call, return_call
    case 0x14: case 0x15: // call_ref, return_call_ref
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: // local.*, global.*
    case 0x25: case 0x26: // table.get, table.set
    case 0x3f: case 0x40: // memory.size, memory.grow
    case 0xd2: // ref.func
    case 0xd5: case 0xd6: // br_on_null, br_on_non_null
      r.u32();
      return;
    case 0x0e: { // br_table
      const n = r.u32();
      for (let i = 0; i <= n; i++) r.u32();
      return;
    }
    case 0x11: case 0x13: // call_indirect, return_call_indirect
      r.u32();
      r.u32();
      return;
    case 0x1c: { // select t*
      const n = r.u32();
      for (let i = 0; i < n; i++) readValType(r);
      return;
    }
    case 0x41: case 0x42: r.skipLeb(); return;
    case 0x43: r.skip(4); return;
    case 0x44: r.skip(8); return;
    case 0xd0: readBlockType(r); return; // ref.null: a heap type, encoded as a block type is
    case 0xfc: skipMisc(r, func, at); return;
    case 0xfd: skipSimd(r); return;
    case 0xfe: skipAtomic(r, func, at); return;
  }
  if (op >= 0x28 && op <= 0x3e) { readMemArg(r); return; }
  throw new WasmModuleError(`function ${func}: instruction 0x${op.toString(16).padStart(2, '0')} at byte ${at} is not one this host can meter`);
}

function skipMisc(r: Reader, func: number, at: number): void {
  const sub = r.u32();
  if (sub <= 7) return; // saturating truncations
  switch (sub) {
    case 8: case 10: case 12: case 14: r.u32(); r.u32(); return; // memory.init, memory.copy, table.init, table.copy
    case 9: case 11: case 13: case 15: case 16: case 17: r.u32(); return;
  }
  throw new WasmModuleError(`function ${func}: instruction 0xfc ${sub} at byte ${at} is not one this host can meter`);
}

function skipSimd(r: Reader): void {
  const sub = r.u32();
  if (sub <= 11 || sub === 92 || sub === 93) readMemArg(r);
  else if (sub === 12 || sub === 13) r.skip(16);
  else if (sub >= 21 && sub <= 34) r.skip(1);
  else if (sub >= 84 && sub <= 91) { readMemArg(r); r.skip(1); }
}

function skipAtomic(r: Reader, func: number, at: number): void {
  const sub = r.u32();
  if (sub === 3) { r.skip(1); return; } // atomic.fence
  if (sub <= 2 || (sub >= 0x10 && sub <= 0x4e)) { readMemArg(r); return; }
  throw new WasmModuleError(`function ${func}: instruction 0xfe ${sub} at byte ${at} is not one this host can meter`);
}
