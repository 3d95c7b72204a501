// Network namespaces for the root tests: a small routed topology (a "router" namespace in
// the middle, workload namespaces on veths with default routes through it), processes run
// inside them as a given uid (`ip netns exec NS setpriv …`), and a cleanup that removes every
// namespace, veth, process and /etc/netns file it made, whether the test passed or not (also
// on exit, and left-overs of a killed earlier run at the next start).
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const NODE = process.execPath;
export const ROOT = path.resolve(import.meta.dirname, '../../..');
export const SEXTANT = path.join(ROOT, 'bin', 'sextant.mjs');
export const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures');

const PREFIX = 'sxr-';

function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** Why the root tests cannot run here, or false when they can. */
export function rootSkipReason(): string | false {
  if (process.platform !== 'linux') return 'root tests need Linux network namespaces';
  if (process.getuid?.() !== 0) return 'root tests need root (network namespaces, iptables): run as root';
  for (const cmd of ['ip', 'iptables', 'iptables-save', 'iptables-restore', 'setpriv']) {
    if (!which(cmd)) return `root tests need ${cmd} (scripts/install-system-deps.sh installs iptables and iproute2)`;
  }
  const probe = `${PREFIX}probe-${process.pid}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.status !== 0) return `cannot create a network namespace: ${r.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return false;
}

/** Runs a command synchronously; throws with its output when it fails. */
export function sh(cmd: string, args: readonly string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** Runs a command in a namespace (as root). */
export function nsSh(ns: string, cmd: string, args: readonly string[], input?: string): string {
  return sh('ip', ['netns', 'exec', ns, cmd, ...args], input);
}

/** A process started in a namespace, with its output kept. */
export interface NsProcess {
  child: ChildProcess;
  name: string;
  output(): string;
  exited: Promise<number | null>;
}

// Namespaces of earlier runs whose process is gone (a killed test never reached its cleanup).
function removeStale(): void {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
    if (!m) continue;
    if (Number(m[1]) !== process.pid && !existsSync(`/proc/${m[1]}`)) {
      spawnSync('ip', ['netns', 'del', name]);
      rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
    }
  }
}

/**
 * The namespaces, links and processes of one test file. Names carry the test's pid, so
 * files running side by side never collide.
 */
export class Topology {
  private readonly namespaces: string[] = [];
  private readonly processes: NsProcess[] = [];
  private readonly onExit = (): void => this.destroySync();
  private linkSeq = 0;

  constructor() {
    removeStale();
    process.once('exit', this.onExit);
  }

  /** Creates a namespace with lo up; `short` must be short (veth names are at most 15 characters). */
  namespace(short: string): string {
    const name = `${PREFIX}${process.pid}-${short}`;
    sh('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    nsSh(name, 'ip', ['link', 'set', 'lo', 'up']);
    return name;
  }

  /** A veth between two namespaces with an address on each end (CIDR form). */
  link(a: string, aAddr: string, b: string, bAddr: string): void {
    const id = `${process.pid % 100000}${this.linkSeq++}`;
    const va = `sxa${id}`;
    const vb = `sxb${id}`;
    sh('ip', ['link', 'add', va, 'netns', a, 'type', 'veth', 'peer', 'name', vb, 'netns', b]);
    nsSh(a, 'ip', ['addr', 'add', aAddr, 'dev', va]);
    nsSh(b, 'ip', ['addr', 'add', bAddr, 'dev', vb]);
    nsSh(a, 'ip', ['link', 'set', va, 'up']);
    nsSh(b, 'ip', ['link', 'set', vb, 'up']);
  }

  /** The resolv.conf processes in `ns` see (ip netns exec bind-mounts /etc/netns/NS/resolv.conf). */
  resolvConf(ns: string, text: string): void {
    mkdirSync(`/etc/netns/${ns}`, { recursive: true });
    writeFileSync(`/etc/netns/${ns}/resolv.conf`, text);
  }

  /** Starts `argv` in `ns` as `uid` (root when undefined). */
  spawn(ns: string, name: string, argv: readonly string[], opts: { uid?: number; env?: Record<string, string> } = {}): NsProcess {
    const priv = opts.uid === undefined ? [] : ['setpriv', `--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups', '--'];
    const child = spawn('ip', ['netns', 'exec', ns, ...priv, ...argv], {
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const keep = (d: Buffer): void => {
      out += d.toString();
      if (out.length > 4_000_000) out = out.slice(-2_000_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const p: NsProcess = { child, name, output: () => out, exited };
    this.processes.push(p);
    return p;
  }

  /** Runs `argv` in `ns` as `uid` to completion; resolves with its stdout (rejects on a non-zero exit). */
  async run(ns: string, argv: readonly string[], opts: { uid?: number; timeoutMs?: number } = {}): Promise<string> {
    const p = this.spawn(ns, argv.join(' ').slice(0, 40), argv, opts);
    const timer = setTimeout(() => p.child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    const code = await p.exited;
    clearTimeout(timer);
    this.processes.splice(this.processes.indexOf(p), 1);
    if (code !== 0) throw new Error(`${argv.join(' ')} in ${ns} exited ${code}: ${p.output()}`);
    return p.output();
  }

  /** Stops the processes (SIGTERM, then SIGKILL), then removes every namespace and file. */
  async destroy(): Promise<void> {
    for (const p of this.processes) if (p.child.exitCode === null) p.child.kill('SIGTERM');
    await Promise.race([Promise.all(this.processes.map((p) => p.exited)), new Promise((r) => setTimeout(r, 5000))]);
    this.destroySync();
  }

  private destroySync(): void {
    for (const p of this.processes) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    this.processes.length = 0;
    // Deleting a namespace removes its veths (and their peers) and its iptables rules.
    for (const ns of this.namespaces.splice(0)) {
      spawnSync('ip', ['netns', 'del', ns]);
      rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
    }
    process.removeListener('exit', this.onExit);
  }
}

/** Polls `check` every `everyMs` until it returns a value, or throws after `timeoutMs` with the last error. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
