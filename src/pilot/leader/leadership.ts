// What every kind of leadership offers: whether this pilot leads now, who does, change
// listeners, and tasks that run only while this pilot leads (the mesh's controllers).
import type { Logger } from 'pino';

/** The answer of `/debug/leader`. */
export interface LeaderStatus {
  /** True while this pilot is the elected leader. */
  leader: boolean;
  /** This pilot's identity (`--id`, default HOSTNAME-PID). */
  identity: string;
  /** The identity the current leader campaigned with; null while the mesh has none (or it is not known yet). */
  leaderIdentity: string | null;
  /**
   * The leader's term: the etcd create revision of its election key. It only grows, and each
   * new leader has a larger one, so it can fence writes made on behalf of an old leader.
   */
  term: string | null;
  /** When this pilot saw the current leader take office (ISO time). */
  since: string | null;
  /** How leadership is decided: `etcd` (a lease-backed election) or `sole` (one pilot on a directory store). */
  election: 'etcd' | 'sole';
  /** The etcd lease behind this pilot's campaign; null for `sole`. */
  lease: LeaseStatus | null;
  /** The controllers registered with runOnLeader, and whether each runs here now. */
  tasks: { name: string; running: boolean }[];
}

export interface LeaseStatus {
  /** The lease's time to live (`--leader-lease`), in seconds. */
  ttlSeconds: number;
  /** This pilot's election key in etcd (`/sextant/config.election/pilot/LEASE`), or the election's prefix before the lease is granted. */
  key: string;
  /** The lease's id as etcdctl prints it (hex), once granted. */
  id?: string;
  /** While leading: the time by which the lease will have been renewed or this pilot steps down (ISO time). */
  validUntil: string | null;
}

/** Starts or stops a controller; may be async. */
export type LeaderTaskStep = () => void | Promise<void>;

interface LeaderTask {
  name: string;
  start: LeaderTaskStep;
  stop: LeaderTaskStep;
  /** True between a successful start and the next stop. */
  running: boolean;
  /** The task's transitions, one after the other. */
  chain: Promise<void>;
  cancelled: boolean;
}

export abstract class Leadership {
  readonly identity: string;
  protected readonly logger: Logger;
  private leading = false;
  private readonly listeners = new Set<(leader: boolean) => void>();
  private readonly tasks = new Set<LeaderTask>();

  protected constructor(identity: string, logger: Logger) {
    this.identity = identity;
    this.logger = logger;
  }

  /** True while this pilot leads: work that must run once in the mesh may run here. */
  isLeader(): boolean {
    return this.leading;
  }

  abstract status(): LeaderStatus;

  /** Stops every task, gives leadership up (so another pilot takes over at once) and stops campaigning. */
  abstract close(): Promise<void>;

  /** Calls `listener` with the new state each time this pilot gains or loses leadership; returns the unsubscribe. */
  onChange(listener: (leader: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Runs a controller only while this pilot leads: `start` when leadership is gained (at once if
   * it is held already), `stop` when it is lost or on close. A task's steps never overlap: a
   * stop waits for the start before it. A `start` that throws is logged and the task counts as
   * not running (no stop follows); it is started again the next time leadership is gained.
   * Returns a function that stops the task (if running) and forgets it.
   */
  runOnLeader(name: string, start: LeaderTaskStep, stop: LeaderTaskStep): () => Promise<void> {
    const task: LeaderTask = { name, start, stop, running: false, chain: Promise.resolve(), cancelled: false };
    this.tasks.add(task);
    if (this.leading) this.step(task, true);
    return async () => {
      if (task.cancelled) return;
      task.cancelled = true;
      this.tasks.delete(task);
      this.step(task, false);
      await task.chain;
    };
  }

  protected taskList(): { name: string; running: boolean }[] {
    return [...this.tasks].map((t) => ({ name: t.name, running: t.running }));
  }

  /** Stops every task and waits for the stops. */
  protected async stopTasks(): Promise<void> {
    const all = [...this.tasks];
    for (const t of all) this.step(t, false);
    await Promise.all(all.map((t) => t.chain));
  }

  /** Records a change of leadership, starts or stops the tasks and tells the listeners. */
  protected setLeader(leader: boolean, why: Record<string, unknown> = {}): void {
    if (leader === this.leading) return;
    this.leading = leader;
    this.logger.info({ identity: this.identity, ...why }, leader ? 'leader: elected; starting leader tasks' : 'leader: no longer the leader; stopping leader tasks');
    for (const t of this.tasks) this.step(t, leader);
    for (const l of this.listeners) {
      try {
        l(leader);
      } catch (err) {
        this.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'leader: a change listener threw');
      }
    }
  }

  private step(task: LeaderTask, run: boolean): void {
    task.chain = task.chain.then(async () => {
      if (run === task.running) return;
      // A start queued behind a stop is dropped when leadership went away meanwhile.
      if (run && (!this.leading || task.cancelled)) return;
      try {
        await (run ? task.start() : task.stop());
        this.logger.info({ task: task.name }, run ? 'leader task started' : 'leader task stopped');
        task.running = run;
      } catch (err) {
        this.logger.error({ task: task.name, err: err instanceof Error ? err.message : String(err) }, run ? 'leader task failed to start' : 'leader task failed to stop');
        // A start that failed leaves the task stopped; a stop that failed counts as done.
        task.running = false;
      }
    }).catch(() => undefined);
  }
}
