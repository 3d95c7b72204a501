// A configured Proxy-Wasm plugin: its VM and plugin (root) context through their life (start,
// configure, ticks, done), what a failure does to it (the VM is replaced for later requests, at
// most MAX_RELOADS times a minute, the crash-loop guard of the ABI's security notes), and its
// counters. A plugin that cannot run says why in `failure`; the filter then applies fail_open.
import type pino from 'pino';
import { LogLevel, Status } from './abi.ts';
import type { HostContext, LocalResponse, VmServices } from './host-calls.ts';
import type { SharedData, SharedQueues, WasmMetrics } from './shared.ts';
import { VmFailure, WasmModuleError, WasmVm } from './vm.ts';
import type { CompiledModule, ContextHandler, VmLimits } from './vm.ts';

/** A plugin as configured (pure data, from a Wasm filter config or an ECDS resource). */
export interface WasmPluginSpec {
  /** The whole config with the code by its sha256: equal keys share one live plugin. */
  key: string;
  /** Where it was configured (`Listener x.filterChains[0]…` or `ECDS name`), for messages. */
  at: string;
  name: string;
  rootId: string;
  vmId: string;
  failOpen: boolean;
  pluginConfiguration: Uint8Array;
  vmConfiguration: Uint8Array;
  /** vm_config.environment_variables: key_values, and host_env_keys read from the proxy's environment. */
  env: readonly (readonly [string, string])[];
  /** The module, or why there is none (unreadable file, checksum mismatch, not delivered). */
  code: { bytes: Uint8Array; sha256: string } | { error: string };
  /** capability_restriction_config: the only host calls the module may import, when given. */
  allowedCapabilities?: readonly string[];
}

/** What plugins get from the proxy's WASM host. */
export interface PluginEnvironment {
  logger: pino.Logger;
  limits: VmLimits;
  compile(spec: WasmPluginSpec): CompiledModule;
  shared(vmId: string): SharedData;
  queues: SharedQueues;
  metrics: WasmMetrics;
  nodeProperty(path: readonly string[]): Uint8Array | undefined;
}

/** VM replacements allowed per minute after failures; past it the plugin stays failed until the minute ends. */
export const MAX_RELOADS = 10;
const RELOAD_WINDOW_MS = 60_000;
/** The shortest tick period a plugin may ask for. */
export const MIN_TICK_MS = 10;

/** A context the plugin (root) owns: host calls on it have no maps or bodies. */
class RootContext implements HostContext {
  readonly id: number;
  readonly kind = 'root' as const;
  constructor(id: number) {
    this.id = id;
  }
  map(): null { return null; }
  body(): null { return null; }
  sendLocalResponse(_r: LocalResponse): number { return Status.BAD_ARGUMENT; }
  continueStream(): number { return Status.BAD_ARGUMENT; }
  closeStream(): number { return Status.BAD_ARGUMENT; }
  property(): undefined { return undefined; }
  setProperty(): number { return Status.NOT_FOUND; }
}

const PINO_LEVELS: Record<string, number> = { trace: LogLevel.TRACE, debug: LogLevel.DEBUG, info: LogLevel.INFO, warn: LogLevel.WARN, error: LogLevel.ERROR, fatal: LogLevel.CRITICAL, silent: LogLevel.CRITICAL + 1 };

export class WasmPlugin {
  readonly spec: WasmPluginSpec;
  private readonly envr: PluginEnvironment;
  private readonly log: pino.Logger;
  private vm: WasmVm | undefined;
  private root: RootContext | undefined;
  /** Why the plugin cannot run now (undefined while it runs). */
  failure: string | undefined;
  /** True when the failure is the module or its configuration, which a reload would not fix. */
  private permanent = false;
  private readonly reloadTimes: number[] = [];
  private tick: NodeJS.Timeout | undefined;
  private disposed = false;
  /** Contexts whose proxy_on_done returned false: finished by proxy_done. */
  private readonly awaitingDone = new Map<number, () => void>();
  readonly stats = { vmStarts: 0, vmFailures: 0, failOpen: 0, failClosed: 0 };
  /** Run after a VM failed (the host counts it); set by the host. */
  onFailure: ((plugin: WasmPlugin, failure: string) => void) | undefined;

  constructor(spec: WasmPluginSpec, envr: PluginEnvironment) {
    this.spec = spec;
    this.envr = envr;
    this.log = envr.logger.child({ wasmPlugin: spec.name, rootId: spec.rootId });
    this.start();
  }

  /** The VM to run a stream on; undefined when the plugin cannot run (`failure` says why). */
  vmForStream(): WasmVm | undefined {
    if (this.disposed) return undefined;
    if (this.vm !== undefined && this.vm.broken === undefined) return this.vm;
    if (this.permanent || !this.mayReload()) return undefined;
    this.start();
    return this.vm;
  }

  /** The root context id streams are created under. */
  get rootContextId(): number {
    return this.root?.id ?? 0;
  }

  /** A stream's VM call failed: the VM is done for; later streams get a new one (bounded). */
  vmFailed(vm: WasmVm, failure: VmFailure): void {
    if (this.vm !== vm) return;
    this.stats.vmFailures++;
    this.failure = failure.message;
    this.stopTicks();
    this.log.error({ kind: failure.kind, err: failure.message, failOpen: this.spec.failOpen }, 'WASM plugin failed; its VM is replaced for later requests');
    this.onFailure?.(this, failure.message);
  }

  /** Called by a stream whose proxy_on_done returned false: `finish` runs at proxy_done. */
  deferDone(ctx: ContextHandler, finish: () => void): void {
    this.awaitingDone.set(ctx.id, finish);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.stopTicks();
    const vm = this.vm;
    const root = this.root;
    if (vm !== undefined && root !== undefined && vm.broken === undefined) {
      try {
        vm.call(root, 'proxy_on_done', root.id);
        vm.call(root, 'proxy_on_delete', root.id);
      } catch { /* a plugin failing on its way out changes nothing */ }
    }
    this.envr.queues.detach(this.queueReady);
    this.vm = undefined;
  }

