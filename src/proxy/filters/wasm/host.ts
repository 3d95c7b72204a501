// The proxy's WASM host: compiled modules (by content), live plugins (inline ones by config,
// ECDS ones by resource name), the state plugins share, the chains the router runs per
// connection manager, and the counters of what failures did.
import type pino from 'pino';
import type { ProtoJson } from '../../../envoy/index.ts';
import { ConfigError } from '../../config/fields.ts';
import { compileExtensionConfig } from './config.ts';
import type { WasmFilterConfig, WasmPosition } from './config.ts';
import { WasmPlugin } from './plugin.ts';
import type { PluginEnvironment, WasmPluginSpec } from './plugin.ts';
import { DEFAULT_SHARED_LIMITS, SharedData, SharedQueues, WasmMetrics } from './shared.ts';
import type { SharedLimits } from './shared.ts';
import { runWasmStage } from './stream.ts';
import type { StageEnvironment, WasmFilterSlot, WasmRequestView, WasmStageResult } from './stream.ts';
import { DEFAULT_VM_LIMITS, WasmModuleError, compileModule } from './vm.ts';
import type { CompiledModule, VmLimits } from './vm.ts';
import type { DownstreamRequest } from '../../http/index.ts';

export interface WasmHostOptions {
  logger: pino.Logger;
  /** The xDS node: `node.*` properties. */
  node?: ProtoJson;
  limits?: Partial<VmLimits>;
  sharedLimits?: Partial<SharedLimits>;
  /** Body bytes the WASM filters of one request may hold while paused; default 1 MiB (Envoy's buffer limit). */
  bufferLimit?: number;
  /** How long a request waits for a filter's ECDS config that has not arrived; default 2 s. */
  missingConfigWaitMs?: number;
}

/** The WASM filters of a connection manager, per point of the chain the router runs them at. */
export interface WasmChains {
  authn?: WasmChain;
  authz?: WasmChain;
  route?: WasmChain;
}

/** The WASM filters of one point of the chain. */
export class WasmChain {
  readonly slots: readonly WasmFilterSlot[];
  private readonly envr: StageEnvironment;

  constructor(slots: readonly WasmFilterSlot[], envr: StageEnvironment) {
    this.slots = slots;
    this.envr = envr;
  }

  /** Runs the request through these filters (see runWasmStage). */
  run(req: DownstreamRequest, view: WasmRequestView): Promise<WasmStageResult> {
    return runWasmStage(this.slots, req, view, this.envr);
  }
}

/** Compiled modules kept (by content and capability set). */
const MODULE_CACHE_SIZE = 32;

type Counter = 'fail_open' | 'fail_closed' | 'missing_config' | 'local_reply' | 'vm_failures';

export class WasmHost {
  readonly logger: pino.Logger;
  readonly limits: VmLimits;
  readonly queues: SharedQueues;
  readonly metrics: WasmMetrics;
  private readonly sharedLimits: SharedLimits;
  private readonly node: ProtoJson | undefined;
  private readonly bufferLimit: number;
  private readonly missingConfigWaitMs: number;
  private readonly modules = new Map<string, CompiledModule | WasmModuleError>();
  private readonly sharedByVm = new Map<string, SharedData>();
  /** Plugins configured inline in listeners, by spec key. */
  private readonly inline = new Map<string, WasmPlugin>();
  /** Plugins from ECDS, by resource name. */
  private readonly discovered = new Map<string, WasmPlugin>();
  /** Defaults of discovered filters while their resource is missing, by spec key. */
  private readonly defaults = new Map<string, WasmPlugin>();
  private readonly waiters = new Map<string, Set<(p: WasmPlugin | undefined) => void>>();
  private readonly chainsByConfig = new WeakMap<readonly WasmFilterConfig[], WasmChains>();
  private readonly counters = new Map<Counter, Map<string, number>>();
  private readonly stageEnv: StageEnvironment;
  private readonly envr: PluginEnvironment;
  private closed = false;

