// The embedded store as the pilot uses it: a SqliteLogStore in a worker thread (./sqlite-worker.ts),
// behind the same LogStore interface. Errors come back as the classes the API tells apart
// (a LogQueryError is a 400); a worker that dies fails every pending and later call loudly.
import { Worker } from 'node:worker_threads';
import { LogQueryError } from './query.ts';
import type { SqliteLogStoreOptions } from './sqlite-store.ts';
import type { WorkerAnswer, WorkerRequest } from './sqlite-worker.ts';
import type { Graph, LogPage, LogQuery, LogStore, LogStoreStats, OperationRow, OperationsQuery, PeerRow, PeersQuery, AccessLogEntry, TimeWindow } from './types.ts';

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

function errorOf(e: { name: string; message: string }): Error {
  if (e.name === 'LogQueryError') return new LogQueryError(e.message);
  if (e.name === 'RangeError') return new RangeError(e.message);
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

export class SqliteThreadLogStore implements LogStore {
  readonly kind = 'sqlite' as const;
  readonly path: string;
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;

  private constructor(worker: Worker, path: string) {
    this.worker = worker;
    this.path = path;
    worker.on('message', (m: WorkerAnswer) => {
      if (m.id === 0) return;
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) worker.unref();
      if ('error' in m) p.reject(errorOf(m.error));
      else if ('result' in m) p.resolve(m.result);
    });
    const fail = (err: Error): void => {
      this.failure ??= err;
      for (const p of this.pending.values()) p.reject(this.failure);
      this.pending.clear();
    };
    worker.on('error', (err) => fail(new Error(`access-log store ${path}: its worker failed: ${err.message}`, { cause: err })));
    worker.on('exit', (code) => fail(new Error(`access-log store ${path}: its worker exited (${code})`)));
    worker.unref();
  }

  /** Starts the worker and resolves once it has opened the file (or rejects with why it could not). */
  static open(opts: SqliteLogStoreOptions): Promise<SqliteThreadLogStore> {
    const worker = new Worker(new URL('./sqlite-worker.ts', import.meta.url), { workerData: opts, name: 'sextant-access-log' });
    return new Promise((resolve, reject) => {
      const onExit = (code: number): void => reject(new Error(`access-log store ${opts.path}: its worker exited (${code}) before opening`));
      const onError = (err: Error): void => reject(err);
      worker.once('error', onError);
      worker.once('exit', onExit);
      worker.once('message', (m: WorkerAnswer) => {
        worker.off('error', onError);
        worker.off('exit', onExit);
        if ('opened' in m) resolve(new SqliteThreadLogStore(worker, opts.path));
        else if ('failed' in m) reject(errorOf(m.failed));
        else reject(new Error(`access-log store ${opts.path}: unexpected first message from its worker`));
      });
    });
  }

  private call<T>(method: WorkerRequest['method'], args: unknown[]): Promise<T> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closing !== undefined && method !== 'close') return Promise.reject(new Error(`access-log store ${this.path} is closed`));
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, method, args } satisfies WorkerRequest);
    });
  }

  insert(entries: readonly AccessLogEntry[]): Promise<void> {
    return this.call('insert', [entries]);
  }
  logs(q: LogQuery): Promise<LogPage> {
    return this.call('logs', [q]);
  }
  peers(q: PeersQuery): Promise<PeerRow[]> {
    return this.call('peers', [q]);
  }
  operations(q: OperationsQuery): Promise<OperationRow[]> {
    return this.call('operations', [q]);
  }
  graph(w: TimeWindow): Promise<Graph> {
    return this.call('graph', [w]);
  }
  enforceRetention(now?: number): Promise<number> {
    return this.call('enforceRetention', now === undefined ? [] : [now]);
  }
  stats(): Promise<LogStoreStats> {
    return this.call('stats', []);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.failure === undefined) await this.call('close', []).catch(() => undefined);
      await this.worker.terminate();
    })();
    return this.closing;
  }
}
