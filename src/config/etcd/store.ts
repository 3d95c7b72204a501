// The etcd ConfigStore: resources as JSON values under PREFIX/KIND/NAMESPACE/NAME. etcd's mod
// revision is the resourceVersion; conditional writes are etcd transactions.
import { Etcd3, type IKeyValue, type IRangeResponse } from 'etcd3';
import pino, { type Logger } from 'pino';
import type { ConfigError, Resource } from '../../api/index.ts';
import { CONFIRM_DELETE_MARKER, deleteGuard, type DeleteGuardOptions, type HeldChange } from '../delete-guard.ts';
import { AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError, StoreClosedError } from '../errors.ts';
import { checkSegments, compareByNamespaceName, keyOf, prepareWrite, sameContent, sameSpec, withVersion } from '../object.ts';
import { toLabelSelector } from '../selector.ts';
import type { ApplyOp, ApplyResult, ConfigStore, ConfigStoreStatus, ConfigWatch, DeleteOptions, ListOptions, Revision, WatchHandler, WatchOptions } from '../store.ts';
import { checkIfMatch, prepareBatch, putEffect } from '../batch.ts';
import { normalizePrefix, prefixRange, resourceEtcdKey } from './keys.ts';
import { decodeValue, encodeValue, type Decoded } from './value.ts';
import { EtcdWatch, type EtcdWatchSource } from './watch.ts';

export interface EtcdStoreOptions {
  /** Client URLs, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  /** Key prefix; default /sextant/config. */
  prefix?: string;
  logger?: Logger;
  /** Deadline of each unary call (get, list page, txn). Default 10 s. */
  callTimeoutMs?: number;
  /** Keys per range request when listing. Default 1000. */
  pageSize?: number;
  /** Watch reconnect backoff: first delay and cap. Defaults 100 ms and 5 s. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Invalid values remembered for errors(). Default 1000. */
  maxRecordedErrors?: number;
  /**
   * The mass-deletion guard of watches: a watch batch (or a relist) deleting more than half of
   * the resources it delivered, and more than 10, is held until PREFIX/.sextant-confirm-delete is put.
   */
  deleteGuard?: DeleteGuardOptions;
}

/** Connects and checks that etcd answers; throws when it does not within the call timeout. */
export async function openEtcdStore(options: EtcdStoreOptions): Promise<EtcdConfigStore> {
  const store = new EtcdConfigStore(options);
  try {
    await store.revision();
  } catch (err) {
    await store.close();
    throw new Error(`cannot reach etcd at ${options.endpoints.join(', ')}: ${(err as Error).message}`, { cause: err });
  }
  return store;
}

function isNum(s: string | undefined): s is string {
  return s !== undefined && /^[0-9]+$/.test(s);
}

export class EtcdConfigStore implements ConfigStore {
  readonly backend = 'etcd' as const;
  readonly prefix: string;
  readonly client: Etcd3;
  private readonly log: Logger;
  private readonly pageSize: number;
  private readonly invalid = new Map<string, ConfigError[]>();
  private readonly maxRecordedErrors: number;
  private readonly watches = new Set<EtcdWatch>();
  private readonly watchSource: EtcdWatchSource;
  /** The key an operator puts to confirm a held deletion. */
  readonly confirmKey: string;
  private readonly holds = new Map<EtcdWatch, HeldChange>();
  private closed = false;

