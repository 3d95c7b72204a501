// A stand-in for the kubelet, as far as start order goes (M10): it runs an injected pod's
// containers as local processes the way the kubelet starts them. Init containers one after
// another, each to a successful exit; then the containers in their order, each followed by
// its postStart exec hook, and the next container is started only once that hook has
// returned (a failed hook kills the pod). `$(VAR)` in commands and args is expanded from the
// container's env, with the downward API's metadata.name, metadata.namespace, status.podIP and spec.serviceAccountName
// filled in; an emptyDir volume is a temp directory, a ConfigMap or Secret volume a directory
// holding the items of that object (from RunOptions.objects: a missing one fails the start, as
// the kubelet holds such a pod), and env values and args under a mount path point there. Images are ignored: `sextant` is this checkout's CLI, `node` this Node.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const CLI = path.resolve(import.meta.dirname, '..', '..', 'bin', 'sextant.mjs');

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}

export interface ContainerSpec {
  name: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  volumeMounts?: { name: string; mountPath: string }[];
  lifecycle?: { postStart?: { exec?: { command: string[] } } };
}

export interface VolumeSpec {
  name: string;
  emptyDir?: unknown;
  configMap?: { name: string; items?: { key: string; path: string }[] };
  secret?: { secretName: string; items?: { key: string; path: string }[] };
}

export interface PodSpec {
  metadata: { name: string; namespace?: string };
  spec: { serviceAccountName?: string; initContainers?: ContainerSpec[]; containers: ContainerSpec[]; volumes?: VolumeSpec[] };
}

export interface PodEvent {
  /** ms since the pod was started. */
  t: number;
  what: string;
}

export interface RunOptions {
  podIP: string;
  /** Logs (one file per container and hook) and emptyDir volumes go here. */
  dir: string;
  /** Start the next container without waiting for postStart (the race M10 is about): a control. */
  skipPostStart?: boolean;
  /** How long an init container or a hook may run; default 90 s (the hook's own timeout is shorter). */
  stepTimeoutMs?: number;
  /** The namespace's ConfigMaps and Secrets the pod's volumes name: `ConfigMap/NAME` or `Secret/NAME` → key → content. */
  objects?: Record<string, Record<string, string>>;
}

export interface RunningPod {
  events: PodEvent[];
  /** Resolves with a container's exit code once it ends. */
  exited(container: string): Promise<number | null>;
  /** Every container: SIGTERM to its process group, SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` escapes, the rest stays. */
export function expand(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$';
    return name !== undefined && Object.hasOwn(env, name) ? env[name]! : m;
  });
}

function resolveCommand(argv: string[]): [string, string[]] {
  const [bin, ...rest] = argv;
  if (bin === 'sextant') return [process.execPath, [CLI, ...rest]];
  if (bin === 'node') return [process.execPath, rest];
  return [bin!, rest];
}

/** A path inside the container, as it is on this host (under the volume mounted there). */
function hostPath(value: string, c: ContainerSpec, volumes: Map<string, string>): string {
  for (const m of c.volumeMounts ?? []) {
    const dir = volumes.get(m.name);
    if (dir !== undefined && (value === m.mountPath || value.startsWith(`${m.mountPath}/`))) return dir + value.slice(m.mountPath.length);
  }
  return value;
}

function containerEnv(c: ContainerSpec, pod: PodSpec, o: RunOptions, volumes: Map<string, string>): Record<string, string> {
  const fields: Record<string, string> = {
    'metadata.name': pod.metadata.name, 'metadata.namespace': pod.metadata.namespace ?? 'default', 'status.podIP': o.podIP,
    // the API server's admission fills in the namespace's default service account
    'spec.serviceAccountName': pod.spec.serviceAccountName ?? 'default',
  };
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    const value = field !== undefined ? fields[field] : expand(e.value ?? '', env);
    if (value === undefined) throw new Error(`container ${c.name}: env ${e.name}: fieldRef ${field} is not emulated`);
    env[e.name] = hostPath(value, c, volumes);
  }
  return env;
}

/** The command line of a container: `$(VAR)` expanded, paths under a mount made this host's. */
function containerArgv(argv: string[], c: ContainerSpec, env: Record<string, string>, volumes: Map<string, string>): string[] {
  return argv.map((a) => hostPath(expand(a, env), c, volumes));
}

