// Leader election on etcd with the etcd3 client's Election: every pilot campaigns with a key
// bound to a lease of its own; the oldest key leads. A leader that dies stops renewing its
// lease and etcd deletes its key after the lease's TTL; one that stops cleanly revokes it.
import { Election, Lease, type Campaign, type ElectionObserver, type Namespace } from 'etcd3';
import type { Logger } from 'pino';
import { Leadership, type LeaderStatus } from './leadership.ts';

export interface EtcdElectionOptions {
  /** An etcd client. */
  client: Namespace;
  /** Closes the client after the election closed, when the election owns it. */
  closeClient?: () => void;
  /** Prefix of the election's keys; the keys are PREFIX + `election/NAME/LEASE`. */
  keyPrefix: string;
  /** The election's name; one election per name and prefix. */
  name: string;
  identity: string;
  /** TTL of the campaign's lease: how long a dead leader keeps the mesh without one. */
  leaseTtlSeconds: number;
  logger: Logger;
  /** Wait before campaigning again after a campaign failed (etcd unreachable, lease lost). Default 1 s. */
  retryMs?: number;
}

const wallTime = (monotonicMs: number): string => new Date(Date.now() + (monotonicMs - performance.now())).toISOString();

export class EtcdElection extends Leadership {
  private readonly election: Election;
  /** The namespace holding the candidates' keys, to read who leads. */
  private readonly candidates: Namespace;
  private readonly keyPrefix: string;
  private readonly ttlMs: number;
  private readonly ttlSeconds: number;
  private readonly retryMs: number;
  /** Stepping down this long before the lease could have expired, so two leaders never overlap. */
  private readonly marginMs: number;
  private campaign: Campaign | undefined;
  private leaseId: string | undefined;
  private observer: ElectionObserver | undefined;
  private observed: { identity: string; term: string; since: string } | undefined;
  private readSeq = 0;
  /** Monotonic time (performance.now) before which etcd cannot have expired the lease. */
  private validUntil = 0;
  private stepDownTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private warnedNoLease = false;
  private readonly closeClient: (() => void) | undefined;

  constructor(options: EtcdElectionOptions) {
    super(options.identity, options.logger);
    this.ttlSeconds = options.leaseTtlSeconds;
    this.ttlMs = options.leaseTtlSeconds * 1000;
    this.retryMs = options.retryMs ?? 1000;
    this.closeClient = options.closeClient;
    this.marginMs = Math.min(1000, this.ttlMs / 4);
    const ns = options.client.namespace(options.keyPrefix);
    this.election = ns.election(options.name, options.leaseTtlSeconds);
    this.keyPrefix = `${options.keyPrefix}${Election.prefix}/${options.name}/`;
    this.candidates = options.client.namespace(this.keyPrefix);
  }

  /** Starts campaigning and following who leads. */
  start(): void {
    this.campaignNow();
    void this.observe();
  }

  status(): LeaderStatus {
    const leader = this.isLeader();
    return {
      leader,
      identity: this.identity,
      leaderIdentity: this.observed?.identity ?? null,
      term: this.observed?.term ?? null,
      since: this.observed?.since ?? null,
      election: 'etcd',
      lease: {
        ttlSeconds: this.ttlSeconds,
        key: this.leaseId === undefined ? this.keyPrefix : `${this.keyPrefix}${this.leaseId}`,
        ...(this.leaseId !== undefined ? { id: BigInt(this.leaseId).toString(16) } : {}),
        validUntil: leader ? wallTime(this.validUntil - this.marginMs) : null,
      },
      tasks: this.taskList(),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.stepDownTimer);
    const c = this.campaign;
    this.campaign = undefined;
    this.setLeader(false, { reason: 'closing' });
    // Controllers stop before the key goes, so the next leader never overlaps with them.
    await this.stopTasks();
    if (c !== undefined) await withTimeout(c.resign(), 3000).catch((err: unknown) => this.logger.warn({ err: errText(err) }, 'leader: could not revoke the election lease; it expires by itself'));
    await withTimeout(this.observer?.cancel() ?? Promise.resolve(), 1000).catch(() => undefined);
    this.closeClient?.();
  }

  private campaignNow(): void {
    if (this.closed) return;
    const requestedAt = performance.now();
    const c = this.election.campaign(this.identity);
    this.campaign = c;
    this.leaseId = undefined;
    // The lease is granted after this moment and lives its TTL from then on at least.
    this.validUntil = requestedAt + this.ttlMs;
    this.followLease(c);
    c.on('elected', () => {
      if (this.campaign !== c || this.closed) return;
      this.setLeader(true, { election: 'etcd', key: `${this.keyPrefix}${this.leaseId ?? ''}`, leaseTtlSeconds: this.ttlSeconds });
      this.armStepDown(c);
      void this.readLeader();
    });
    c.on('error', (err: Error) => {
      if (this.campaign !== c) return;
      this.abandon(c, `campaign failed: ${err.message}`);
    });
  }

