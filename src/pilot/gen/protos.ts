// Extension protos loaded on demand: the shared root carries what the pilot always emits;
// EnvoyFilter values and some listener filters name other extensions (Lua, Wasm, TLS inspector).
import { readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { PROTO_INCLUDE_DIRS, envoyRoot, messageType } from '../../envoy/index.ts';

const loadedDirs = new Set<string>();

/**
 * Loads the protos of an extension type a patch names (Lua, Wasm, ext_authz, …) on first
 * use: the shared root carries only what the pilot itself emits.
 */
export function ensureTypesIn(value: unknown): void {
  if (value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) { for (const v of value) ensureTypesIn(v); return; }
  for (const [k, v] of Object.entries(value)) {
    if ((k === '@type' || k === 'type_url' || k === 'typeUrl') && typeof v === 'string') ensureType(v);
    else ensureTypesIn(v);
  }
}

export function ensureType(url: string): void {
  const name = url.slice(url.lastIndexOf('/') + 1);
  try {
    messageType(name);
    return;
  } catch {
    // not loaded yet: find its package directory below
  }
  const pkg = name.split('.').slice(0, -1);
  for (const root of PROTO_INCLUDE_DIRS) {
    const dir = path.join(root, ...pkg);
    if (!existsSync(dir) || loadedDirs.has(dir)) continue;
    loadedDirs.add(dir);
    const files = readdirSync(dir).filter((f) => f.endsWith('.proto')).map((f) => path.join(...pkg, f));
    envoyRoot().loadSync(files, { keepCase: false });
    envoyRoot().resolveAll();
  }
}