  constructor(opts: WasmHostOptions) {
    this.logger = opts.logger;
    this.limits = { ...DEFAULT_VM_LIMITS, ...opts.limits };
    this.sharedLimits = { ...DEFAULT_SHARED_LIMITS, ...opts.sharedLimits };
    this.queues = new SharedQueues(this.sharedLimits);
    this.metrics = new WasmMetrics(this.sharedLimits);
    this.node = opts.node;
    this.bufferLimit = opts.bufferLimit ?? 1024 * 1024;
    this.missingConfigWaitMs = opts.missingConfigWaitMs ?? 2000;
    this.stageEnv = { bufferLimit: this.bufferLimit, count: (event, plugin) => this.count(event, plugin) };
    this.envr = {
      logger: this.logger,
      limits: this.limits,
      compile: (spec) => this.compile(spec),
      shared: (vmId) => this.shared(vmId),
      queues: this.queues,
      metrics: this.metrics,
      nodeProperty: (path) => this.nodeProperty(path),
    };
  }

  /** The module of a spec, compiled once per content (and per capability restriction). */
  compile(spec: WasmPluginSpec): CompiledModule {
    const code = spec.code;
    if ('error' in code) throw new WasmModuleError(code.error);
    const key = `${code.sha256}|${spec.allowedCapabilities?.join(',') ?? '*'}`;
    let m = this.modules.get(key);
    if (m === undefined) {
      try {
        m = compileModule(code.bytes, this.limits);
        if (spec.allowedCapabilities !== undefined) {
          const allowed = new Set(spec.allowedCapabilities);
          const denied = m.imports.filter((i) => i.kind === 'function' && !allowed.has(i.name)).map((i) => `${i.module}.${i.name}`);
          if (denied.length > 0) throw new WasmModuleError(`the module imports ${denied.join(', ')}, which capability_restriction_config does not allow`);
        }
      } catch (err) {
        m = err instanceof WasmModuleError ? err : new WasmModuleError((err as Error).message);
      }
      this.modules.set(key, m);
      if (this.modules.size > MODULE_CACHE_SIZE) this.modules.delete(this.modules.keys().next().value!);
    }
    if (m instanceof WasmModuleError) throw m;
    return m;
  }

  shared(vmId: string): SharedData {
    let s = this.sharedByVm.get(vmId);
    if (s === undefined) this.sharedByVm.set(vmId, (s = new SharedData(this.sharedLimits)));
    return s;
  }

  /**
   * ECDS: every Wasm filter config this proxy should have (the whole set, as the xDS client
   * hands it). Throws ConfigError (NACK) when one is not a Wasm config this proxy can honour;
   * nothing changes then. A module that cannot run is not an error here: its plugin fails to
   * load and its fail_open decides.
   */
  applyExtensionConfigs(resources: ReadonlyMap<string, { resource: ProtoJson }>): void {
    const specs = new Map<string, WasmPluginSpec>();
    for (const [name, r] of resources) {
      const at = `TypedExtensionConfig ${name}`;
      const declared = String(r.resource['name'] ?? '');
      if (declared !== name) throw new ConfigError(`${at}.name: ${JSON.stringify(declared)} differs from the resource name`);
      specs.set(name, compileExtensionConfig(r.resource, at));
    }
    const retired: WasmPlugin[] = [];
    for (const [name, plugin] of this.discovered) {
      const next = specs.get(name);
      if (next === undefined || next.key !== plugin.spec.key) {
        retired.push(plugin);
        this.discovered.delete(name);
      }
    }
    for (const [name, spec] of specs) {
      if (this.discovered.has(name)) continue;
      const plugin = this.newPlugin(spec);
      this.discovered.set(name, plugin);
      const w = this.waiters.get(name);
      if (w !== undefined) {
        this.waiters.delete(name);
        for (const f of w) f(plugin);
      }
    }
    for (const p of retired) p.dispose();
  }

