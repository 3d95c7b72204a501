// The ConfigStore interface: how the pilot and the CLI read, write and watch Istio config,
// whatever holds it (a directory of YAML files, or etcd).
import type { ConfigError, Resource } from '../api/index.ts';
import type { HeldChange } from './delete-guard.ts';
import type { LabelSelector } from './selector.ts';

/**
 * A store revision. Every write moves the store to a higher revision, and a resource's
 * `metadata.resourceVersion` is the revision (as a decimal string) of its last write.
 * In etcd it is etcd's own revision; in the directory store a counter kept by the process.
 */
export type Revision = number;

export interface ListOptions {
  /** Only this namespace; all namespaces when omitted. */
  namespace?: string;
  /** Kubernetes selector syntax (`app=reviews,version!=v1,tier in (web,api),!canary`), an exact-match map, or a parsed selector. */
  labelSelector?: string | Readonly<Record<string, string>> | LabelSelector;
}

export interface DeleteOptions {
  /** When given, the delete is refused with ConflictError unless this is the current version. */
  resourceVersion?: string;
}

/**
 * One write of an atomic batch (`ConfigStore.apply`). `put` creates the resource or replaces it
 * (an unchanged put is a no-op); `delete` removes it (deleting an absent resource is a no-op).
 * With `ifMatch`, the op applies only if the resource exists at exactly that resourceVersion.
 */
export type ApplyOp =
  | { op: 'put'; resource: Resource; ifMatch?: string | undefined }
  | { op: 'delete'; kind: string; namespace: string; name: string; ifMatch?: string | undefined };

/** The outcome of one op of a batch, in the order of the ops. */
export interface ApplyOpResult {
  op: 'put' | 'delete';
  /** Kind/namespace/name. */
  key: string;
  /** put: the resource as stored; delete: its last state (undefined when it was absent). */
  resource: Resource | undefined;
  /** False when the op changed nothing (an unchanged put, a delete of an absent resource). */
  changed: boolean;
}

export interface ApplyResult {
  /** The revision of the batch's writes (the store's revision when nothing changed). */
  revision: Revision;
  results: ApplyOpResult[];
}

/** Most ops in one batch: etcd's default `--max-txn-ops`. */
export const MAX_APPLY_OPS = 128;

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/**
 * One change. `resource.metadata.resourceVersion === String(revision)` always holds; for
 * DELETED, `resource` is the last state before the delete and `revision` the delete's.
 */
export interface WatchEvent {
  type: WatchEventType;
  resource: Resource;
  revision: Revision;
}

export type WatchHandler = (event: WatchEvent) => void;

export interface WatchOptions {
  /**
   * Called when the watch can no longer deliver events and has stopped (the only such case is
   * RevisionCompactedError for a `fromRevision` the store no longer has). Transient losses of
   * the connection to etcd are not errors: the watch resumes by itself.
   */
  onError?: (err: Error) => void;
}

export interface ConfigWatch {
  /**
   * Resolves with the revision the watch is live at, once every event up to it has been
   * delivered (with no fromRevision: once the whole current state has been delivered as ADDED).
   * Rejects when the watch could not start.
   */
  readonly synced: Promise<Revision>;
  /** Stops delivery; no handler call happens after cancel() returns. */
  cancel(): void;
}

/**
 * The config store. Resources are identified by Kind (e.g. "VirtualService", unique across the
 * supported groups), namespace and name.
 *
 * Consistency: each write is atomic and linearizable with every other write to the same store
 * (the directory store serializes writes in-process; etcd does it in the cluster). Reads see
 * every write acknowledged before them.
 *
 * Optimistic concurrency: update() requires `metadata.resourceVersion` and succeeds only when it
 * is the resource's current version; of N concurrent updates carrying the same version exactly
 * one succeeds and the others get ConflictError. delete() checks the version when given.
 *
 * Validation: every write is validated whole (schema and Istio's semantic rules) before anything
 * is stored; an invalid write throws ValidationFailedError and changes nothing.
 *
 * Watch: `watch(fromRevision, handler)` delivers, in revision order, every change with a revision
 * greater than `fromRevision` (so passing the last revision you saw resumes without repeats).
 * Without `fromRevision` it first delivers the current state as ADDED events, then the changes.
 */
export interface ConfigStore {
  /** Which backend this is, for logs and status pages. */
  readonly backend: 'directory' | 'etcd';

  get(kind: string, namespace: string, name: string): Promise<Resource | undefined>;
  /** Resources of one kind, sorted by namespace then name. */
  list(kind: string, options?: ListOptions): Promise<Resource[]>;
  /** Stores a new resource; returns it as stored (resourceVersion, creationTimestamp, generation set). AlreadyExistsError if present. */
  create(resource: Resource): Promise<Resource>;
  /** Replaces a resource; `metadata.resourceVersion` must be current (ConflictError otherwise, NotFoundError if absent). */
  update(resource: Resource): Promise<Resource>;
  /** Removes a resource and returns its last state. NotFoundError if absent. */
  delete(kind: string, namespace: string, name: string, options?: DeleteOptions): Promise<Resource>;
  /**
   * Writes a batch all-or-nothing: every op is validated first (ValidationFailedError,
   * InvalidArgumentError for a key named twice or more than MAX_APPLY_OPS ops), every `ifMatch`
   * checked (ConflictError), then all changes land at once: one transaction on etcd (every
   * event at one revision), one step on the directory store (consecutive revisions, delivered
   * together). A batch that fails changes nothing.
   */
  apply(ops: readonly ApplyOp[]): Promise<ApplyResult>;
  watch(fromRevision: Revision | undefined, handler: WatchHandler, options?: WatchOptions): ConfigWatch;
  /** The store's current revision (the highest revision of any write it has seen). */
  revision(): Promise<Revision>;
  /**
   * Config the store holds but does not serve because it is invalid: files that failed to parse
   * or validate (directory store), values written to etcd by other tools that fail validation.
   * Empty when everything is served.
   */
  errors(): ConfigError[];
  /**
   * Whether the store is following its source, for status pages, metrics and alerts. Optional
   * so that wrappers and test doubles of a store need not implement it.
   */
  status?(): ConfigStoreStatus;
  /** Stops watches and releases files, sockets and timers. */
  close(): Promise<void>;
}

/** Why a store is not following its source (it keeps serving its last good state meanwhile). */
export interface StoreProblem {
  /**
   * `root-missing`: the config directory vanished (moved, deleted); `walk-limit`: the tree has more
   * directories, files or depth than the store reads; `deletion-held`: a mass deletion waits for
   * confirmation.
   */
  code: 'root-missing' | 'walk-limit' | 'deletion-held';
  message: string;
  /** When the problem started (ISO 8601). */
  since: string;
}

export interface ConfigStoreStatus {
  backend: 'directory' | 'etcd';
  /**
   * False while the store serves a last good state it cannot reconcile with its source: see
   * `problems`. Invalid files and duplicates alone do not make a store unhealthy (they are
   * `errors`, served as before), nor does a lost etcd connection (the watch resumes by itself).
   */
  healthy: boolean;
  problems: StoreProblem[];
  /** The change held by the mass-deletion guard, if any. */
  heldChange: HeldChange | null;
  /** Resources being served. */
  resources: number;
  /** `errors().length`: config the store holds but does not serve. */
  errors: number;
  /** Things skipped on purpose, one line each (symbolic-link loops); at most 100. */
  warnings: string[];
}
