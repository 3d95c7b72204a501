// Starts a real PostgreSQL (Debian's /usr/lib/postgresql/15) for tests and benchmarks: initdb
// into a temporary directory, the server on a free loopback port (no Unix socket), password
// authentication, waited for until it answers, killed on stop or on process exit. Run as root,
// the server runs as the `postgres` user (PostgreSQL refuses to run as root).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './ports.ts';
import { killGroup, ownDirectory, ownProcess } from './owned-processes.ts';

export const POSTGRES_BIN = process.env.SEXTANT_POSTGRES_BIN ?? '/usr/lib/postgresql/15/bin';

/** Why PostgreSQL tests must skip on this machine, or undefined when it can be started. */
export function postgresUnavailableReason(): string | undefined {
  for (const b of ['initdb', 'postgres']) {
    if (!existsSync(path.join(POSTGRES_BIN, b))) return `PostgreSQL not found: no ${b} in ${POSTGRES_BIN} (install Debian's postgresql, or set SEXTANT_POSTGRES_BIN)`;
  }
  if (process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres']).status !== 0) return 'running as root and there is no postgres user to run PostgreSQL as';
  return undefined;
}

export interface PostgresOptions {
  /** Durable commits (fsync, synchronous_commit); off by default, a test needs no crash safety. */
  durable?: boolean;
}

export interface PostgresProcess {
  /** `postgres://USER:PASSWORD@127.0.0.1:PORT/postgres` */
  url: string;
  /** Creates a database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Kills the server and removes its data directory. Safe to call twice. */
  stop(): Promise<void>;
}

const STDERR_TAIL_BYTES = 16 * 1024;
const READY_TIMEOUT_MS = 60_000;
const USER = 'sextant';

/** The uid and gid to run PostgreSQL as: ours, or the postgres user's when we are root. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  return { uid, gid };
}

export async function startPostgres(opts: PostgresOptions = {}): Promise<PostgresProcess> {
  const reason = postgresUnavailableReason();
  if (reason !== undefined) throw new Error(reason);
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-postgres-'));
  const removeDir = ownDirectory(dir);
  const owner = runAs();
  const password = randomBytes(18).toString('base64url');
  const pwfile = path.join(dir, 'pwfile');
  const data = path.join(dir, 'data');
  let child: ChildProcess | undefined;
  let stopped = false;
  const cleanup = async (): Promise<void> => {
    if (child !== undefined) {
      const proc = child;
      child = undefined;
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
        killGroup(proc, 'SIGKILL');
        await exited;
      }
    }
    removeDir();
  };
  try {
    writeFileSync(pwfile, password + '\n', { mode: 0o600 });
    if (owner !== undefined) {
      chownSync(dir, owner.uid, owner.gid);
      chownSync(pwfile, owner.uid, owner.gid);
    }
    chmodSync(dir, 0o700);
    const init = spawnSync(path.join(POSTGRES_BIN, 'initdb'), ['-D', data, '-U', USER, '--pwfile', pwfile, '--auth', 'scram-sha-256', '--encoding', 'UTF8', '--locale', 'C', '--no-sync'], {
      encoding: 'utf8',
      ...(owner ?? {}),
      cwd: dir,
    });
    if (init.status !== 0) throw new Error(`initdb failed (${init.status ?? init.signal}): ${init.stderr.slice(-STDERR_TAIL_BYTES)}`);
    const port = await freePort();
    const durable = opts.durable === true ? 'on' : 'off';
    const proc = spawn(path.join(POSTGRES_BIN, 'postgres'), [
      '-D', data,
      '-p', String(port),
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'unix_socket_directories=',
      '-c', `fsync=${durable}`,
      '-c', `synchronous_commit=${durable}`,
      '-c', `full_page_writes=${durable}`,
      '-c', 'max_connections=50',
      '-c', 'shared_buffers=128MB',
      '-c', 'logging_collector=off',
      '-c', 'log_min_messages=warning',
    ], { detached: true, stdio: ['ignore', 'ignore', 'pipe'], cwd: dir, ...(owner ?? {}) });
    child = proc;
    ownProcess(proc);
    let stderrTail = '';
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
    });
    const url = `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`postgres exited during start (${proc.exitCode ?? proc.signalCode}): ${stderrTail}`);
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
      try {
        await client.connect();
        await client.query('SELECT 1');
        await client.end();
        break;
      } catch {
        await client.end().catch(() => undefined);
        if (Date.now() > deadline) throw new Error(`postgres did not accept connections within ${READY_TIMEOUT_MS} ms: ${stderrTail}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return {
      url,
      async createDatabase(name: string) {
        if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          await client.query(`CREATE DATABASE ${name}`);
        } finally {
          await client.end();
        }
        return url.replace(/\/postgres$/, `/${name}`);
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        await cleanup();
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

