// A watch on etcd that survives lost connections: it resumes from the last revision it
// delivered + 1 (no event lost or repeated), and when that revision has been compacted it
// relists and emits only the differences from what it had delivered.
import type { Etcd3, IDuplexStream, IEvent, IWatchRequest, IWatchResponse } from 'etcd3';
import type { Logger } from 'pino';
import type { Resource } from '../../api/index.ts';
import { judgeDeletion, sampleKeys, type DeleteGuard, type HeldChange } from '../delete-guard.ts';
import { RevisionCompactedError } from '../errors.ts';
import { withVersion } from '../object.ts';
import type { ConfigWatch, Revision, WatchEvent, WatchHandler, WatchOptions } from '../store.ts';
import { prefixRange } from './keys.ts';
import type { Decoded } from './value.ts';

/** What the watch needs from the store. */
export interface EtcdWatchSource {
  client: Etcd3;
  /** The key prefix including its trailing '/'. */
  keyPrefix: string;
  log: Logger;
  decode(kv: IEvent['kv']): Decoded;
  /** Every resource under the prefix at `revision` (latest when undefined), read page by page at one revision. */
  listAll(revision: Revision | undefined): Promise<{ revision: Revision; items: Decoded[] }>;
  /** Records (or clears, with undefined) the errors of a value that could not be served. */
  noteInvalid(key: string, decoded: Decoded | undefined): void;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** The mass-deletion guard: a batch deleting most of what the watch delivered is held. */
  guard: DeleteGuard;
  /** The key whose put confirms a held deletion (PREFIX/.sextant-confirm-delete). */
  markerKey: string;
  /** Records (or clears, with undefined) the change a watch holds, for status(). */
  reportHold(watch: EtcdWatch, held: HeldChange | undefined): void;
  /** Deletes the confirmation key once it has been acted on, unless it was put again after `revision`. */
  removeMarker(revision: number): void;
}

function isCompacted(err: unknown): boolean {
  return /required revision has been compacted/.test(String((err as Error)?.message ?? err));
}

function isFutureRevision(err: unknown): boolean {
  return /required revision is a future revision/.test(String((err as Error)?.message ?? err));
}

function byKindNamespaceName(a: Resource, b: Resource): number {
  const x = `${a.kind}/${a.metadata.namespace}/${a.metadata.name}`;
  const y = `${b.kind}/${b.metadata.namespace}/${b.metadata.name}`;
  return x < y ? -1 : x > y ? 1 : 0;
}

export class EtcdWatch implements ConfigWatch {
  readonly synced: Promise<Revision>;
  private resolveSynced!: (r: Revision) => void;
  private rejectSynced!: (e: Error) => void;
  private isSynced = false;
  /** Sync target for a watch from a revision: the store revision when the watch was created. */
  private syncTarget: Revision | undefined;

  /** What the handler has been told: etcd key → last delivered resource. */
  private readonly known = new Map<string, Resource>();
  /** Keys deleted in etcd whose DELETED the guard holds back (they stay in `known`). */
  private readonly held = new Set<string>();
  private heldSince: string | undefined;
  /** The highest revision whose events have all been delivered. */
  private lastRev = 0;
  private cancelled = false;
  private stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;
  /** Bumped for each stream, so late callbacks of a replaced stream are ignored. */
  private streamGen = 0;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private progressTimer: NodeJS.Timeout | undefined;
  private readonly source: EtcdWatchSource;
  private readonly handler: WatchHandler;
  private readonly options: WatchOptions;

  constructor(source: EtcdWatchSource, fromRevision: Revision | undefined, handler: WatchHandler, options: WatchOptions) {
    this.source = source;
    this.handler = handler;
    this.options = options;
    this.synced = new Promise<Revision>((res, rej) => {
      this.resolveSynced = res;
      this.rejectSynced = rej;
    });
    this.synced.catch(() => undefined); // callers that never await it must not crash the process
    void this.begin(fromRevision);
  }

  /** Resources the handler holds (delivered and not deleted). */
  get delivered(): number {
    return this.known.size;
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    if (this.progressTimer !== undefined) clearInterval(this.progressTimer);
    this.closeStream();
  }