  /** Names of the ECDS configs applied (for admin and tests). */
  get extensionConfigNames(): string[] {
    return [...this.discovered.keys()];
  }

  /** The live plugin of an ECDS resource, or undefined. */
  discoveredPlugin(name: string): WasmPlugin | undefined {
    return this.discovered.get(name);
  }

  /**
   * The listeners changed: plugins of inline configs start now (so a bad module is reported
   * when it is configured, not at the first request), and the ones no listener names go.
   */
  listenersChanged(configs: Iterable<readonly WasmFilterConfig[]>): void {
    if (this.closed) return;
    const wanted = new Set<string>();
    const wantedDefaults = new Set<string>();
    for (const list of configs) {
      for (const f of list) {
        if (f.inline !== undefined) {
          wanted.add(f.inline.key);
          this.inlinePlugin(f.inline);
        }
        const d = f.discovery?.defaultConfig;
        if (d !== undefined) wantedDefaults.add(d.key);
      }
    }
    for (const [key, p] of this.inline) if (!wanted.has(key)) { this.inline.delete(key); p.dispose(); }
    for (const [key, p] of this.defaults) if (!wantedDefaults.has(key)) { this.defaults.delete(key); p.dispose(); }
  }

  /** The chains a connection manager's WASM filters make (one object per config, so the router context can keep it). */
  chains(configs: readonly WasmFilterConfig[]): WasmChains | undefined {
    if (configs.length === 0) return undefined;
    let c = this.chainsByConfig.get(configs);
    if (c !== undefined) return c;
    c = {};
    for (const pos of ['authn', 'authz', 'route'] as WasmPosition[]) {
      const here = configs.filter((f) => f.position === pos);
      if (here.length > 0) c[pos] = new WasmChain(here.map((f) => this.slot(f)), this.stageEnv);
    }
    this.chainsByConfig.set(configs, c);
    return c;
  }

  private slot(f: WasmFilterConfig): WasmFilterSlot {
    if (f.inline !== undefined) {
      const spec = f.inline;
      return { name: f.name, plugin: () => this.inlinePlugin(spec), waitForPlugin: () => Promise.resolve(this.inlinePlugin(spec)) };
    }
    const d = f.discovery!;
    const fallback = (): WasmPlugin | undefined => (d.defaultConfig === undefined ? undefined : this.defaultPlugin(d.defaultConfig));
    return {
      name: f.name,
      plugin: () => this.discovered.get(d.resource) ?? fallback(),
      waitForPlugin: () => this.waitFor(d.resource),
    };
  }

  private inlinePlugin(spec: WasmPluginSpec): WasmPlugin {
    let p = this.inline.get(spec.key);
    if (p === undefined) this.inline.set(spec.key, (p = this.newPlugin(spec)));
    return p;
  }

  private defaultPlugin(spec: WasmPluginSpec): WasmPlugin {
    let p = this.defaults.get(spec.key);
    if (p === undefined) this.defaults.set(spec.key, (p = this.newPlugin(spec)));
    return p;
  }

  private waitFor(name: string): Promise<WasmPlugin | undefined> {
    const now = this.discovered.get(name);
    if (now !== undefined || this.closed) return Promise.resolve(now);
    return new Promise((resolve) => {
      let set = this.waiters.get(name);
      if (set === undefined) this.waiters.set(name, (set = new Set()));
      const done = (p: WasmPlugin | undefined): void => {
        clearTimeout(timer);
        set.delete(done);
        resolve(p);
      };
      const timer = setTimeout(() => done(undefined), this.missingConfigWaitMs);
      timer.unref();
      set.add(done);
    });
  }

  private newPlugin(spec: WasmPluginSpec): WasmPlugin {
    const p = new WasmPlugin(spec, this.envr);
    p.onFailure = (plugin) => this.count('vm_failures', plugin.spec.name);
    return p;
  }

