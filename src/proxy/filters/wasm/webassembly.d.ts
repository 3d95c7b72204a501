// The part of Node's WebAssembly global the WASM host uses. TypeScript ships these types only
// with its DOM library, which the project does not load (its lib is es2024 with Node's types).
declare namespace WebAssembly {
  // A compiled module is opaque: only the static functions read it.
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  interface Module {}
  interface ModuleDescriptor {
    kind: 'function' | 'global' | 'memory' | 'table' | 'tag';
    name: string;
  }
  const Module: {
    prototype: Module;
    new (bytes: ArrayBufferView<ArrayBuffer> | ArrayBuffer): Module;
    exports(module: Module): ModuleDescriptor[];
    imports(module: Module): (ModuleDescriptor & { module: string })[];
  };

  interface Global {
    value: number | bigint;
  }
  const Global: {
    prototype: Global;
    new (descriptor: { value: 'i32' | 'i64' | 'f32' | 'f64'; mutable?: boolean }, v?: number | bigint): Global;
  };

  interface Memory {
    readonly buffer: ArrayBuffer;
    grow(pages: number): number;
  }
  const Memory: {
    prototype: Memory;
    new (descriptor: { initial: number; maximum?: number; shared?: boolean }): Memory;
  };

  type ExportValue = ((...args: never[]) => unknown) | Global | Memory | object;
  type Imports = Record<string, Record<string, unknown>>;

  interface Instance {
    readonly exports: Record<string, ExportValue>;
  }
  const Instance: {
    prototype: Instance;
    new (module: Module, imports?: Imports): Instance;
  };

  type RuntimeError = Error;
  const RuntimeError: { prototype: RuntimeError; new (message?: string): RuntimeError };
  type LinkError = Error;
  const LinkError: { prototype: LinkError; new (message?: string): LinkError };
  type CompileError = Error;
  const CompileError: { prototype: CompileError; new (message?: string): CompileError };
}
