// Envoy's Wasm HTTP filter config (`envoy.filters.http.wasm`, in a listener or as an ECDS
// TypedExtensionConfig) compiled into a WasmPluginSpec: what to run, with which configuration,
// failing open or closed. A config this proxy cannot honour is an error (NACK); a module that
// cannot be had (unreadable file, checksum mismatch, remote code) is not: the plugin then fails
// to load and its fail_open decides what requests get.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { EXTENSION_CONFIG_TYPE, encodeMessage } from '../../../envoy/index.ts';
import type { ProtoJson } from '../../../envoy/index.ts';
import { ConfigError } from '../../config/fields.ts';
import type { WasmPluginSpec } from './plugin.ts';

export const WASM_HTTP_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm';
export { EXTENSION_CONFIG_TYPE };
/**
 * The module's sha256, in the VM's environment: how the pilot states the checksum of a module it
 * delivers inline over ECDS (Envoy's AsyncDataSource has a checksum only for remote code).
 */
export const MODULE_SHA256_ENV = 'SEXTANT_WASM_MODULE_SHA256';
/** Why the control plane could not provide the module (it then sends the remote reference, as istiod does). */
export const MODULE_ERROR_ENV = 'SEXTANT_WASM_MODULE_ERROR';
/** Runtimes a Wasm filter may name; all run here on Node's WebAssembly (V8). */
export const WASM_RUNTIMES: readonly string[] = ['', 'envoy.wasm.runtime.v8', 'envoy.wasm.runtime.wamr', 'envoy.wasm.runtime.wasmtime', 'envoy.wasm.runtime.wavm'];
/** Largest module read from a file. */
export const MAX_MODULE_BYTES = 64 * 1024 * 1024;

/** Where a WASM filter sits in the connection manager's chain, relative to the filters the router runs itself. */
export type WasmPosition = 'authn' | 'authz' | 'route';

/** A WASM HTTP filter in a connection manager: its plugin inline, or by ECDS name. */
export interface WasmFilterConfig {
  name: string;
  position: WasmPosition;
  /** Inline config (an EnvoyFilter's typed_config). */
  inline?: WasmPluginSpec;
  /** config_discovery: the ECDS resource to run, and a default while it has not arrived. */
  discovery?: { resource: string; defaultConfig?: WasmPluginSpec };
}

const STRING_VALUE = 'type.googleapis.com/google.protobuf.StringValue';
const BYTES_VALUE = 'type.googleapis.com/google.protobuf.BytesValue';

/** Compiles `envoy.extensions.filters.http.wasm.v3.Wasm` (JSON form); throws ConfigError naming the field. */
export function compileWasmConfig(wasm: ProtoJson, at: string): WasmPluginSpec {
  const config = wasm['config'] as ProtoJson | undefined;
  if (config === undefined) throw new ConfigError(`${at}.config: required (the plugin's PluginConfig)`);
  const c = `${at}.config`;
  const vm = config['vmConfig'] as ProtoJson | undefined;
  if (vm === undefined) throw new ConfigError(`${c}.vmConfig: required (this proxy runs no shared WasmService VMs)`);
  const runtime = String(vm['runtime'] ?? '');
  if (runtime === 'envoy.wasm.runtime.null') throw new ConfigError(`${c}.vmConfig.runtime: envoy.wasm.runtime.null runs plugins compiled into Envoy, which this proxy does not have`);
  if (!WASM_RUNTIMES.includes(runtime)) throw new ConfigError(`${c}.vmConfig.runtime: unknown runtime ${JSON.stringify(runtime)} (expected ${WASM_RUNTIMES.filter((r) => r !== '').join(', ')})`);
  const caps = config['capabilityRestrictionConfig'] as ProtoJson | undefined;
  const allowed = caps === undefined ? undefined : Object.keys((caps['allowedCapabilities'] as ProtoJson | undefined) ?? {}).sort();
  const envVars = (vm['environmentVariables'] ?? {}) as ProtoJson;
  const env: [string, string][] = [];
  for (const k of (envVars['hostEnvKeys'] as string[] | undefined) ?? []) {
    const v = process.env[k];
    if (v !== undefined) env.push([k, v]);
  }
  for (const [k, v] of Object.entries((envVars['keyValues'] as Record<string, string> | undefined) ?? {})) env.push([k, String(v)]);
  const expectedSha = env.find(([k]) => k === MODULE_SHA256_ENV)?.[1];
  const fetchError = env.find(([k]) => k === MODULE_ERROR_ENV)?.[1];
  const code = moduleCode(vm['code'] as ProtoJson | undefined, `${c}.vmConfig.code`, expectedSha, fetchError);
  const spec = {
    name: String(config['name'] ?? ''),
    rootId: String(config['rootId'] ?? ''),
    vmId: String(vm['vmId'] ?? ''),
    failOpen: config['failOpen'] === true,
    pluginConfiguration: anyBytes(config['configuration'] as ProtoJson | undefined, `${c}.configuration`),
    vmConfiguration: anyBytes(vm['configuration'] as ProtoJson | undefined, `${c}.vmConfig.configuration`),
    env,
    code,
    ...(allowed !== undefined ? { allowedCapabilities: allowed } : {}),
  };
  const key = JSON.stringify([
    spec.name, spec.rootId, spec.vmId, spec.failOpen, digest(spec.pluginConfiguration), digest(spec.vmConfiguration), env,
    'error' in code ? code.error : code.sha256, allowed ?? null,
  ]);
  return { ...spec, key, at };
}