  private count(event: Counter, plugin: string): void {
    let m = this.counters.get(event);
    if (m === undefined) this.counters.set(event, (m = new Map()));
    m.set(plugin, (m.get(plugin) ?? 0) + 1);
  }

  /** How often `event` happened for `plugin` (a filter or plugin name). */
  counted(event: Counter, plugin: string): number {
    return this.counters.get(event)?.get(plugin) ?? 0;
  }

  /** Every plugin now live, with why it cannot run when it cannot (admin, tests). */
  status(): { name: string; at: string; failOpen: boolean; failure: string | undefined; stats: WasmPlugin['stats'] }[] {
    return [...this.discovered.values(), ...this.inline.values(), ...this.defaults.values()].map((p) => ({
      name: p.spec.name, at: p.spec.at, failOpen: p.spec.failOpen, failure: p.failure, stats: { ...p.stats },
    }));
  }

  private nodeProperty(path: readonly string[]): Uint8Array | undefined {
    const node = this.node;
    if (node === undefined || path[0] !== 'node') return undefined;
    let v: unknown = node;
    for (const p of path.slice(1)) {
      if (v === null || typeof v !== 'object') return undefined;
      v = (v as Record<string, unknown>)[p === 'metadata' ? 'metadata' : p];
    }
    if (v === undefined) return undefined;
    return Buffer.from(typeof v === 'string' ? v : JSON.stringify(v), 'utf8');
  }

  /** Prometheus text: what failures did, and the metrics plugins defined. */
  exposition(): string {
    const help: Record<Counter, string> = {
      fail_open: 'Requests that went on without a WASM plugin that failed or could not run (fail open).',
      fail_closed: 'Requests answered 503 because a WASM plugin failed or could not run (fail closed).',
      missing_config: 'Requests answered 500 because a WASM filter\'s ECDS config had not arrived.',
      local_reply: 'Requests a WASM plugin answered itself (proxy_send_local_response).',
      vm_failures: 'WASM VMs that failed (trap, per-call budget exhausted, exit); each is replaced for later requests.',
    };
    const lines: string[] = [];
    for (const [event, text] of Object.entries(help) as [Counter, string][]) {
      const name = `sextant_wasm_${event}_total`;
      lines.push(`# HELP ${name} ${text}`, `# TYPE ${name} counter`);
      for (const [plugin, n] of this.counters.get(event) ?? []) lines.push(`${name}{plugin="${plugin.replace(/["\\\n]/g, '_')}"} ${n}`);
    }
    const custom = this.metrics.exposition();
    return custom === '' ? lines.join('\n') : `${lines.join('\n')}\n${custom}`;
  }

  close(): void {
    this.closed = true;
    for (const p of [...this.inline.values(), ...this.discovered.values(), ...this.defaults.values()]) p.dispose();
    this.inline.clear();
    this.discovered.clear();
    this.defaults.clear();
    for (const [, set] of this.waiters) for (const f of set) f(undefined);
    this.waiters.clear();
  }
}

/** The WASM filter configs of every HTTP connection manager of these listeners. */
export function wasmConfigsOf(listeners: Iterable<{ filterChains: readonly { network: { kind: string; wasm?: readonly WasmFilterConfig[] } }[]; defaultChain?: { network: { kind: string; wasm?: readonly WasmFilterConfig[] } } | undefined }>): (readonly WasmFilterConfig[])[] {
  const out: (readonly WasmFilterConfig[])[] = [];
  for (const l of listeners) {
    for (const c of l.defaultChain === undefined ? l.filterChains : [...l.filterChains, l.defaultChain]) {
      if (c.network.kind === 'http' && c.network.wasm !== undefined) out.push(c.network.wasm);
    }
  }
  return out;
}

/** The ECDS resource names these configs run (what the proxy subscribes to). */
export function extensionConfigNames(configs: Iterable<readonly WasmFilterConfig[]>): Set<string> {
  const names = new Set<string>();
  for (const list of configs) for (const f of list) if (f.discovery !== undefined) names.add(f.discovery.resource);
  return names;
}
