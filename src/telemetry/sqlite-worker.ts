// The worker thread that owns an embedded store: node:sqlite is synchronous, so its inserts,
// queries and retention run here and never hold the pilot's event loop (its xDS pushes, its
// HTTP API). Requests come as { id, method, args }; answers as { id, result } or { id, error }.
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteLogStore } from './sqlite-store.ts';
import type { SqliteLogStoreOptions } from './sqlite-store.ts';

export interface WorkerRequest {
  id: number;
  method: 'insert' | 'logs' | 'peers' | 'operations' | 'graph' | 'enforceRetention' | 'stats' | 'close';
  args: unknown[];
}

export type WorkerAnswer = { id: number; result: unknown } | { id: number; error: { name: string; message: string } } | { id: 0; opened: true } | { id: 0; failed: { name: string; message: string } };

const port = parentPort;
if (port === null) throw new Error('sqlite-worker.ts runs as a worker thread only');
let store: SqliteLogStore;
try {
  store = new SqliteLogStore(workerData as SqliteLogStoreOptions);
  port.postMessage({ id: 0, opened: true } satisfies WorkerAnswer);
} catch (err) {
  port.postMessage({ id: 0, failed: { name: (err as Error).name, message: (err as Error).message } } satisfies WorkerAnswer);
  process.exit(1);
}

port.on('message', (req: WorkerRequest) => {
  const call = (store[req.method] as (...a: unknown[]) => Promise<unknown>).apply(store, req.args);
  call.then(
    (result) => {
      port.postMessage({ id: req.id, result } satisfies WorkerAnswer);
      if (req.method === 'close') port.close();
    },
    (err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      port.postMessage({ id: req.id, error: { name: e.name, message: e.message } } satisfies WorkerAnswer);
    },
  );
});
