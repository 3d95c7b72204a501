// Leadership among pilots: work that must run once in the mesh (the controllers: lazy scope,
// adaptive limits, alerts) runs only on the leader. With etcd, pilots elect one through a
// lease-backed election; a pilot on a directory store is alone, so it leads.
import { hostname } from 'node:os';
import { Etcd3, type Namespace } from 'etcd3';
import type { Logger } from 'pino';
import { EtcdElection } from './etcd-election.ts';
import type { Leadership } from './leadership.ts';
import { SoleLeader } from './sole.ts';

export { Leadership } from './leadership.ts';
export type { LeaderStatus, LeaseStatus, LeaderTaskStep } from './leadership.ts';

/** The lease TTL when `--leader-lease` is not given: a dead leader is replaced within 10 s. */
export const DEFAULT_LEADER_LEASE_SECONDS = 10;

/** The election all pilots of a mesh join. */
export const PILOT_ELECTION = 'pilot';

/** A pilot's identity when `--id` is not given: HOSTNAME-PID, unique among running pilots. */
export function defaultPilotIdentity(): string {
  return `${hostname()}-${process.pid}`;
}

/**
 * Where the election's keys live for a config prefix: beside it, not under it (the store reads
 * every key under PREFIX/ as config). `/sextant/config` gives `/sextant/config.election/pilot/LEASE`.
 */
export function electionKeyPrefix(configPrefix: string): string {
  return `${configPrefix.replace(/\/+$/, '')}.`;
}

export interface LeaderElectionOptions {
  identity: string;
  logger: Logger;
  /**
   * Where the config lives in etcd; without it this pilot is the only one and leads. Given
   * `endpoints`, the election opens (and closes) a client of its own, whose watches reconnect
   * within 2 s after an etcd outage; given `client`, it uses that one.
   */
  etcd?: { configPrefix: string; leaseTtlSeconds?: number; retryMs?: number } & ({ endpoints: readonly string[] } | { client: Namespace });
}

/** The watch backoff of the election's own client: 100 ms doubling to 2 s (etcd3's default grows to 30 s). */
interface WatchBackoff {
  readonly duration: number;
  next(): WatchBackoff;
}
function watchBackoff(ms: number, maxMs: number): WatchBackoff {
  return { duration: ms, next: () => watchBackoff(Math.min(ms * 2, maxMs), maxMs) };
}

function electionClient(endpoints: readonly string[]): Etcd3 {
  return new Etcd3({
    hosts: [...endpoints],
    dialTimeout: 5000,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5000 }),
    faultHandling: { watchBackoff: { duration: 0, next: () => watchBackoff(100, 2000) } },
  });
}

/** Starts leadership: an election on etcd, or sole leadership for a directory store. */
export function startLeadership(options: LeaderElectionOptions): Leadership {
  const logger = options.logger.child({ component: 'leader' });
  if (options.etcd === undefined) return new SoleLeader(options.identity, logger);
  const owned = 'endpoints' in options.etcd ? electionClient(options.etcd.endpoints) : undefined;
  const election = new EtcdElection({
    client: owned ?? (options.etcd as { client: Namespace }).client,
    ...(owned !== undefined ? { closeClient: () => owned.close() } : {}),
    keyPrefix: electionKeyPrefix(options.etcd.configPrefix),
    name: PILOT_ELECTION,
    identity: options.identity,
    leaseTtlSeconds: options.etcd.leaseTtlSeconds ?? DEFAULT_LEADER_LEASE_SECONDS,
    logger,
    ...(options.etcd.retryMs !== undefined ? { retryMs: options.etcd.retryMs } : {}),
  });
  election.start();
  return election;
}