  /** Loads the starting state (delivering it when no revision was given), then opens the stream. */
  private async begin(fromRevision: Revision | undefined): Promise<void> {
    try {
      if (fromRevision === undefined) {
        const { revision, items } = await this.source.listAll(undefined);
        if (this.cancelled) return;
        const resources: Resource[] = [];
        for (const d of items) {
          this.source.noteInvalid(d.key, d.ok ? undefined : d);
          if (!d.ok) continue;
          this.known.set(d.key, d.resource);
          resources.push(d.resource);
        }
        resources.sort(byKindNamespaceName);
        for (const r of resources) this.emit({ type: 'ADDED', resource: r, revision: Number(r.metadata.resourceVersion) });
        this.lastRev = revision;
        this.markSynced(revision);
      } else {
        // The state at fromRevision tells later events apart (ADDED vs MODIFIED) and lets a
        // relist after compaction emit exact differences.
        let listed;
        try {
          listed = await this.source.listAll(fromRevision);
        } catch (err) {
          if (!isFutureRevision(err)) throw err;
          listed = await this.source.listAll(undefined);
        }
        if (this.cancelled) return;
        for (const d of listed.items) if (d.ok) this.known.set(d.key, d.resource);
        this.lastRev = fromRevision;
      }
      this.attempt = 0;
      await this.connect();
    } catch (err) {
      if (this.cancelled) return;
      if (fromRevision !== undefined && isCompacted(err)) {
        this.fail(new RevisionCompactedError(fromRevision, undefined));
        return;
      }
      this.retryLater(err, () => void this.begin(fromRevision));
    }
  }

  private async connect(): Promise<void> {
    if (this.cancelled) return;
    const gen = ++this.streamGen;
    let stream: IDuplexStream<IWatchRequest, IWatchResponse>;
    try {
      stream = await this.source.client.watchClient.watch();
    } catch (err) {
      if (gen === this.streamGen) this.lost(err);
      return;
    }
    if (this.cancelled || gen !== this.streamGen) {
      stream.end();
      return;
    }
    this.stream = stream;
    stream.on('data', (res: IWatchResponse) => {
      if (gen === this.streamGen && !this.cancelled) this.onResponse(res);
    });
    stream.on('error', (err: Error) => {
      if (gen === this.streamGen) this.lost(err);
    });
    stream.on('end', () => {
      if (gen === this.streamGen) this.lost(new Error('watch stream ended'));
    });
    const range = prefixRange(this.source.keyPrefix);
    stream.write({
      create_request: { key: range.key, range_end: range.range_end, start_revision: this.lastRev + 1, prev_kv: true, progress_notify: true },
    });
  }

  private onResponse(res: IWatchResponse): void {
    if (res.canceled) {
      const compactRevision = Number(res.compact_revision ?? 0);
      if (compactRevision > 0) {
        this.source.log.warn({ resumeFrom: this.lastRev + 1, compactRevision }, 'watch revision compacted; relisting');
        this.closeStream();
        void this.relist();
      } else {
        this.lost(new Error(`watch canceled by etcd: ${res.cancel_reason || 'no reason given'}`));
      }
      return;
    }
    if (res.created) {
      this.attempt = 0;
      if (!this.isSynced) {
        this.syncTarget = Number(res.header.revision);
        this.checkSynced();
        // etcd answers a progress request only once the watcher has caught up; ask until it has.
        if (!this.isSynced) {
          this.requestProgress();
          this.progressTimer = setInterval(() => this.requestProgress(), 200);
        }
      }
      return;
    }
    if (res.events.length === 0) {
      // A progress notification: every event up to header.revision has been sent.
      this.lastRev = Math.max(this.lastRev, Number(res.header.revision));
    } else {
      this.onEvents(res.events);
    }
    this.checkSynced();
  }

  /**
   * One watch response. Deletions in it that would remove most of what was delivered (a wiped
   * prefix) are held, as are any deletions while something is held; restoring the keys
   * withdraws them. A put of the marker key confirms only a change held by an earlier response
   * (one already reported), and only while that change deletes nothing beyond what was
   * reported: a marker put before the first held deletion, or in the same response, may be a
   * forgotten or pre-placed one, so it confirms nothing (the same rule as the directory store).
   */
  private onEvents(events: readonly IEvent[]): void {
    const marker = this.source.markerKey;
    /** What was held, and reported, before this response. */
    const reported = this.held.size > 0 ? new Set(this.held) : undefined;
    const deletedAtEnd = new Map<string, boolean>();
    for (const ev of events) {
      const key = ev.kv.key.toString();
      if (key !== marker) deletedAtEnd.set(key, ev.type !== 'Put');
    }
    let deletions = 0;
    for (const [key, deleted] of deletedAtEnd) if (deleted && this.known.has(key) && !this.held.has(key)) deletions++;
    const holding = this.held.size > 0 || judgeDeletion(this.source.guard, deletions, this.known.size).hold;
    /** The mod revision of the last put of the marker key in this response. */
    let markerRev: number | undefined;
    for (const ev of events) {
      const key = ev.kv.key.toString();
      const rev = Number(ev.kv.mod_revision);
      if (key === marker) {
        if (ev.type === 'Put') markerRev = rev;
        this.lastRev = Math.max(this.lastRev, rev);
        continue;
      }
      if (ev.type !== 'Put' && holding && this.known.has(key)) {
        this.source.noteInvalid(key, undefined);
        this.held.add(key);
        this.lastRev = Math.max(this.lastRev, rev);
        continue;
      }
      if (ev.type === 'Put') this.held.delete(key);
      this.onEvent(ev);
    }
    this.settleHeld(markerRev, reported);
  }