  constructor(options: EtcdStoreOptions) {
    if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) {
      throw new InvalidArgumentError('etcdEndpoints must list at least one URL, e.g. http://127.0.0.1:2379');
    }
    this.prefix = normalizePrefix(options.prefix);
    this.log = (options.logger ?? pino({ level: process.env.SEXTANT_LOG_LEVEL ?? 'info' })).child({ component: 'config', backend: 'etcd', prefix: this.prefix });
    this.pageSize = options.pageSize ?? 1000;
    this.maxRecordedErrors = options.maxRecordedErrors ?? 1000;
    const timeout = options.callTimeoutMs ?? 10_000;
    this.client = new Etcd3({
      hosts: options.endpoints,
      dialTimeout: timeout,
      grpcOptions: { 'grpc.max_receive_message_length': 64 * 1024 * 1024 },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    });
    const keyPrefix = `${this.prefix}/`;
    this.confirmKey = `${keyPrefix}${CONFIRM_DELETE_MARKER}`;
    const guard = deleteGuard(options.deleteGuard);
    this.watchSource = {
      client: this.client,
      keyPrefix,
      log: this.log,
      decode: (kv) => decodeValue(this.prefix, kv),
      listAll: (revision) => this.rangeAll(keyPrefix, revision),
      noteInvalid: (key, d) => this.noteInvalid(key, d),
      initialBackoffMs: options.initialBackoffMs ?? 100,
      maxBackoffMs: options.maxBackoffMs ?? 5000,
      guard,
      markerKey: this.confirmKey,
      reportHold: (w, held) => {
        if (held === undefined) this.holds.delete(w);
        else this.holds.set(w, held);
      },
      removeMarker: (revision) => {
        if (this.closed) return;
        // Only the put that was seen: a put made meanwhile (a fresh confirmation) stays for the watches to judge.
        const k = Buffer.from(this.confirmKey);
        this.client.kv.txn({
          compare: [{ key: k, target: 'Mod', result: 'Equal', mod_revision: revision }],
          success: [{ request_delete_range: { key: k } }],
        }).catch((err: unknown) => this.log.warn({ err: String(err), key: this.confirmKey }, 'could not remove the confirmation key'));
      },
    };
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreClosedError();
  }

  private noteInvalid(key: string, d: Decoded | undefined): void {
    if (d === undefined || d.ok) {
      this.invalid.delete(key);
      return;
    }
    if (!this.invalid.has(key) && this.invalid.size >= this.maxRecordedErrors) {
      const oldest = this.invalid.keys().next().value;
      if (oldest !== undefined) this.invalid.delete(oldest);
    }
    this.invalid.set(key, d.errors);
  }

  /** Every key under `p`, page by page, all pages read at the first page's revision. */
  private async rangeAll(p: string, revision: Revision | undefined): Promise<{ revision: Revision; items: Decoded[] }> {
    const { key, range_end } = prefixRange(p);
    const items: Decoded[] = [];
    let start = key;
    let at = revision;
    for (;;) {
      const res: IRangeResponse = await this.client.kv.range({ key: start, range_end, limit: this.pageSize, ...(at !== undefined ? { revision: at } : {}) });
      if (at === undefined) at = Number(res.header.revision);
      for (const kv of res.kvs) if (kv.key.toString() !== this.confirmKey) items.push(decodeValue(this.prefix, kv));
      const last = res.kvs.at(-1);
      if (!res.more || last === undefined) break;
      start = Buffer.concat([last.key, Buffer.from([0])]);
    }
    return { revision: at, items };
  }

  private async getKv(etcdKey: string): Promise<IKeyValue | undefined> {
    const res = await this.client.kv.range({ key: Buffer.from(etcdKey) });
    return res.kvs[0];
  }

  async get(kind: string, namespace: string, name: string): Promise<Resource | undefined> {
    this.checkOpen();
    checkSegments(kind, namespace, name);
    const kv = await this.getKv(resourceEtcdKey(this.prefix, kind, namespace, name));
    if (kv === undefined) return undefined;
    const d = decodeValue(this.prefix, kv);
    this.noteInvalid(d.key, d);
    return d.ok ? d.resource : undefined;
  }

  async list(kind: string, options: ListOptions = {}): Promise<Resource[]> {
    this.checkOpen();
    if (typeof kind !== 'string' || kind === '' || kind.includes('/')) throw new InvalidArgumentError('kind must be a non-empty string without "/"');
    if (options.namespace !== undefined) checkSegments(kind, options.namespace, 'x');
    const selector = toLabelSelector(options.labelSelector);
    const p = options.namespace === undefined ? `${this.prefix}/${kind}/` : `${this.prefix}/${kind}/${options.namespace}/`;
    const { items } = await this.rangeAll(p, undefined);
    const out: Resource[] = [];
    for (const d of items) {
      this.noteInvalid(d.key, d);
      if (!d.ok) continue;
      if (selector !== undefined && !selector.matches(d.resource.metadata.labels)) continue;
      out.push(d.resource);
    }
    return out.sort(compareByNamespaceName);
  }

  async revision(): Promise<Revision> {
    this.checkOpen();
    const res = await this.client.kv.range({ key: Buffer.from(`${this.prefix}/`), count_only: true });
    return Number(res.header.revision);
  }

  errors(): ConfigError[] {
    return [...this.invalid.keys()].sort().flatMap((k) => this.invalid.get(k)!);
  }

  status(): ConfigStoreStatus {
    // With several watches (one per consumer), report the largest held deletion.
    let held: HeldChange | undefined;
    for (const h of this.holds.values()) if (held === undefined || h.deletions > held.deletions) held = h;
    const problems = held === undefined ? [] : [{
      code: 'deletion-held' as const, since: held.since,
      message: `a change deleting ${held.deletions} of ${held.total} resources is held; ${held.confirm}`,
    }];
    let resources = 0;
    for (const w of this.watches) resources = Math.max(resources, w.delivered);
    return {
      backend: 'etcd', healthy: held === undefined, problems, heldChange: held === undefined ? null : { ...held, sample: [...held.sample] },
      resources, errors: this.errors().length, warnings: [],
    };
  }

  async create(resource: Resource): Promise<Resource> {
    this.checkOpen();
    const { key, resource: input } = prepareWrite(resource);
    const etcdKey = resourceEtcdKey(this.prefix, input.kind, input.metadata.namespace, input.metadata.name);
    const stored: Resource = { ...input, metadata: { ...input.metadata, creationTimestamp: new Date().toISOString(), generation: 1 } };
    const k = Buffer.from(etcdKey);
    const res = await this.client.kv.txn({
      compare: [{ key: k, target: 'Create', result: 'Equal', create_revision: 0 }],
      success: [{ request_put: { key: k, value: encodeValue(stored) } }],
      failure: [],
    });
    if (!res.succeeded) throw new AlreadyExistsError(key, `etcd key ${etcdKey}`);
    const out = withVersion(stored, Number(res.header.revision));
    this.log.info({ resource: key, resourceVersion: out.metadata.resourceVersion }, 'created');
    return out;
  }

  async update(resource: Resource): Promise<Resource> {
    this.checkOpen();
    const { key, resource: input } = prepareWrite(resource);
    const etcdKey = resourceEtcdKey(this.prefix, input.kind, input.metadata.namespace, input.metadata.name);
    const expected = input.metadata.resourceVersion;
    const kv = await this.getKv(etcdKey);
    if (kv === undefined) throw new NotFoundError(key);
    if (expected === undefined || expected === '') throw new ConflictError(key, undefined, kv.mod_revision);
    if (!isNum(expected) || expected !== kv.mod_revision) throw new ConflictError(key, expected, kv.mod_revision);
    const current = decodeValue(this.prefix, kv);
    let creationTimestamp = new Date().toISOString();
    let generation = 1;
    if (current.ok) {
      if (sameContent(current.resource, input)) return current.resource;
      creationTimestamp = current.resource.metadata.creationTimestamp ?? creationTimestamp;
      generation = (current.resource.metadata.generation ?? 1) + (sameSpec(current.resource, input) ? 0 : 1);
    }
    const stored: Resource = { ...input, metadata: { ...input.metadata, creationTimestamp, generation } };
    const k = Buffer.from(etcdKey);
    const res = await this.client.kv.txn({
      compare: [{ key: k, target: 'Mod', result: 'Equal', mod_revision: expected }],
      success: [{ request_put: { key: k, value: encodeValue(stored) } }],
      failure: [{ request_range: { key: k } }],
    });
    if (!res.succeeded) {
      const now = res.responses[0]?.response_range.kvs[0];
      if (now === undefined) throw new NotFoundError(key);
      throw new ConflictError(key, expected, now.mod_revision);
    }
    const out = withVersion(stored, Number(res.header.revision));
    this.log.info({ resource: key, resourceVersion: out.metadata.resourceVersion }, 'updated');
    return out;
  }

  async delete(kind: string, namespace: string, name: string, options: DeleteOptions = {}): Promise<Resource> {
    this.checkOpen();
    checkSegments(kind, namespace, name);
    const key = keyOf(kind, namespace, name);
    const k = Buffer.from(resourceEtcdKey(this.prefix, kind, namespace, name));
    const expected = options.resourceVersion;
    if (expected !== undefined && !isNum(expected)) {
      const kv = await this.getKv(k.toString());
      if (kv === undefined) throw new NotFoundError(key);
      throw new ConflictError(key, expected, kv.mod_revision);
    }
    const res = await this.client.kv.txn({
      compare: expected === undefined ? [{ key: k, target: 'Version', result: 'Greater', version: 0 }] : [{ key: k, target: 'Mod', result: 'Equal', mod_revision: expected }],
      success: [{ request_delete_range: { key: k, prev_kv: true } }],
      failure: [{ request_range: { key: k } }],
    });
    if (!res.succeeded) {
      const now = res.responses[0]?.response_range.kvs[0];
      if (now === undefined) throw new NotFoundError(key);
      throw new ConflictError(key, expected, now.mod_revision);
    }
    const prev = res.responses[0]?.response_delete_range.prev_kvs[0];
    if (prev === undefined) throw new NotFoundError(key);
    const revision = Number(res.header.revision);
    this.invalid.delete(k.toString());
    this.log.info({ resource: key, revision }, 'deleted');
    const d = decodeValue(this.prefix, prev);
    if (d.ok) return withVersion(d.resource, revision);
    // The deleted value was not valid config; still report what was removed.
    return { apiVersion: '', kind, metadata: { name, namespace, resourceVersion: String(revision) }, spec: {} };
  }

  async apply(ops: readonly ApplyOp[]): Promise<ApplyResult> {
    this.checkOpen();
    const batch = prepareBatch(ops);
    if (batch.length === 0) return { revision: await this.revision(), results: [] };
    const keys = batch.map((op) => Buffer.from(resourceEtcdKey(this.prefix, op.kind, op.namespace, op.name)));
    // Read every key at one revision, plan, then write in one transaction that holds only if
    // none of the keys changed since the read; a concurrent writer makes it plan again.
    for (let attempt = 1; ; attempt++) {
      const read = await this.client.kv.txn({ compare: [], success: keys.map((key) => ({ request_range: { key } })), failure: [] });
      const compare: NonNullable<Parameters<Etcd3['kv']['txn']>[0]['compare']> = [];
      const success: NonNullable<Parameters<Etcd3['kv']['txn']>[0]['success']> = [];
      const planned: Array<{ stored: Resource | undefined; current: Resource | undefined; changed: boolean }> = [];
      const now = new Date().toISOString();
      batch.forEach((op, i) => {
        const kv = read.responses[i]?.response_range.kvs[0];
        const d = kv === undefined ? undefined : decodeValue(this.prefix, kv);
        const current = d?.ok === true ? d.resource : undefined;
        checkIfMatch(op, kv?.mod_revision);
        const key = keys[i]!;
        compare.push(kv === undefined
          ? { key, target: 'Create', result: 'Equal', create_revision: 0 }
          : { key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision });
        if (op.op === 'delete') {
          if (kv !== undefined) success.push({ request_delete_range: { key } });
          planned.push({ stored: undefined, current, changed: kv !== undefined });
          return;
        }
        const effect = kv === undefined ? 'create' : current === undefined ? 'update' : putEffect(op, current);
        if (effect === 'none') {
          planned.push({ stored: current, current, changed: false });
          return;
        }
        const creationTimestamp = current?.metadata.creationTimestamp ?? now;
        const generation = current === undefined ? 1 : (current.metadata.generation ?? 1) + (sameSpec(current, op.resource!) ? 0 : 1);
        const stored: Resource = { ...op.resource!, metadata: { ...op.resource!.metadata, creationTimestamp, generation } };
        success.push({ request_put: { key, value: encodeValue(stored) } });
        planned.push({ stored, current, changed: true });
      });
      if (success.length === 0) {
        return { revision: Number(read.header.revision), results: batch.map((op, i) => ({ op: op.op, key: op.key, resource: planned[i]!.stored, changed: false })) };
      }
      const res = await this.client.kv.txn({ compare, success, failure: [] });
      if (!res.succeeded) {
        if (attempt >= 5) throw new ConflictError(batch[0]!.key, undefined, undefined, `${batch.map((op) => op.key).join(', ')}: kept changing under the batch (${attempt} attempts); retry`);
        continue;
      }
      const revision = Number(res.header.revision);
      const results = batch.map((op, i) => {
        const p = planned[i]!;
        if (!p.changed) return { op: op.op, key: op.key, resource: p.stored, changed: false };
        if (op.op === 'put') return { op: op.op, key: op.key, resource: withVersion(p.stored!, revision), changed: true };
        this.invalid.delete(keys[i]!.toString());
        const last = p.current ?? { apiVersion: '', kind: op.kind, metadata: { name: op.name, namespace: op.namespace }, spec: {} };
        return { op: op.op, key: op.key, resource: withVersion(last, revision), changed: true };
      });
      this.log.info({ resources: results.filter((r) => r.changed).map((r) => `${r.op} ${r.key}`), revision }, 'applied batch');
      return { revision, results };
    }
  }

  watch(fromRevision: Revision | undefined, handler: WatchHandler, options: WatchOptions = {}): ConfigWatch {
    this.checkOpen();
    if (fromRevision !== undefined && (!Number.isSafeInteger(fromRevision) || fromRevision < 0)) {
      throw new InvalidArgumentError(`fromRevision must be a non-negative integer, got ${String(fromRevision)}`);
    }
    const w = new EtcdWatch(this.watchSource, fromRevision, handler, options);
    this.watches.add(w);
    return {
      synced: w.synced,
      cancel: () => {
        w.cancel();
        this.watches.delete(w);
        this.holds.delete(w);
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) w.cancel();
    this.watches.clear();
    this.client.close();
  }
}
