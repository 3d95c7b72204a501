// Soak (not a test) for M15: requests to 20,000 distinct passthrough destinations (loopback
// addresses and ports), then idle; passthrough state must be freed after its idle timeout
// (5 s) and RSS must come back to within 10 % of the baseline taken after a warm-up.
// Destinations live in a child process that opens listeners a batch at a time. The soak
// runs twice, each in a fresh process: with glibc's malloc defaults, and with the
// allocator settings the sidecar is deployed with (MALLOC_ARENA_MAX=2,
// MALLOC_TRIM_THRESHOLD_=131072: freed native memory goes back to the OS).
//
//   node bench/passthrough-soak.ts [--destinations 20000] [--batch 1000] [--idle-ms 5000] [--settle-ms 3000] [--max-live 8000]
//
// At most --max-live destinations are live at once: a batch waits until idle expiry has
// freed enough. Each live destination holds a socket in this process and one in the child,
// so without the bound a fast run would reach the descriptor limit and count failures.
//
// Writes bench/results/passthrough-soak.json; exits 1 when the tuned run misses the goal.
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { PassthroughPools } from '../src/proxy/upstream/index.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

type Dest = [string, number];
interface Msg {
  id: number;
  dests?: Dest[];
}

// --- child: destination servers ------------------------------------------------------
function destinations(): void {
  const open = new Map<number, net.Server[]>();
  const response = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', 'latin1');
  const onSocket = (s: net.Socket): void => {
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      if (d.includes('\r\n\r\n')) s.write(response);
    });
  };
  process.on('message', (m: { id: number; op: 'open' | 'close'; batch: number; count: number }) => {
    if (m.op === 'open') {
      const servers: net.Server[] = [];
      const dests: Dest[] = [];
      let pending = m.count;
      for (let i = 0; i < m.count; i++) {
        // 127.<20+batch/200>.<batch%200>.<1..250>, four ports per address
        const host = `127.${20 + Math.floor(m.batch / 200)}.${m.batch % 200}.${1 + Math.floor(i / 4)}`;
        const srv = net.createServer(onSocket);
        servers.push(srv);
        srv.listen(0, host, () => {
          dests.push([host, (srv.address() as net.AddressInfo).port]);
          if (--pending === 0) process.send!({ id: m.id, dests });
        });
      }
      open.set(m.batch, servers);
    } else {
      // stop listening; accepted connections stay until the proxy side closes them
      for (const s of open.get(m.batch) ?? []) s.close();
      open.delete(m.batch);
      process.send!({ id: m.id });
    }
  });
}

// --- parent: the passthrough pools under test -----------------------------------------
let nextId = 0;
function ask(child: ChildProcess, msg: object): Promise<Msg> {
  const id = nextId++;
  return new Promise((resolve) => {
    const on = (m: Msg): void => {
      if (m.id !== id) return;
      child.off('message', on);
      resolve(m);
    };
    child.on('message', on);
    child.send({ ...msg, id });
  });
}

const rssMb = (): number => process.memoryUsage().rss / 1048576;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// Waits for the destinations to expire and the pools' memory-reducing collection to run.
async function settle(pools: PassthroughPools, idleMs: number): Promise<number> {
  const reclaims = pools.reclaims;
  const deadline = Date.now() + idleMs * 3 + 5000;
  while (pools.destinations > 0 && Date.now() < deadline) await sleep(100);
  const reclaimDeadline = Date.now() + 15_000;
  while (pools.reclaims === reclaims && Date.now() < reclaimDeadline) await sleep(100);
  await sleep(Number(arg('settle-ms', '3000')));
  return rssMb();
}

export const MALLOC_TUNING = { MALLOC_ARENA_MAX: '2', MALLOC_TRIM_THRESHOLD_: '131072' };

async function main(): Promise<void> {
  if (process.argv.includes('--destinations-child')) {
    destinations();
    return;
  }
  if (!process.argv.includes('--run')) {
    const runs: Record<string, unknown> = {};
    let ok = true;
    for (const [name, extra] of [['mallocDefaults', {}], ['mallocTuned', MALLOC_TUNING]] as const) {
      const r = spawnSync(process.execPath, [import.meta.filename, '--run', ...process.argv.slice(2)], {
        env: { ...process.env, ...extra },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const result = JSON.parse(r.stdout) as { rssGrowthPercent: number };
      runs[name] = result;
      console.log(`${name}: ${JSON.stringify(result)}`);
      if (name === 'mallocTuned') ok = r.status === 0;
    }
    await mkdir(path.join(import.meta.dirname, 'results'), { recursive: true });
    await writeFile(path.join(import.meta.dirname, 'results', 'passthrough-soak.json'), JSON.stringify({ date: new Date().toISOString(), ...runs }, null, 2) + '\n');
    process.exit(ok ? 0 : 1);
  }
  const total = Number(arg('destinations', '20000'));
  const batch = Number(arg('batch', '1000'));
  const idleMs = Number(arg('idle-ms', '5000'));
  const maxLive = Number(arg('max-live', '8000'));
  const child = fork(import.meta.filename, ['--destinations-child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  process.on('exit', () => child.kill('SIGKILL'));
  const pools = new PassthroughPools({ idleTimeoutMs: idleMs, maxDestinations: total });
  // the soak measures what the pools do on their own: no forced collections here
  const head = { method: 'GET', target: '/', version: '1.1' as const, headers: [{ name: 'Host', value: 'external.example' }] };
  let failures = 0;
  let peakDestinations = 0;
  let peakRss = 0;
  let batchNo = 0;
  async function round(count: number): Promise<void> {
    while (pools.destinations + count > maxLive) await new Promise((r) => setTimeout(r, 100));
    const b = batchNo++;
    const { dests = [] } = await ask(child, { op: 'open', batch: b, count });
    let i = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (i < dests.length) {
          const [host, port] = dests[i++]!;
          try {
            const r = await pools.request({ host, port }, head, null, { timeoutMs: 10_000 });
            for await (const _ of r.body) {
              // drain
            }
          } catch {
            failures++;
          }
        }
      }),
    );
    await ask(child, { op: 'close', batch: b });
    peakDestinations = Math.max(peakDestinations, pools.destinations);
    peakRss = Math.max(peakRss, rssMb());
  }
  const started = Date.now();
  // warm-up: code paths compiled, heap sized, then the baseline once its state is gone
  await round(batch);
  const baseline = await settle(pools, idleMs);
  const soakStart = Date.now();
  for (let done = 0; done < total; done += batch) await round(Math.min(batch, total - done));
  const soakSecs = (Date.now() - soakStart) / 1000;
  const after = await settle(pools, idleMs);
  const result = {
    destinations: total,
    idleTimeoutMs: idleMs,
    maxLive,
    failures,
    soakSeconds: soakSecs,
    totalSeconds: (Date.now() - started) / 1000,
    peakDestinations,
    destinationsAfterIdle: pools.destinations,
    memoryReclaims: pools.reclaims,
    connectionsAfterIdle: pools.activeConnections() + pools.idleConnections(),
    rssBaselineMb: Number(baseline.toFixed(1)),
    rssPeakMb: Number(peakRss.toFixed(1)),
    rssAfterMb: Number(after.toFixed(1)),
    rssGrowthPercent: Number((((after - baseline) / baseline) * 100).toFixed(1)),
  };
  console.log(JSON.stringify(result));
  pools.close();
  child.kill('SIGKILL');
  const ok = failures === 0 && result.destinationsAfterIdle === 0 && result.rssGrowthPercent <= 10;
  process.exit(ok ? 0 : 1);
}

await main();