  /**
   * After a batch: applies held deletions when confirmed or no longer a mass deletion, and
   * reports what is held. `markerRev`: the revision of a put of the marker key in the batch;
   * `reported`: the deletions held before the batch, which that put may confirm.
   */
  private settleHeld(markerRev?: number, reported?: ReadonlySet<string>): void {
    const marker = this.source.markerKey;
    if (markerRev !== undefined) {
      this.source.removeMarker(markerRev);
      const beyond = reported === undefined ? this.held.size : [...this.held].filter((k) => !reported.has(k)).length;
      if (this.held.size === 0) {
        this.source.log.warn({ marker, revision: markerRev }, 'confirmation key found but no deletion is held; removed it (put it again after a deletion is held)');
      } else if (reported === undefined) {
        this.source.log.warn({ marker, revision: markerRev, held: this.held.size }, 'confirmation key put before or with the deletion it would confirm; it may predate the change, so it confirms nothing; removed it (put it again now that the deletion is held)');
      } else if (beyond > 0) {
        this.source.log.warn({ marker, revision: markerRev, held: this.held.size, reported: reported.size }, 'confirmation key found, but the held deletion now deletes more than when it was reported; it confirms nothing; removed it (put it again to apply the deletion as it is now)');
      } else {
        this.source.log.warn({ deletions: this.held.size, total: this.known.size, sample: sampleKeys(this.held) }, 'mass deletion confirmed; applied');
        this.releaseHeld();
      }
    }
    if (this.held.size > 0 && !judgeDeletion(this.source.guard, this.held.size, this.known.size).hold) {
      this.source.log.info({ deletions: this.held.size, heldSince: this.heldSince }, 'held deletion withdrawn (most keys were restored); applied what remains');
      this.releaseHeld();
    }
    if (this.held.size === 0) {
      if (this.heldSince !== undefined) this.source.reportHold(this, undefined);
      this.heldSince = undefined;
      return;
    }
    const first = this.heldSince === undefined;
    this.heldSince ??= new Date().toISOString();
    const change: HeldChange = {
      since: this.heldSince, deletions: this.held.size, total: this.known.size, additions: 0, modifications: 0,
      sample: sampleKeys([...this.held].map((k) => k.slice(this.source.keyPrefix.length))),
      confirm: `to apply it, put the key ${marker} (etcdctl put ${marker} yes); to withdraw it, restore the keys`,
    };
    if (first) this.source.log.error({ deletions: change.deletions, total: change.total, sample: change.sample, confirm: `etcdctl put ${marker} yes` }, 'mass deletion held: the change would delete most of the mesh; serving the last good state until it is confirmed');
    this.source.reportHold(this, change);
  }

  /** Emits the held deletions, at the latest revision seen (as a relist does). */
  private releaseHeld(): void {
    const rev = this.lastRev;
    for (const key of [...this.held].sort()) {
      const last = this.known.get(key);
      this.known.delete(key);
      if (last !== undefined) this.emit({ type: 'DELETED', resource: withVersion(last, rev), revision: rev });
    }
    this.held.clear();
  }

  private requestProgress(): void {
    if (this.isSynced || this.cancelled) {
      if (this.progressTimer !== undefined) clearInterval(this.progressTimer);
      this.progressTimer = undefined;
      return;
    }
    try {
      this.stream?.write({ progress_request: {} });
    } catch {
      // The stream is going away; the reconnect asks again.
    }
  }

  private onEvent(ev: IEvent): void {
    const rev = Number(ev.kv.mod_revision);
    const key = ev.kv.key.toString();
    if (ev.type === 'Put') {
      const d = this.source.decode(ev.kv);
      this.source.noteInvalid(key, d.ok ? undefined : d);
      if (d.ok) {
        const type = this.known.has(key) ? 'MODIFIED' : 'ADDED';
        this.known.set(key, d.resource);
        this.emit({ type, resource: d.resource, revision: rev });
      } else {
        this.source.log.error({ key, revision: rev, errors: d.errors.map(String) }, 'invalid value in etcd; keeping its last good state');
      }
    } else {
      this.source.noteInvalid(key, undefined);
      const last = this.known.get(key);
      if (last !== undefined) {
        this.known.delete(key);
        this.emit({ type: 'DELETED', resource: withVersion(last, rev), revision: rev });
      }
    }
    this.lastRev = Math.max(this.lastRev, rev);
  }

