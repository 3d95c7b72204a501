// The WASM room: a Proxy-Wasm host (ABI 0.2.1 and 0.2.0) on Node's WebAssembly running
// `envoy.filters.http.wasm` filters, inline or over ECDS. Modules are metered (a fuel budget per
// call) and memory-bounded at load; a plugin that fails applies its fail_open (see docs/wasm.md).
export { WasmHost, WasmChain, wasmConfigsOf, extensionConfigNames } from './host.ts';
export type { WasmChains, WasmHostOptions } from './host.ts';
export { compileWasmFilter, compileWasmConfig, compileExtensionConfig, WASM_HTTP_TYPE, EXTENSION_CONFIG_TYPE, MODULE_SHA256_ENV } from './config.ts';
export type { WasmFilterConfig, WasmPosition } from './config.ts';
export type { WasmRequestView, WasmReply, WasmStageResult } from './stream.ts';
export { compileModule, WasmModuleError, DEFAULT_VM_LIMITS } from './vm.ts';
export type { VmLimits } from './vm.ts';
export { prepareModule, FUEL_EXPORT } from './binary.ts';
export { WasmPlugin, MAX_RELOADS } from './plugin.ts';
export type { WasmPluginSpec } from './plugin.ts';