  /**
   * Keeps `validUntil`: etcd renews the lease when it receives a keepalive, so the lease lives
   * at least its TTL from when the keepalive was sent. Reads the Campaign's lease, which etcd3
   * keeps private; without it the client's own loss detection (after twice the TTL) is all.
   */
  private followLease(c: Campaign): void {
    const lease = (c as unknown as { lease?: unknown }).lease;
    if (!(lease instanceof Lease)) {
      if (!this.warnedNoLease) this.logger.warn('leader: cannot follow the campaign lease (etcd3 changed); leadership ends only when etcd3 reports the lease lost');
      this.warnedNoLease = true;
      return;
    }
    lease.grant().then((id) => {
      if (this.campaign === c) this.leaseId = id;
    }, () => undefined);
    let sent: number[] = [];
    lease.on('keepaliveEstablished', () => { sent = []; });
    lease.on('keepaliveFired', () => { sent.push(performance.now()); });
    lease.on('keepaliveSucceeded', (res) => {
      const sentAt = sent.shift();
      if (sentAt === undefined || this.campaign !== c) return;
      this.validUntil = Math.max(this.validUntil, sentAt + Number(res.TTL) * 1000);
      if (this.isLeader()) this.armStepDown(c);
    });
  }

  private armStepDown(c: Campaign): void {
    clearTimeout(this.stepDownTimer);
    const wait = this.validUntil - this.marginMs - performance.now();
    if (wait <= 0) {
      this.abandon(c, 'the election lease was not renewed in time');
      return;
    }
    this.stepDownTimer = setTimeout(() => {
      if (this.campaign === c) this.armStepDown(c);
    }, wait);
    this.stepDownTimer.unref();
  }

  /** Gives up a campaign that failed or can no longer be trusted, and campaigns again later. */
  private abandon(c: Campaign, reason: string): void {
    if (this.campaign === c) this.campaign = undefined;
    clearTimeout(this.stepDownTimer);
    this.logger.warn({ identity: this.identity, reason, retryInMs: this.retryMs }, 'leader: campaign abandoned');
    this.setLeader(false, { reason });
    // Revoking the lease lets another pilot lead at once; if etcd is unreachable it expires.
    c.resign().catch(() => undefined);
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.campaignNow(), this.retryMs);
    this.retryTimer.unref();
  }

  private async observe(): Promise<void> {
    if (this.closed) return;
    let observer: ElectionObserver;
    try {
      observer = await this.election.observe();
    } catch (err) {
      this.logger.warn({ err: errText(err), retryInMs: this.retryMs }, 'leader: cannot observe the election; retrying');
      this.retryObserve();
      return;
    }
    if (this.closed) {
      await observer.cancel().catch(() => undefined);
      return;
    }
    this.observer = observer;
    observer.on('change', () => void this.readLeader());
    observer.on('error', (err: Error) => {
      if (this.observer !== observer) return;
      this.observer = undefined;
      observer.cancel().catch(() => undefined);
      this.logger.warn({ err: err.message, retryInMs: this.retryMs }, 'leader: observing the election failed; retrying');
      this.retryObserve();
    });
    await this.readLeader();
  }

  private retryObserve(): void {
    if (this.closed) return;
    const t = setTimeout(() => void this.observe(), this.retryMs);
    t.unref();
  }

  /** Reads the leading key (the oldest candidate): its value is the leader's identity, its create revision the term. */
  private async readLeader(): Promise<void> {
    const seq = ++this.readSeq;
    try {
      const res = await this.candidates.getAll().sort('Create', 'Ascend').limit(1).exec();
      if (seq !== this.readSeq) return; // a later read is under way
      const kv = res.kvs[0];
      if (kv === undefined) {
        this.observed = undefined;
        return;
      }
      const identity = kv.value.toString();
      const term = String(kv.create_revision);
      if (this.observed?.term !== term) {
        this.observed = { identity, term, since: new Date().toISOString() };
        this.logger.info({ leader: identity, term, self: this.isLeader() }, 'leader: the mesh has a new leader');
      } else {
        this.observed.identity = identity;
      }
    } catch (err) {
      this.logger.debug({ err: errText(err) }, 'leader: reading the election failed');
    }
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
