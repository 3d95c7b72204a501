// The modules of the WasmPlugins in force, fetched once by the pilot (not by every proxy) and
// kept while a plugin names them: by URL and stated sha256, and for imagePullPolicy Always also
// by the plugin's version (a changed plugin pulls again). A module that arrives, or fails, is
// reported by plugin key so that the plugins using it are pushed again.
import type { Logger } from 'pino';
import type { ModuleSnapshot, ModuleState, WasmPluginRef } from '../gen/wasm.ts';
import { ModuleFetchError, fetchModule } from './fetch.ts';
import type { FetchLimits, FetchedModule } from './fetch.ts';

export interface WasmModuleStoreOptions {
  logger: Logger;
  limits?: Partial<FetchLimits>;
  /** Bytes of modules kept at most; a module past it fails with that reason. Default 256 MiB. */
  cacheBytes?: number;
  /** A failed fetch is tried again after this long (while a plugin still names it); default 30 s. */
  retryMs?: number;
  /** Called with the keys (`WasmPlugin/NS/NAME`) of plugins whose module arrived or failed. */
  onChange?: (pluginKeys: string[]) => void;
  /** The fetch itself (tests); default fetchModule. */
  fetcher?: (url: string, sha256: string | undefined, limits: FetchLimits) => Promise<FetchedModule>;
}

export const DEFAULT_FETCH_LIMITS: FetchLimits = Object.freeze({ maxBytes: 32 * 1024 * 1024, timeoutMs: 30_000, insecureRegistries: [] });

interface Entry {
  state: ModuleState;
  /** Plugins that name this module now. */
  users: Set<string>;
  retry?: NodeJS.Timeout;
}

export class WasmModuleStore implements ModuleSnapshot {
  private readonly entries = new Map<string, Entry>();
  private readonly opts: WasmModuleStoreOptions;
  readonly limits: FetchLimits;
  private readonly cacheBytes: number;
  private closed = false;

  constructor(opts: WasmModuleStoreOptions) {
    this.opts = opts;
    this.limits = { ...DEFAULT_FETCH_LIMITS, ...opts.limits };
    this.cacheBytes = opts.cacheBytes ?? 256 * 1024 * 1024;
  }

  /** The state of a plugin's module (pending until sync has started and finished its fetch). */
  module(p: WasmPluginRef): ModuleState {
    return this.entries.get(fetchKey(p))?.state ?? { state: 'pending' };
  }

  /** Starts fetching the modules `plugins` name and forgets the ones no plugin names any more. */
  sync(plugins: readonly WasmPluginRef[]): void {
    if (this.closed) return;
    const wanted = new Map<string, Set<string>>();
    for (const p of plugins) {
      if (p.spec.url.startsWith('file://')) continue; // the proxy reads those itself
      const k = fetchKey(p);
      let users = wanted.get(k);
      if (users === undefined) wanted.set(k, (users = new Set()));
      users.add(p.key);
    }
    for (const [k, e] of this.entries) {
      if (wanted.has(k)) continue;
      if (e.retry !== undefined) clearTimeout(e.retry);
      this.entries.delete(k);
    }
    for (const [k, users] of wanted) {
      const e = this.entries.get(k);
      if (e !== undefined) {
        e.users = users;
        continue;
      }
      const entry: Entry = { state: { state: 'pending' }, users };
      this.entries.set(k, entry);
      const p = plugins.find((x) => fetchKey(x) === k)!;
      this.start(k, entry, p.spec.url, p.spec.sha256 || undefined);
    }
  }

  /** Every module known, with its state (for /debug and tests). */
  status(): { key: string; state: string; sha256?: string; bytes?: number; error?: string; plugins: string[] }[] {
    return [...this.entries].map(([key, e]) => ({
      key, state: e.state.state, plugins: [...e.users].sort(),
      ...(e.state.state === 'ready' ? { sha256: e.state.sha256, bytes: e.state.bytes.length } : {}),
      ...(e.state.state === 'failed' ? { error: e.state.error } : {}),
    }));
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) if (e.retry !== undefined) clearTimeout(e.retry);
    this.entries.clear();
  }

  private start(key: string, entry: Entry, url: string, sha: string | undefined): void {
    const fetcher = this.opts.fetcher ?? fetchModule;
    const log = this.opts.logger;
    log.info({ url }, 'fetching WASM module');
    fetcher(url, sha, this.limits).then((m) => {
      if (this.entries.get(key) !== entry) return;
      const held = [...this.entries.values()].reduce((n, e) => n + (e.state.state === 'ready' ? e.state.bytes.length : 0), 0);
      if (held + m.bytes.length > this.cacheBytes) throw new ModuleFetchError(`the pilot's module cache (${this.cacheBytes} bytes) is full`);
      entry.state = { state: 'ready', bytes: m.bytes, sha256: m.sha256 };
      log.info({ url, sha256: m.sha256, bytes: m.bytes.length }, 'WASM module fetched');
      this.changed(entry);
    }).catch((err: unknown) => {
      if (this.entries.get(key) !== entry) return;
      const error = err instanceof Error ? err.message : String(err);
      entry.state = { state: 'failed', error };
      log.error({ url, err: error, plugins: [...entry.users] }, 'WASM module could not be fetched; its plugins fail to load on the proxies');
      this.changed(entry);
      const retry = setTimeout(() => {
        if (this.closed || this.entries.get(key) !== entry) return;
        entry.retry = undefined;
        this.start(key, entry, url, sha);
      }, this.opts.retryMs ?? 30_000);
      retry.unref();
      entry.retry = retry;
    });
  }

  private changed(entry: Entry): void {
    if (!this.closed) this.opts.onChange?.([...entry.users]);
  }
}

/**
 * What a module is cached by: its URL and stated sha256, and for imagePullPolicy Always (the
 * default for an OCI `latest` or untagged reference, as Istio's) the plugin's version too.
 */
export function fetchKey(p: WasmPluginRef): string {
  const url = p.spec.url;
  const policy = p.spec.imagePullPolicy === undefined || p.spec.imagePullPolicy === 'UNSPECIFIED_POLICY' ? defaultPolicy(url) : p.spec.imagePullPolicy;
  return `${url}|${p.spec.sha256 ?? ''}${policy === 'Always' ? `|${p.key}@${p.version}` : ''}`;
}

function defaultPolicy(url: string): 'Always' | 'IfNotPresent' {
  if (/^https?:\/\//i.test(url)) return 'IfNotPresent';
  const ref = url.replace(/^oci:\/\//i, '');
  if (ref.includes('@')) return 'IfNotPresent';
  const last = ref.slice(ref.lastIndexOf('/') + 1);
  const colon = last.indexOf(':');
  return colon < 0 || last.slice(colon + 1) === 'latest' ? 'Always' : 'IfNotPresent';
}