  private mayReload(): boolean {
    const now = Date.now();
    while (this.reloadTimes.length > 0 && now - this.reloadTimes[0]! > RELOAD_WINDOW_MS) this.reloadTimes.shift();
    return this.reloadTimes.length < MAX_RELOADS;
  }

  private start(): void {
    const code = this.spec.code;
    if ('error' in code) {
      this.fail(code.error, true);
      return;
    }
    let compiled: CompiledModule;
    try {
      compiled = this.envr.compile(this.spec);
    } catch (err) {
      this.fail(err instanceof WasmModuleError ? `module refused: ${err.message}` : `module refused: ${(err as Error).message}`, true);
      return;
    }
    if (this.stats.vmStarts > 0) this.reloadTimes.push(Date.now());
    this.stats.vmStarts++;
    let vm: WasmVm;
    try {
      vm = new WasmVm(compiled, this.services(), this.envr.limits);
    } catch (err) {
      this.fail(`VM did not start: ${(err as Error).message}`, false);
      return;
    }
    const root = new RootContext(vm.newContextId());
    vm.contexts.set(root.id, root);
    this.vm = vm;
    this.root = root;
    try {
      // Envoy's order: _initialize (or _start), the plugin context, vm start, configure.
      if (vm.has('_initialize')) {
        vm.call(undefined, '_initialize');
        if (vm.has('main')) vm.call(undefined, 'main', 0, 0);
      } else if (vm.has('_start')) {
        vm.call(undefined, '_start');
      }
      vm.call(root, 'proxy_on_context_create', root.id, 0);
      if (vm.has('proxy_on_vm_start') && vm.call(root, 'proxy_on_vm_start', root.id, this.spec.vmConfiguration.length) === 0) {
        this.fail('proxy_on_vm_start returned false: the plugin refused its VM configuration', true);
        return;
      }
      if (vm.has('proxy_on_configure') && vm.call(root, 'proxy_on_configure', root.id, this.spec.pluginConfiguration.length) === 0) {
        this.fail('proxy_on_configure returned false: the plugin refused its configuration', true);
        return;
      }
    } catch (err) {
      this.fail(`plugin did not start: ${(err as Error).message}`, true);
      return;
    }
    if (this.failure !== undefined) this.log.info({ module: compiled.sha256 }, 'WASM plugin VM replaced after a failure');
    else this.log.info({ module: compiled.sha256, abi: compiled.abi, bytes: compiled.size }, 'WASM plugin started');
    this.failure = undefined;
  }

  private fail(message: string, permanent: boolean): void {
    this.failure = message;
    this.permanent = permanent;
    this.vm = undefined;
    this.stopTicks();
    this.log.error({ at: this.spec.at, err: message, failOpen: this.spec.failOpen }, `WASM plugin cannot run: requests ${this.spec.failOpen ? 'skip it (fail open)' : 'are answered 503 (fail closed)'}`);
  }

  private stopTicks(): void {
    if (this.tick !== undefined) clearInterval(this.tick);
    this.tick = undefined;
  }

  private readonly queueReady = (queueId: number): void => {
    const vm = this.vm;
    const root = this.root;
    if (vm === undefined || root === undefined || vm.broken !== undefined) return;
    try {
      vm.call(root, 'proxy_on_queue_ready', root.id, queueId);
    } catch (err) {
      this.vmFailed(vm, err as VmFailure);
    }
  };

  private services(): VmServices {
    const spec = this.spec;
    const envr = this.envr;
    const log = this.log;
    return {
      pluginName: spec.name,
      rootId: spec.rootId,
      vmId: spec.vmId,
      vmConfiguration: spec.vmConfiguration,
      pluginConfiguration: spec.pluginConfiguration,
      env: spec.env,
      log: (level, message) => {
        if (level <= LogLevel.DEBUG) log.debug(message);
        else if (level === LogLevel.INFO) log.info(message);
        else if (level === LogLevel.WARN) log.warn(message);
        else log.error(message);
      },
      logLevel: () => PINO_LEVELS[log.level] ?? LogLevel.INFO,
      setTickPeriod: (ms) => this.setTick(ms),
      shared: envr.shared(spec.vmId),
      queues: envr.queues,
      metrics: envr.metrics,
      nodeProperty: (path) => {
        if (path.length === 1) {
          if (path[0] === 'plugin_name') return Buffer.from(spec.name);
          if (path[0] === 'plugin_root_id') return Buffer.from(spec.rootId);
          if (path[0] === 'plugin_vm_id') return Buffer.from(spec.vmId);
        }
        return envr.nodeProperty(path);
      },
      queueReady: this.queueReady,
      done: (ctx) => {
        const finish = this.awaitingDone.get(ctx.id);
        if (finish === undefined) return Status.NOT_FOUND;
        this.awaitingDone.delete(ctx.id);
        queueMicrotask(finish);
        return Status.OK;
      },
    };
  }

  private setTick(ms: number): void {
    this.stopTicks();
    if (ms === 0 || this.disposed) return;
    const vm = this.vm;
    const root = this.root;
    this.tick = setInterval(() => {
      if (this.vm !== vm || vm === undefined || root === undefined || vm.broken !== undefined) {
        this.stopTicks();
        return;
      }
      try {
        vm.call(root, 'proxy_on_tick', root.id);
      } catch (err) {
        this.vmFailed(vm, err as VmFailure);
      }
    }, Math.max(MIN_TICK_MS, ms));
    this.tick.unref();
  }
}