  /** After compaction: list the current state and emit what differs from what was delivered. */
  private async relist(): Promise<void> {
    if (this.cancelled) return;
    try {
      const { revision, items } = await this.source.listAll(undefined);
      if (this.cancelled) return;
      const seen = new Set<string>();
      const changed: WatchEvent[] = [];
      for (const d of items) {
        this.source.noteInvalid(d.key, d.ok ? undefined : d);
        if (!d.ok) {
          if (this.known.has(d.key)) seen.add(d.key); // keep its last good state
          continue;
        }
        seen.add(d.key);
        const before = this.known.get(d.key);
        if (before === undefined) changed.push({ type: 'ADDED', resource: d.resource, revision: Number(d.resource.metadata.resourceVersion) });
        else if (before.metadata.resourceVersion !== d.resource.metadata.resourceVersion) {
          changed.push({ type: 'MODIFIED', resource: d.resource, revision: Number(d.resource.metadata.resourceVersion) });
        }
      }
      changed.sort((a, b) => a.revision - b.revision);
      const keyOfResource = (r: Resource): string => `${this.source.keyPrefix}${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;
      for (const e of changed) this.held.delete(keyOfResource(e.resource));
      const gone: string[] = [];
      for (const key of this.known.keys()) if (!seen.has(key) && !this.held.has(key)) gone.push(key);
      // A relist that finds most keys gone is a mass deletion too.
      const hold = this.held.size > 0 || judgeDeletion(this.source.guard, gone.length, this.known.size).hold;
      const deleted: WatchEvent[] = [];
      for (const key of gone) {
        if (hold) this.held.add(key);
        else deleted.push({ type: 'DELETED', resource: withVersion(this.known.get(key)!, revision), revision });
      }
      for (const e of changed) this.known.set(keyOfResource(e.resource), e.resource);
      for (const e of deleted) this.known.delete(keyOfResource(e.resource));
      this.lastRev = revision;
      for (const e of changed) this.emit(e);
      for (const e of deleted) this.emit(e);
      this.source.log.info({ revision, modified: changed.length, deleted: deleted.length, held: this.held.size }, 'relisted after compaction');
      this.settleHeld();
      this.checkSynced();
      this.attempt = 0;
      await this.connect();
    } catch (err) {
      this.retryLater(err, () => void this.relist());
    }
  }

  private emit(event: WatchEvent): void {
    if (this.cancelled) return;
    try {
      this.handler(event);
    } catch (err) {
      this.source.log.error({ err, resource: `${event.resource.kind}/${event.resource.metadata.namespace}/${event.resource.metadata.name}`, revision: event.revision }, 'watch handler threw');
    }
  }

  private checkSynced(): void {
    if (this.isSynced || this.syncTarget === undefined || this.lastRev < this.syncTarget) return;
    this.markSynced(this.lastRev);
  }

  private markSynced(revision: Revision): void {
    if (this.isSynced) return;
    this.isSynced = true;
    if (this.progressTimer !== undefined) clearInterval(this.progressTimer);
    this.progressTimer = undefined;
    this.resolveSynced(revision);
  }

  private fail(err: Error): void {
    this.cancel();
    this.rejectSynced(err);
    try {
      this.options.onError?.(err);
    } catch (e) {
      this.source.log.error({ err: e }, 'watch onError handler threw');
    }
  }

  private lost(err: unknown): void {
    if (this.cancelled) return;
    this.closeStream();
    this.retryLater(err, () => void this.connect());
  }

  private closeStream(): void {
    this.streamGen++;
    if (this.progressTimer !== undefined) clearInterval(this.progressTimer);
    this.progressTimer = undefined;
    const s = this.stream;
    this.stream = undefined;
    if (s !== undefined) {
      s.on('error', () => undefined);
      try {
        s.cancel();
      } catch {
        // Already closed.
      }
    }
  }

  /** Exponential backoff with jitter, capped at maxBackoffMs; retries until cancelled. */
  private retryLater(err: unknown, again: () => void): void {
    if (this.cancelled) return;
    const base = Math.min(this.source.maxBackoffMs, this.source.initialBackoffMs * 2 ** Math.min(this.attempt, 20));
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.attempt++;
    this.source.log.warn({ err: String((err as Error)?.message ?? err), attempt: this.attempt, retryInMs: delay, resumeFrom: this.lastRev + 1 }, 'etcd watch interrupted; retrying');
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      again();
    }, delay);
  }
}