/** Each volume as a directory under `dir`: empty, or holding the items of its ConfigMap or Secret. */
function materializeVolumes(pod: PodSpec, o: RunOptions): Map<string, string> {
  const volumes = new Map<string, string>();
  for (const v of pod.spec.volumes ?? []) {
    const source = v.configMap !== undefined ? { ref: `ConfigMap/${v.configMap.name}`, items: v.configMap.items } : v.secret !== undefined ? { ref: `Secret/${v.secret.secretName}`, items: v.secret.items } : undefined;
    if (v.emptyDir === undefined && source === undefined) continue;
    const dir = path.join(o.dir, 'volumes', v.name);
    mkdirSync(dir, { recursive: true });
    volumes.set(v.name, dir);
    if (source === undefined) continue;
    const data = o.objects?.[source.ref];
    if (data === undefined) throw new Error(`volume ${v.name}: the namespace has no ${source.ref}`);
    for (const { key, path: file } of source.items ?? Object.keys(data).map((k) => ({ key: k, path: k }))) {
      if (data[key] === undefined) throw new Error(`volume ${v.name}: ${source.ref} has no key ${key}`);
      writeFileSync(path.join(dir, file), data[key]);
    }
  }
  return volumes;
}

/** Starts the pod; resolves once the last container is started (after every hook before it). */
export async function runPod(pod: PodSpec, o: RunOptions): Promise<RunningPod> {
  const started = performance.now();
  const events: PodEvent[] = [];
  const log = (what: string): void => void events.push({ t: Math.round(performance.now() - started), what });
  const volumes = materializeVolumes(pod, o);
  const running = new Map<string, { child: ChildProcess; exited: Promise<number | null> }>();
  const base = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/tmp' };
  const stepTimeoutMs = o.stepTimeoutMs ?? 90_000;

  const runToEnd = async (what: string, c: ContainerSpec, argv: string[], env: Record<string, string>): Promise<{ code: number | null; ms: number }> => {
    const [cmd, args] = resolveCommand(containerArgv(argv, c, env, volumes));
    const out = openSync(path.join(o.dir, `${what.replaceAll(' ', '-')}.log`), 'a');
    const t0 = performance.now();
    const child = spawn(cmd, args, { env: { ...base, ...env }, stdio: ['ignore', out, out], timeout: stepTimeoutMs, killSignal: 'SIGKILL' });
    closeSync(out);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    return { code, ms: performance.now() - t0 };
  };

  const pod_ = {
    events,
    exited(container: string): Promise<number | null> {
      const c = running.get(container);
      if (c === undefined) throw new Error(`container ${container} was not started`);
      return c.exited;
    },
    async stop(graceMs = 3000): Promise<void> {
      const all = [...running.values()];
      for (const { child } of all) if (child.exitCode === null && child.signalCode === null) signal(child, 'SIGTERM');
      const killer = setTimeout(() => {
        for (const { child } of all) if (child.exitCode === null && child.signalCode === null) signal(child, 'SIGKILL');
      }, graceMs);
      await Promise.all(all.map((c) => c.exited));
      clearTimeout(killer);
    },
  };

  try {
    for (const c of pod.spec.initContainers ?? []) {
      const env = containerEnv(c, pod, o, volumes);
      log(`init ${c.name} started`);
      const r = await runToEnd(`init-${c.name}`, c, [...(c.command ?? []), ...(c.args ?? [])], env);
      log(`init ${c.name} exited ${r.code}`);
      if (r.code !== 0) throw new Error(`init container ${c.name} exited ${r.code}; see ${o.dir}/init-${c.name}.log`);
    }
    for (const c of pod.spec.containers) {
      const env = containerEnv(c, pod, o, volumes);
      const [cmd, args] = resolveCommand(containerArgv([...(c.command ?? []), ...(c.args ?? [])], c, env, volumes));
      const out = openSync(path.join(o.dir, `${c.name}.log`), 'a');
      // Its own process group, as a container is its own world: stop() reaches its children too.
      const child = spawn(cmd, args, { env: { ...base, ...env }, stdio: ['ignore', out, out], detached: true });
      closeSync(out);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
        log(`${c.name} exited ${code}`);
        resolve(code);
      }));
      running.set(c.name, { child, exited });
      log(`${c.name} started`);
      const hook = c.lifecycle?.postStart?.exec?.command;
      if (hook !== undefined && !o.skipPostStart) {
        // The kubelet runs the hook in the container and holds the next container until it returns.
        const r = await runToEnd(`${c.name} postStart`, c, hook, env);
        log(`${c.name} postStart exited ${r.code}`);
        if (r.code !== 0) throw new Error(`postStart of ${c.name} exited ${r.code} after ${Math.round(r.ms)} ms; see ${o.dir}/${c.name}-postStart.log`);
      }
    }
  } catch (err) {
    await pod_.stop(0);
    throw err;
  }
  return pod_;
}

function signal(child: ChildProcess, sig: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, sig);
  } catch {
    // already gone
  }
}