/** An ECDS resource: a TypedExtensionConfig carrying a Wasm filter config. */
export function compileExtensionConfig(resource: ProtoJson, at: string): WasmPluginSpec {
  const tc = resource['typedConfig'] as ProtoJson | undefined;
  const type = String(tc?.['@type'] ?? '');
  if (tc === undefined) throw new ConfigError(`${at}.typedConfig: required`);
  if (type !== WASM_HTTP_TYPE) throw new ConfigError(`${at}.typedConfig: ${type || 'an untyped config'} is not a filter this proxy takes over ECDS (only ${WASM_HTTP_TYPE})`);
  return compileWasmConfig(tc, `${at}.typedConfig`);
}

/** An HCM HTTP filter that runs WASM, inline or by config_discovery. */
export function compileWasmFilter(filter: ProtoJson, at: string, position: WasmPosition): WasmFilterConfig {
  const name = String(filter['name'] ?? '');
  const tc = filter['typedConfig'] as ProtoJson | undefined;
  // a TypedStruct carries the Wasm message as its value (a Struct in JSON form)
  if (tc !== undefined && tc['@type'] !== WASM_HTTP_TYPE) return { name, position, inline: compileWasmConfig((tc['value'] ?? {}) as ProtoJson, `${at}.typedConfig.value`) };
  if (tc !== undefined) return { name, position, inline: compileWasmConfig(tc, `${at}.typedConfig`) };
  const cd = filter['configDiscovery'] as ProtoJson;
  const types = (cd['typeUrls'] as string[] | undefined) ?? [];
  if (!types.includes(WASM_HTTP_TYPE)) throw new ConfigError(`${at}.configDiscovery.typeUrls: must include ${WASM_HTTP_TYPE}`);
  const other = types.filter((t) => t !== WASM_HTTP_TYPE);
  if (other.length > 0) throw new ConfigError(`${at}.configDiscovery.typeUrls: ${other.join(', ')} cannot be served over ECDS by this proxy (only Wasm filters)`);
  if (name === '') throw new ConfigError(`${at}.name: a discovered filter needs a name (the ECDS resource it runs)`);
  const def = cd['defaultConfig'] as ProtoJson | undefined;
  let defaultConfig: WasmPluginSpec | undefined;
  if (def !== undefined) {
    if (def['@type'] !== WASM_HTTP_TYPE) throw new ConfigError(`${at}.configDiscovery.defaultConfig: must be a ${WASM_HTTP_TYPE}`);
    defaultConfig = compileWasmConfig(def, `${at}.configDiscovery.defaultConfig`);
  }
  return { name, position, discovery: { resource: name, ...(defaultConfig !== undefined ? { defaultConfig } : {}) } };
}

function digest(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Envoy's anyToBytes: a StringValue's text, a BytesValue's bytes, else the message's proto encoding. */
function anyBytes(any: ProtoJson | undefined, at: string): Uint8Array {
  if (any === undefined) return new Uint8Array(0);
  const type = String(any['@type'] ?? '');
  if (type === STRING_VALUE) return Buffer.from(String(any['value'] ?? ''), 'utf8');
  if (type === BYTES_VALUE) return Buffer.from(String(any['value'] ?? ''), 'base64');
  if (type === '') throw new ConfigError(`${at}: an Any without @type`);
  try {
    const { '@type': _t, ...body } = any;
    // well-known types with a JSON value (Struct, Value) keep it under "value"
    const json = type.endsWith('google.protobuf.Struct') || type.endsWith('google.protobuf.Value') ? (body['value'] as ProtoJson) : body;
    return encodeMessage(type, json);
  } catch (err) {
    throw new ConfigError(`${at}: cannot encode ${type}: ${(err as Error).message}`);
  }
}

/** The module bytes from vm_config.code, or why there are none (checked against `sha256` when given). */
function moduleCode(code: ProtoJson | undefined, at: string, expectedSha: string | undefined, fetchError: string | undefined): WasmPluginSpec['code'] {
  if (code === undefined) throw new ConfigError(`${at}: required (local filename, inline_bytes or inline_string)`);
  const local = code['local'] as ProtoJson | undefined;
  const remote = code['remote'] as ProtoJson | undefined;
  if (remote !== undefined) {
    const uri = String((remote['httpUri'] as ProtoJson | undefined)?.['uri'] ?? '');
    if (fetchError !== undefined) return { error: `the control plane could not fetch the module ${uri}: ${fetchError}` };
    return { error: `remote code ${uri || '(no uri)'} is not fetched by this proxy: the control plane delivers modules inline (ECDS) or as local files` };
  }
  if (local === undefined) throw new ConfigError(`${at}: local or remote is required`);
  let bytes: Buffer;
  if (typeof local['filename'] === 'string') {
    const file = local['filename'];
    try {
      bytes = readFileSync(file);
    } catch (err) {
      return { error: `cannot read module file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
    }
  } else if (typeof local['inlineBytes'] === 'string') {
    bytes = Buffer.from(local['inlineBytes'], 'base64');
  } else if (typeof local['inlineString'] === 'string') {
    bytes = Buffer.from(local['inlineString'], 'utf8');
  } else if (typeof local['environmentVariable'] === 'string') {
    const v = process.env[local['environmentVariable']];
    if (v === undefined) return { error: `environment variable ${local['environmentVariable']} (the module) is not set` };
    bytes = Buffer.from(v, 'base64');
  } else {
    throw new ConfigError(`${at}.local: needs filename, inline_bytes or inline_string`);
  }
  if (bytes.length > MAX_MODULE_BYTES) return { error: `module of ${bytes.length} bytes is larger than the ${MAX_MODULE_BYTES} bytes allowed` };
  const sha256 = digest(bytes);
  const want = expectedSha?.toLowerCase() ?? (remote as ProtoJson | undefined)?.['sha256'];
  if (typeof want === 'string' && want !== '' && want !== sha256) return { error: `module checksum mismatch: sha256 ${sha256}, expected ${want}` };
  return { bytes, sha256 };
}
