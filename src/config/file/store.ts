// The directory ConfigStore: a tree of YAML/JSON files is the source of truth, held in memory
// and kept current by watching the tree. A file applies whole or not at all; a resource
// declared in several files is served from the first in path order. A missing or replaced
// directory, and a change deleting most of the mesh, keep the last good state (see
// docs/config-stores.md).
import { closeSync, fstatSync, openSync, readSync, watch as watchFs, type FSWatcher } from 'node:fs';
import { lstat, mkdir, readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { ConfigError, parseDocuments, resourceKey, validateResource, type LoadResult, type Resource } from '../../api/index.ts';
import { CONFIRM_DELETE_MARKER, deleteGuard, judgeDeletion, sampleKeys, type DeleteGuard, type DeleteGuardOptions, type HeldChange } from '../delete-guard.ts';
import {
  AlreadyExistsError,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  RevisionCompactedError,
  SourceUnavailableError,
  StoreClosedError,
} from '../errors.ts';
import { checkSegments, compareByNamespaceName, deepFreeze, keyOf, prepareWrite, sameContent, sameSpec, storedForm, withVersion } from '../object.ts';
import { toLabelSelector } from '../selector.ts';
import type {
  ApplyOp, ApplyResult, ConfigStore, ConfigStoreStatus, ConfigWatch, DeleteOptions, ListOptions, Revision, StoreProblem, WatchEvent, WatchHandler, WatchOptions,
} from '../store.ts';
import { contentHash, isConfigFileName, isNotFound, rewriteYamlDocument, serializeAll, writeFileAtomic } from './persist.ts';
import { checkIfMatch, prepareBatch } from '../batch.ts';
import { writeFilesTogether, type FileWrite } from './batch-write.ts';
import { DEFAULT_WALK_LIMITS, fileIdentity, walkConfigTree, type WalkLimits, type WalkResult } from './walk.ts';

export interface DirectoryStoreOptions {
  /** The config directory (read recursively; hidden entries are skipped). */
  dir: string;
  /**
   * Create the directory when it does not exist. Default false: a missing directory is refused
   * with SourceUnavailableError, so a typo or an unmounted volume never starts an empty mesh.
   */
  create?: boolean;
  logger?: Logger;
  /** Quiet time after the last file event before changed files are rescanned. Default 100 ms. */
  debounceMs?: number;
  /** Longest a rescan waits while events keep coming. Default 1000 ms. */
  maxDebounceMs?: number;
  /**
   * Period of a full stat-based rescan that catches changes the file watcher missed (inotify
   * overflow, network filesystems). Default 30 s; 0 disables.
   */
  resyncIntervalMs?: number;
  /** While the directory is missing, how often the store looks for it. Default 1000 ms. */
  rootPollMs?: number;
  /** Events kept for watch(fromRevision). Default 100,000; older revisions get RevisionCompactedError. */
  historyLimit?: number;
  /** Watch the tree for outside edits. Default true. */
  watchFiles?: boolean;
  /** Files read in parallel at load. Default 64. */
  readConcurrency?: number;
  /** Bounds of every walk of the tree (and of the directories watched). Defaults: 10,000 directories, 200,000 files, 32 levels. */
  limits?: Partial<WalkLimits>;
  /** The mass-deletion guard. Default: hold a change deleting more than half of the resources, and more than 10. */
  deleteGuard?: DeleteGuardOptions;
}

/** One resource as a file declares it. */
interface Declaration {
  key: string;
  /** As parsed (not frozen, no store-set fields). */
  resource: Resource;
  file: string;
  /** Document index in the file. */
  index: number;
}

interface FileState {
  /** Hash, mtime and size of the bytes last read, good or not: reading the same bytes again changes nothing. '' forces a re-read. */
  hash: string;
  mtimeMs: number;
  size: number;
  /** The last content that parsed and validated; its resources are declared. Undefined while the file never was good. */
  good: { hash: string; docs: Declaration[]; format: 'yaml' | 'json'; hasList: boolean } | undefined;
  /** Why the current content is refused; empty when the current content is the good one. */
  errors: ConfigError[];
}

interface Entry {
  /** Frozen, with resourceVersion set. */
  resource: Resource;
  file: string;
  /** Document index in the file. */
  index: number;
}

interface Watcher {
  handler: WatchHandler;
  /** Events waiting for the first delivery pass; null once live. */
  buffer: WatchEvent[] | null;
  cancelled: boolean;
}

type ReadResult =
  | { kind: 'missing' }
  | { kind: 'unchanged'; mtimeMs: number; size: number }
  | { kind: 'ok'; hash: string; mtimeMs: number; size: number; text: string }
  | { kind: 'unreadable'; error: ConfigError };

type RootCheck = 'ok' | 'lost' | 'changed';

type Op =
  | { type: 'add' | 'modify' | 'move'; key: string; decl: Declaration }
  | { type: 'delete'; key: string };

const MAX_PENDING_PATHS = 10_000;
/** Links warned about (each once); beyond this the set is forgotten and warnings may repeat. */
const MAX_WARNED_LINKS = 10_000;
const MAX_STATUS_WARNINGS = 100;

function byFileThenIndex(a: { file: string; index: number }, b: { file: string; index: number }): number {
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  return a.index - b.index;
}

/** Parses a file's text with the config API's codec (which reads plain block YAML fast). */
function parseConfigText(file: string, text: string): LoadResult {
  return parseDocuments(text, file);
}

/** Opens the store: loads every file under `dir`, then starts watching it. */
export async function openDirectoryStore(options: DirectoryStoreOptions): Promise<DirectoryConfigStore> {
  const store = new DirectoryConfigStore(options);
  await store.load();
  return store;
}

export class DirectoryConfigStore implements ConfigStore {
  readonly backend = 'directory' as const;
  readonly dir: string;
  private readonly log: Logger;
  private readonly createIfMissing: boolean;
  private readonly debounceMs: number;
  private readonly maxDebounceMs: number;
  private readonly resyncIntervalMs: number;
  private readonly rootPollMs: number;
  private readonly historyLimit: number;
  private readonly watchFiles: boolean;
  private readonly readConcurrency: number;
  private readonly limits: WalkLimits;
  private readonly guard: DeleteGuard;

  /** What is served, by Kind/namespace/name. */
  private readonly resources = new Map<string, Entry>();
  /** Every config file found, by absolute path. */
  private readonly files = new Map<string, FileState>();
  /** Every declaration of each resource in the files' good content, in file path order: the first is served. */
  private readonly declarations = new Map<string, Declaration[]>();
  /** Keys whose declarations changed since what is served was last brought up to date. */
  private readonly dirty = new Set<string>();
  /** Declarations that are not served because an earlier file declares the same resource, by `file:index`. */
  private shadowed = new Map<string, { decl: Declaration; winner: Declaration }>();
  private readonly watchers = new Set<Watcher>();
  /** Ring of recent events for watch(fromRevision); `historyFloor` is the newest revision NOT in it. */
  private history: WatchEvent[] = [];
  private historyFloor = 0;
  /**
   * Revisions start from the clock (in microseconds) so that they keep increasing across
   * restarts of the process, as clients holding a resourceVersion expect.
   */
  private rev = Date.now() * 1000;
  private closed = false;
  /** True during the initial load (see readConfigFile). */
  private loading = false;
  /** Serializes every mutation: writes through the API and rescans of changed files. */
  private chain: Promise<unknown> = Promise.resolve();
  private readonly dirWatchers = new Map<string, FSWatcher>();
  private warnedWatchLimit = false;
  private pending = new Set<string>();
  private fullRescanPending = false;
  private debounceTimer: NodeJS.Timeout | undefined;
  private firstPendingAt = 0;
  private resyncTimer: NodeJS.Timeout | undefined;

  /** Device and inode of the directory when it was opened (or last re-read after a replacement). */
  private rootId = '';
  private rootMissing: { since: string; reason: string } | undefined;
  private rootPollTimer: NodeJS.Timeout | undefined;
  private held: HeldChange | undefined;
  /** The resources the held change deletes: a confirmation applies the change only while it deletes no others. */
  private heldDeletions: ReadonlySet<string> = new Set();
  /**
   * Set when the directory is back or was replaced, until its first whole read is applied: a
   * confirmation file in it was created out of the store's sight, perhaps before the change it
   * would confirm, so it confirms nothing.
   */
  private markerOutOfSight = false;
  private walkProblem: StoreProblem | undefined;
  /** Links not followed in the last walk, one line each, for status(). */
  private skippedLinks: string[] = [];
  private readonly warnedLinks = new Set<string>();
  private readonly warnedUnreadable = new Set<string>();
  /** A confirmation file that could not be removed, by identity and mtime: it confirmed once already. */
  private ignoredMarker: string | undefined;

  constructor(options: DirectoryStoreOptions) {
    if (typeof options.dir !== 'string' || options.dir === '') throw new InvalidArgumentError('configDir must be a non-empty path');
    this.dir = path.resolve(options.dir);
    this.log = (options.logger ?? pino({ level: process.env.SEXTANT_LOG_LEVEL ?? 'info' })).child({ component: 'config', backend: 'directory', dir: this.dir });
    this.createIfMissing = options.create ?? false;
    this.debounceMs = options.debounceMs ?? 100;
    this.maxDebounceMs = options.maxDebounceMs ?? 1000;
    this.resyncIntervalMs = options.resyncIntervalMs ?? 30_000;
    this.rootPollMs = options.rootPollMs ?? 1000;
    this.historyLimit = options.historyLimit ?? 100_000;
    this.watchFiles = options.watchFiles ?? true;
    this.readConcurrency = options.readConcurrency ?? 64;
    this.limits = { ...DEFAULT_WALK_LIMITS, ...options.limits };
    for (const [k, v] of Object.entries(this.limits)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`limits.${k} must be an integer >= 1, got ${String(v)}`);
    }
    this.guard = deleteGuard(options.deleteGuard);
  }

  /** Initial load; called once by openDirectoryStore. */
  async load(): Promise<void> {
    let st;
    try {
      st = await stat(this.dir);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      if (!this.createIfMissing) throw new SourceUnavailableError(`config directory ${this.dir} does not exist: create it, or name the right one`);
      await mkdir(this.dir, { recursive: true });
      st = await stat(this.dir);
    }
    if (!st.isDirectory()) throw new SourceUnavailableError(`config directory ${this.dir} is not a directory`);
    this.rootId = fileIdentity(st);
    this.loading = true;
    try {
      await this.exclusive(() => this.rescanTree(true));
    } finally {
      this.loading = false;
    }
    this.historyFloor = this.rev;
    if (this.resyncIntervalMs > 0) {
      this.resyncTimer = setInterval(() => void this.exclusive(() => this.rescanTree(true)).catch((err: unknown) => {
        if (!(err instanceof StoreClosedError)) this.log.error({ err }, 'periodic rescan failed');
      }), this.resyncIntervalMs);
      this.resyncTimer.unref();
    }
    const errors = this.errors().length;
    this.log.info({ resources: this.resources.size, files: this.files.size, errors, revision: this.rev }, 'config directory loaded');
  }

  // ---- reads ----

  async get(kind: string, namespace: string, name: string): Promise<Resource | undefined> {
    this.checkOpen();
    checkSegments(kind, namespace, name);
    return this.resources.get(keyOf(kind, namespace, name))?.resource;
  }

  async list(kind: string, options: ListOptions = {}): Promise<Resource[]> {
    this.checkOpen();
    if (typeof kind !== 'string' || kind === '') throw new InvalidArgumentError('kind must be a non-empty string');
    const selector = toLabelSelector(options.labelSelector);
    const out: Resource[] = [];
    for (const e of this.resources.values()) {
      const r = e.resource;
      if (r.kind !== kind) continue;
      if (options.namespace !== undefined && r.metadata.namespace !== options.namespace) continue;
      if (selector !== undefined && !selector.matches(r.metadata.labels)) continue;
      out.push(r);
    }
    return out.sort(compareByNamespaceName);
  }

  async revision(): Promise<Revision> {
    this.checkOpen();
    return this.rev;
  }

  /** Files refused (with every error of their current content) and declarations not served because an earlier file declares the same resource. */
  errors(): ConfigError[] {
    const out: ConfigError[] = [];
    for (const f of this.files.values()) out.push(...f.errors);
    for (const { decl, winner } of this.shadowed.values()) {
      out.push(new ConfigError({
        file: decl.file, index: decl.index, resource: decl.key, path: 'metadata.name',
        detail: `duplicate resource: already defined in ${winner.file}:${winner.index}; this definition is not served`,
      }));
    }
    return out.sort((a, b) => byFileThenIndex({ file: a.file ?? '', index: a.index ?? 0 }, { file: b.file ?? '', index: b.index ?? 0 }));
  }

  status(): ConfigStoreStatus {
    const problems: StoreProblem[] = [];
    if (this.rootMissing !== undefined) {
      problems.push({
        code: 'root-missing', since: this.rootMissing.since,
        message: `config directory ${this.dir} ${this.rootMissing.reason}; serving the last good state (${this.resources.size} resources) until it is back`,
      });
    }
    if (this.walkProblem !== undefined) problems.push(this.walkProblem);
    if (this.held !== undefined) {
      problems.push({
        code: 'deletion-held', since: this.held.since,
        message: `a change deleting ${this.held.deletions} of ${this.held.total} resources is held; ${this.held.confirm}`,
      });
    }
    return {
      backend: 'directory',
      healthy: problems.length === 0,
      problems,
      heldChange: this.held === undefined ? null : { ...this.held, sample: [...this.held.sample] },
      resources: this.resources.size,
      errors: this.errors().length,
      warnings: this.skippedLinks.slice(0, MAX_STATUS_WARNINGS),
    };
  }

  /** Directories with a file watch (bounded by limits.maxDirectories). */
  get watchedDirectories(): number {
    return this.dirWatchers.size;
  }

  /** Where a resource is stored (absolute file path and document index), for status pages and errors. */
  originOf(kind: string, namespace: string, name: string): { file: string; index: number } | undefined {
    const e = this.resources.get(keyOf(kind, namespace, name));
    return e === undefined ? undefined : { file: e.file, index: e.index };
  }

  // ---- writes ----

  async create(resource: Resource): Promise<Resource> {
    this.checkOpen();
    const { key, resource: input } = prepareWrite(resource);
    return await this.exclusive(async () => {
      await this.checkWritable();
      const existing = this.resources.get(key);
      if (existing !== undefined) throw new AlreadyExistsError(key, existing.file);
      const file = await this.newFilePath(input);
      const stored = storedForm(input);
      const { creationTimestamp: _c, generation: _g, ...metadata } = stored.metadata;
      await this.writeAndApply(file, serializeAll([{ ...stored, metadata }], 'yaml'));
      const created = this.resources.get(key);
      if (created === undefined) throw new Error(`${key} was written to ${file} but not loaded back (see errors())`);
      return created.resource;
    });
  }

  async update(resource: Resource): Promise<Resource> {
    this.checkOpen();
    const { key, resource: input } = prepareWrite(resource);
    return await this.exclusive(async () => {
      await this.checkWritable();
      const entry = await this.current(key);
      const expected = input.metadata.resourceVersion;
      const actual = entry.resource.metadata.resourceVersion;
      if (expected !== actual) throw new ConflictError(key, expected, actual);
      if (sameContent(entry.resource, input)) return entry.resource;
      await this.rewrite(entry, input);
      const updated = this.resources.get(key);
      if (updated === undefined) throw new Error(`${key} was written to ${entry.file} but not loaded back (see errors())`);
      return updated.resource;
    });
  }

  async delete(kind: string, namespace: string, name: string, options: DeleteOptions = {}): Promise<Resource> {
    this.checkOpen();
    checkSegments(kind, namespace, name);
    const key = keyOf(kind, namespace, name);
    return await this.exclusive(async () => {
      await this.checkWritable();
      const entry = await this.current(key);
      const actual = entry.resource.metadata.resourceVersion;
      if (options.resourceVersion !== undefined && options.resourceVersion !== actual) {
        throw new ConflictError(key, options.resourceVersion, actual);
      }
      const decls = this.declarations.get(key) ?? [];
      if (decls.length > 1) {
        // Removing one definition would only serve the next one: say so instead of half-deleting.
        throw new ConflictError(key, options.resourceVersion, actual, `${key} is defined in ${decls.length} places (${decls.map((d) => `${d.file}:${d.index}`).join(', ')}); remove the duplicates by hand first`);
      }
      const before = this.rev;
      await this.rewrite(entry, null);
      if (this.resources.has(key)) throw new Error(`${key} was removed from ${entry.file} but is still loaded (see errors())`);
      return withVersion(entry.resource, this.lastDeleteRevision(key, before));
    });
  }

  /** Refuses writes while the store cannot follow its directory (so a write never recreates a moved one). */
  private async checkWritable(): Promise<void> {
    const root = await this.checkRoot();
    if (root === 'changed') await this.rescanTree(false);
    if (this.rootMissing !== undefined) {
      throw new SourceUnavailableError(`config directory ${this.dir} ${this.rootMissing.reason}; writes are refused until it is back`);
    }
    if (this.held !== undefined) {
      throw new SourceUnavailableError(`a change deleting ${this.held.deletions} of ${this.held.total} resources is held for confirmation; writes are refused until it is confirmed (${this.held.confirm}) or the files are restored`);
    }
  }

  /**
   * The entry for key, after first applying any outside edit of its file that the watcher has
   * not delivered yet, so a write never overwrites an edit it did not see.
   */
  private async current(key: string): Promise<Entry> {
    let entry = this.resources.get(key);
    if (entry !== undefined) {
      await this.rescanFiles([entry.file]);
      entry = this.resources.get(key);
    }
    if (entry === undefined) throw new NotFoundError(key);
    const refused = this.files.get(entry.file)?.errors ?? [];
    if (refused.length > 0) {
      // Rewriting the file would throw away an outside edit someone is still making.
      const actual = entry.resource.metadata.resourceVersion;
      throw new ConflictError(key, undefined, actual, `${key}: ${entry.file} has an outside edit that is not valid (${refused[0]!.toString()}); fix or revert the file first`);
    }
    return entry;
  }

  private lastDeleteRevision(key: string, after: number): number {
    for (let i = this.history.length - 1; i >= 0; i--) {
      const e = this.history[i]!;
      if (e.revision <= after) break;
      if (e.type === 'DELETED' && resourceKey(e.resource) === key) return e.revision;
    }
    return this.rev;
  }

  /** Replaces (or with null, removes) one resource in the file it lives in. */
  private async rewrite(entry: Entry, replacement: Resource | null): Promise<void> {
    const good = this.files.get(entry.file)?.good;
    if (good === undefined) throw new Error(`${entry.file} is not loaded`);
    const key = resourceKey(entry.resource);
    const clean = (r: Resource): Resource => {
      const s = storedForm(r);
      const { creationTimestamp: _c, generation: _g, ...metadata } = s.metadata;
      return { ...s, metadata };
    };
    if (replacement === null && good.docs.length === 1) {
      await unlink(entry.file);
      await this.rescanFiles([entry.file], true);
      return;
    }
    let text: string | undefined;
    if (good.format === 'yaml' && !good.hasList) {
      const current = await readFile(entry.file, 'utf8');
      text = rewriteYamlDocument(current, entry.index, entry.resource, replacement === null ? null : clean(replacement));
    }
    if (text === undefined) {
      const all: Resource[] = [];
      for (const d of good.docs) {
        if (d.key === key) {
          if (replacement !== null) all.push(clean(replacement));
        } else {
          all.push(clean(d.resource));
        }
      }
      text = serializeAll(all, good.format);
    }
    await this.writeAndApply(entry.file, text);
  }

  private async writeAndApply(file: string, text: string): Promise<void> {
    // Validate the exact text about to be written, so the file on disk is never one we would reject.
    const parsed = this.parseAndValidate(file, text);
    if (parsed.errors.length > 0) throw new Error(`refusing to write ${file}: ${parsed.errors.map(String).join('; ')}`);
    await writeFileAtomic(file, text);
    await this.rescanFiles([file], true);
  }

  /** DIR/<namespace>/<kind>-<name>.yaml, with a numeric suffix if that file exists already. */
  private async newFilePath(resource: Resource): Promise<string> {
    const base = path.join(this.dir, resource.metadata.namespace, `${resource.kind.toLowerCase()}-${resource.metadata.name}`);
    for (let n = 1; ; n++) {
      const file = n === 1 ? `${base}.yaml` : `${base}-${n}.yaml`;
      if (this.files.has(file)) continue;
      try {
        await lstat(file);
      } catch (err) {
        if (isNotFound(err)) return file;
        throw err;
      }
    }
  }

  // ---- atomic batches ----

  /**
   * ConfigStore.apply: every file the batch changes is written aside first, then all are renamed
   * into place together (writeFilesTogether), then read back in one rescan, so what is served
   * changes in one step and watchers get the batch's events together, at consecutive revisions.
   */
  async apply(ops: readonly ApplyOp[]): Promise<ApplyResult> {
    this.checkOpen();
    const batch = prepareBatch(ops);
    return await this.exclusive(async () => {
      await this.checkWritable();
      // Outside edits of the files involved apply first: the batch never overwrites an edit it has not seen.
      const involved = new Set<string>();
      for (const op of batch) {
        const e = this.resources.get(op.key);
        if (e !== undefined) involved.add(e.file);
      }
      if (involved.size > 0) await this.rescanFiles([...involved]);
      const edits = new Map<string, Map<string, Resource | null>>();
      const creates: Resource[] = [];
      const changed: boolean[] = [];
      const before = new Map<string, Entry>();
      for (const op of batch) {
        const entry = this.resources.get(op.key);
        checkIfMatch(op, entry?.resource.metadata.resourceVersion);
        if (entry !== undefined) {
          before.set(op.key, entry);
          const refused = this.files.get(entry.file)?.errors ?? [];
          if (refused.length > 0) throw new ConflictError(op.key, undefined, entry.resource.metadata.resourceVersion, `${op.key}: ${entry.file} has an outside edit that is not valid (${refused[0]!.toString()}); fix or revert the file first`);
          const decls = this.declarations.get(op.key) ?? [];
          if (decls.length > 1) throw new ConflictError(op.key, undefined, entry.resource.metadata.resourceVersion, `${op.key} is defined in ${decls.length} places (${decls.map((d) => `${d.file}:${d.index}`).join(', ')}); remove the duplicates by hand first`);
        }
        const edit = (file: string, replacement: Resource | null): void => {
          const m = edits.get(file) ?? new Map<string, Resource | null>();
          m.set(op.key, replacement);
          edits.set(file, m);
        };
        if (op.op === 'delete') {
          if (entry !== undefined) edit(entry.file, null);
          changed.push(entry !== undefined);
        } else if (entry === undefined) {
          creates.push(op.resource!);
          changed.push(true);
        } else if (sameContent(entry.resource, op.resource!)) {
          changed.push(false);
        } else {
          edit(entry.file, op.resource!);
          changed.push(true);
        }
      }
      const unchanged = (): ApplyResult => ({
        revision: this.rev,
        results: batch.map((op) => ({ op: op.op, key: op.key, resource: op.op === 'put' ? this.resources.get(op.key)?.resource : undefined, changed: false })),
      });
      if (!changed.some(Boolean)) return unchanged();
      const clean = (r: Resource): Resource => {
        const { creationTimestamp: _c, generation: _g, ...metadata } = storedForm(r).metadata;
        return { ...storedForm(r), metadata };
      };
      const writes: FileWrite[] = [];
      for (const [file, changes] of edits) {
        const good = this.files.get(file)?.good;
        if (good === undefined) throw new Error(`${file} is not loaded`);
        const docs = good.docs.flatMap((d) => {
          const c = changes.get(d.key);
          return c === undefined ? [clean(d.resource)] : c === null ? [] : [clean(c)];
        });
        if (docs.length === 0) {
          writes.push({ file, text: null });
          continue;
        }
        let text: string | undefined;
        if (changes.size === 1 && good.format === 'yaml' && !good.hasList) {
          // One document changed: the others keep their text and comments.
          const [key, replacement] = [...changes][0]!;
          const entry = before.get(key)!;
          text = rewriteYamlDocument(await readFile(file, 'utf8'), entry.index, entry.resource, replacement === null ? null : clean(replacement));
        }
        writes.push({ file, text: text ?? serializeAll(docs, good.format) });
      }
      for (const r of creates) {
        const file = await this.newFilePath(r);
        if (writes.some((w) => w.file === file)) throw new Error(`two resources of the batch would be written to ${file}`);
        writes.push({ file, text: serializeAll([clean(r)], 'yaml') });
      }
      for (const w of writes) {
        if (w.text === null) continue;
        // Validate the exact text about to be written, so the tree never holds a file we would reject.
        const parsed = this.parseAndValidate(w.file, w.text);
        if (parsed.errors.length > 0) throw new Error(`refusing to write ${w.file}: ${parsed.errors.map(String).join('; ')}`);
      }
      const from = this.rev;
      await writeFilesTogether(writes);
      await this.rescanFiles(writes.map((w) => w.file), true);
      const results = batch.map((op, i) => {
        if (!changed[i]) return { op: op.op, key: op.key, resource: op.op === 'put' ? this.resources.get(op.key)?.resource : undefined, changed: false };
        if (op.op === 'delete') {
          if (this.resources.has(op.key)) throw new Error(`${op.key} was removed from ${before.get(op.key)!.file} but is still loaded (see errors())`);
          return { op: op.op, key: op.key, resource: withVersion(before.get(op.key)!.resource, this.lastDeleteRevision(op.key, from)), changed: true };
        }
        const now = this.resources.get(op.key);
        if (now === undefined) throw new Error(`${op.key} was written but not loaded back (see errors())`);
        return { op: op.op, key: op.key, resource: now.resource, changed: true };
      });
      this.log.info({ resources: results.filter((r) => r.changed).map((r) => `${r.op} ${r.key}`), revision: this.rev }, 'applied batch');
      return { revision: this.rev, results };
    });
  }

  // ---- watch ----

  watch(fromRevision: Revision | undefined, handler: WatchHandler, options: WatchOptions = {}): ConfigWatch {
    this.checkOpen();
    if (fromRevision !== undefined && (!Number.isSafeInteger(fromRevision) || fromRevision < 0)) {
      throw new InvalidArgumentError(`fromRevision must be a non-negative integer, got ${String(fromRevision)}`);
    }
    const watcher: Watcher = { handler, buffer: [], cancelled: false };
    let resolveSynced!: (r: Revision) => void;
    let rejectSynced!: (e: Error) => void;
    const synced = new Promise<Revision>((res, rej) => {
      resolveSynced = res;
      rejectSynced = rej;
    });
    synced.catch(() => undefined); // callers that never await it must not crash the process
    const at = this.rev;
    if (fromRevision === undefined) {
      const current = [...this.resources.values()].map((e) => e.resource);
      current.sort((a, b) => (a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : compareByNamespaceName(a, b)));
      for (const r of current) watcher.buffer!.push({ type: 'ADDED', resource: r, revision: Number(r.metadata.resourceVersion) });
    } else if (fromRevision < this.historyFloor) {
      const err = new RevisionCompactedError(fromRevision, this.historyFloor);
      rejectSynced(err);
      queueMicrotask(() => options.onError?.(err));
      return { synced, cancel: () => undefined };
    } else {
      for (const e of this.history) if (e.revision > fromRevision) watcher.buffer!.push(e);
    }
    this.watchers.add(watcher);
    // Deliver on a later tick so the caller holds the handle (and can cancel) before the first event.
    setImmediate(() => {
      const buffer = watcher.buffer!;
      for (let i = 0; i < buffer.length && !watcher.cancelled; i++) this.deliver(watcher, buffer[i]!);
      watcher.buffer = null;
      resolveSynced(Math.max(at, fromRevision ?? 0));
    });
    return {
      synced,
      cancel: () => {
        watcher.cancelled = true;
        this.watchers.delete(watcher);
      },
    };
  }

  private deliver(watcher: Watcher, event: WatchEvent): void {
    if (watcher.cancelled) return;
    try {
      watcher.handler(event);
    } catch (err) {
      this.log.error({ err, resource: resourceKey(event.resource), revision: event.revision }, 'watch handler threw');
    }
  }

  private publish(event: WatchEvent): void {
    // Nobody can watch before the initial load ends, and history starts after it.
    if (this.loading) return;
    this.history.push(event);
    if (this.history.length > this.historyLimit * 1.25) {
      // Trim in chunks so pushes stay O(1) amortized.
      const drop = this.history.length - this.historyLimit;
      this.historyFloor = this.history[drop - 1]!.revision;
      this.history = this.history.slice(drop);
    }
    for (const w of this.watchers) {
      if (w.buffer !== null) w.buffer.push(event);
      else this.deliver(w, event);
    }
  }

  // ---- loading and rescanning ----


  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(() => {
      if (this.closed) throw new StoreClosedError();
      return fn();
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreClosedError();
  }

  private parseAndValidate(file: string, text: string): { docs: Declaration[]; errors: ConfigError[]; hasList: boolean } {
    const parsed = parseConfigText(file, text);
    const errors = [...parsed.errors];
    const docs: Declaration[] = [];
    const seen = new Map<string, number>();
    let hasList = false;
    for (const d of parsed.documents) {
      errors.push(...validateResource(d.resource, d.origin));
      if (d.origin.index === docs.at(-1)?.index) hasList = true;
      const key = resourceKey(d.resource);
      const prev = seen.get(key);
      if (prev !== undefined) {
        errors.push(new ConfigError({ file, index: d.origin.index, resource: key, path: 'metadata.name', detail: `duplicate resource: also defined in document ${prev} of the same file` }));
      }
      seen.set(key, d.origin.index);
      docs.push({ key, resource: d.resource, file, index: d.origin.index });
    }
    return { docs, errors, hasList };
  }

  private async readConfigFile(file: string): Promise<ReadResult> {
    // At start-up nothing else waits on the event loop, and synchronous reads of many small
    // files are several times faster than fs/promises; afterwards reads must not block.
    if (this.loading) return this.readConfigFileSync(file);
    let st;
    let buf: Buffer;
    try {
      st = await stat(file);
      if (!st.isFile()) return { kind: 'missing' };
      buf = await readFile(file);
    } catch (err) {
      return this.readFailure(file, err);
    }
    return this.readResult(file, buf, st.mtimeMs, st.size);
  }

  private readConfigFileSync(file: string): ReadResult {
    // open + fstat + read + close: one path lookup, and the size and mtime of what was read.
    let fd: number | undefined;
    try {
      fd = openSync(file, 'r');
      const st = fstatSync(fd);
      if (!st.isFile()) return { kind: 'missing' };
      const buf = Buffer.allocUnsafe(st.size);
      let off = 0;
      while (off < buf.length) {
        const n = readSync(fd, buf, off, buf.length - off, off);
        if (n === 0) break;
        off += n;
      }
      return this.readResult(file, off === buf.length ? buf : buf.subarray(0, off), st.mtimeMs, st.size);
    } catch (err) {
      return this.readFailure(file, err);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  private readFailure(file: string, err: unknown): ReadResult {
    if (isNotFound(err)) return { kind: 'missing' };
    return { kind: 'unreadable', error: new ConfigError({ file, resource: '', path: '', detail: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }) };
  }

  private readResult(file: string, buf: Buffer, mtimeMs: number, size: number): ReadResult {
    const hash = contentHash(buf);
    // Compared with the bytes last read (good or not), so that reverting a bad edit is seen.
    if (this.files.get(file)?.hash === hash) return { kind: 'unchanged', mtimeMs, size };
    return { kind: 'ok', hash, mtimeMs, size, text: buf.toString('utf8') };
  }

  // ---- the directory itself ----

  /**
   * Whether the directory is still the one being served: 'lost' while it is missing (nothing
   * may be applied), 'changed' when it is back or was replaced (re-read it whole, by content).
   */
  private async checkRoot(): Promise<RootCheck> {
    let st;
    try {
      st = await stat(this.dir);
    } catch (err) {
      this.rootLost(isNotFound(err) ? 'is missing (moved or deleted)' : `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
      return 'lost';
    }
    if (!st.isDirectory()) {
      this.rootLost('is no longer a directory');
      return 'lost';
    }
    const id = fileIdentity(st);
    const was = this.rootMissing;
    if (was !== undefined) {
      this.rootMissing = undefined;
      if (this.rootPollTimer !== undefined) clearInterval(this.rootPollTimer);
      this.rootPollTimer = undefined;
    }
    if (id === this.rootId) {
      if (was === undefined) return 'ok';
      this.log.warn({ missingSince: was.since }, 'config directory is back; reading it again');
      this.markerOutOfSight = true;
      return 'changed';
    }
    this.log.error({ missingSince: was?.since, identity: id, previousIdentity: this.rootId }, 'config directory was replaced (its device and inode changed); reading the new one, subject to the mass-deletion guard');
    this.rootId = id;
    this.unwatchAll();
    this.markerOutOfSight = true;
    return 'changed';
  }

  private rootLost(reason: string): void {
    if (this.rootMissing !== undefined) return;
    this.rootMissing = { since: new Date().toISOString(), reason };
    this.log.error({ reason, resources: this.resources.size }, 'config directory is missing; keeping the last good state (no resource is deleted) until it is back');
    this.unwatchAll();
    if (this.closed || !this.watchFiles) return;
    this.rootPollTimer = setInterval(() => {
      void this.exclusive(async () => {
        if (this.rootMissing === undefined) return;
        if ((await this.checkRoot()) !== 'lost') await this.rescanTree(false);
      }).catch((err: unknown) => {
        if (!(err instanceof StoreClosedError)) this.log.error({ err }, 'looking for the config directory failed');
      });
    }, this.rootPollMs);
    this.rootPollTimer.unref();
  }

  // ---- rescans: read, fold into the file table, bring what is served up to date ----

  /** Walks the tree, reads every config file whose size or mtime changed (all of them without `trustStat`), forgets vanished ones. */
  private async rescanTree(trustStat: boolean, forceRead?: ReadonlySet<string>): Promise<void> {
    const root = await this.checkRoot();
    if (root === 'lost') return;
    if (root === 'changed') trustStat = false;
    const visited = new Set<string>();
    const walk = await walkConfigTree(this.dir, this.limits, (d) => {
      visited.add(d);
      this.watchDir(d);
    });
    this.noteWalk(walk);
    const found = new Set(walk.files);
    let gone: string[] = [];
    if (walk.truncated === undefined) {
      // Files under a directory that could not be read keep their last state.
      const kept = walk.unreadable.map((u) => u.dir + path.sep);
      gone = [...this.files.keys()].filter((f) => !found.has(f) && !kept.some((k) => f.startsWith(k)));
      if (walk.unreadable.length === 0) this.pruneWatchers(visited);
    }
    const reads = await this.readAll(walk.files, trustStat, forceRead);
    await this.applyBatch(walk.files.map((f, i) => [f, reads[i]!]), gone);
  }

  /**
   * Re-reads the named files by content and applies them. `written`: the store itself just wrote
   * them, a deliberate change the mass-deletion guard does not hold (writes are refused while
   * anything else is held, so nothing else rides along).
   */
  private async rescanFiles(files: readonly string[], written = false): Promise<void> {
    const reads: Array<[string, ReadResult]> = [];
    for (const f of files) reads.push([f, await this.readConfigFile(f)]);
    await this.applyBatch(reads, [], written);
  }

  private async readAll(files: readonly string[], trustStat: boolean, forceRead?: ReadonlySet<string>): Promise<ReadResult[]> {
    const results = new Array<ReadResult>(files.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < files.length) {
        const i = next++;
        const file = files[i]!;
        const known = this.files.get(file);
        if (trustStat && known !== undefined && known.hash !== '' && forceRead?.has(file) !== true) {
          try {
            const st = await stat(file);
            if (st.mtimeMs === known.mtimeMs && st.size === known.size) {
              results[i] = { kind: 'unchanged', mtimeMs: st.mtimeMs, size: st.size };
              continue;
            }
          } catch {
            // The read below reports it.
          }
        }
        results[i] = await this.readConfigFile(file);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.readConcurrency, files.length) }, worker));
    return results;
  }

  /**
   * Applies one batch of reads: `gone` paths (files, or folders whose files all went) are
   * forgotten, reads are folded into the file table, then what is served is brought up to
   * date, unless the directory went away meanwhile or the mass-deletion guard holds the change.
   *
   * A confirmation file found confirms the change held by an earlier batch (one the store
   * reported), and only while that change deletes nothing more. Found with nothing held yet, in
   * the batch that first holds the change, or in the first read of a directory that was away or
   * replaced, it may predate the change, so it confirms nothing. Either way it is removed.
   */
  private async applyBatch(reads: ReadonlyArray<[string, ReadResult]>, gone: readonly string[], written = false): Promise<void> {
    const marker = path.join(this.dir, CONFIRM_DELETE_MARKER);
    const markerId = await stat(marker).then((st) => `${fileIdentity(st)}:${st.mtimeMs}`, () => undefined);
    if (markerId === undefined) this.ignoredMarker = undefined;
    const markerFound = markerId !== undefined && markerId !== this.ignoredMarker;
    // Checked after the reads: a directory moved away while it was read must not apply as deletions.
    const root = await this.checkRoot();
    if (root === 'lost') return;
    if (root === 'changed') {
      await this.rescanTree(false);
      return;
    }
    const outOfSight = this.markerOutOfSight;
    this.markerOutOfSight = false;
    const heldBefore = this.held !== undefined;
    const confirm = markerFound && heldBefore && !outOfSight ? this.heldDeletions : undefined;
    for (const g of gone) {
      this.forgetFile(g);
      const prefix = g + path.sep;
      for (const f of [...this.files.keys()]) if (f.startsWith(prefix)) this.forgetFile(f);
    }
    for (const [file, read] of reads) this.foldRead(file, read);
    const outcome = this.commit(confirm, written);
    if (!markerFound) return;
    try {
      await unlink(marker);
    } catch (err) {
      // A confirmation that cannot be removed (a read-only volume) must not confirm every later deletion.
      if (!isNotFound(err)) {
        this.ignoredMarker = markerId;
        this.log.error({ marker, code: (err as NodeJS.ErrnoException).code }, 'cannot remove the confirmation file; it confirms nothing more until it is changed or removed');
      }
    }
    if (outcome === 'confirmed') return;
    const again = outcome === 'held' ? { held: this.held?.deletions } : {};
    if (outOfSight) {
      this.log.warn({ marker, ...again }, 'confirmation file found in a directory that was away or replaced; it may predate the change, so it confirms nothing; removed it (create it again once the change is reported held)');
    } else if (outcome === 'held' && heldBefore) {
      this.log.warn({ marker, ...again }, 'confirmation file found, but the held change now deletes more than when it was reported; it confirms nothing; removed it (create it again to apply the change as it is now)');
    } else if (outcome === 'held') {
      this.log.warn({ marker, ...again }, 'confirmation file found with a change not held before; it may predate the change, so it confirms nothing; removed it (create it again now that the change is held)');
    } else {
      this.log.warn({ marker }, 'confirmation file found but no change is held; removed it (create it again after a change is held)');
    }
  }

  private foldRead(file: string, read: ReadResult): void {
    switch (read.kind) {
      case 'missing':
        this.forgetFile(file);
        return;
      case 'unchanged': {
        const known = this.files.get(file);
        if (known !== undefined) {
          known.mtimeMs = read.mtimeMs;
          known.size = read.size;
        }
        return;
      }
      case 'unreadable': {
        const state = this.fileState(file);
        const first = state.errors[0]?.toString() !== read.error.toString();
        Object.assign(state, { hash: '', mtimeMs: 0, size: 0, errors: [read.error] });
        if (first) this.logRefused(file, state);
        return;
      }
      case 'ok': {
        const state = this.fileState(file);
        Object.assign(state, { hash: read.hash, mtimeMs: read.mtimeMs, size: read.size });
        if (state.good?.hash === read.hash) {
          // Back to its last good bytes (a bad edit reverted): nothing to apply, the error is gone.
          if (state.errors.length > 0) this.log.info({ file }, 'config file restored to its last good content');
          state.errors = [];
          return;
        }
        const parsed = this.parseAndValidate(file, read.text);
        if (parsed.errors.length > 0) {
          state.errors = parsed.errors;
          this.logRefused(file, state);
          return;
        }
        if (state.good !== undefined) this.removeDeclarations(file, state.good.docs);
        state.good = { hash: read.hash, docs: parsed.docs, format: /\.json$/i.test(file) ? 'json' : 'yaml', hasList: parsed.hasList };
        this.addDeclarations(parsed.docs);
        if (state.errors.length > 0) this.log.info({ file, resources: parsed.docs.length }, 'config file accepted again');
        state.errors = [];
        return;
      }
    }
  }

  private fileState(file: string): FileState {
    let state = this.files.get(file);
    if (state === undefined) {
      state = { hash: '', mtimeMs: 0, size: 0, good: undefined, errors: [] };
      this.files.set(file, state);
    }
    return state;
  }

  private logRefused(file: string, state: FileState): void {
    const errors = state.errors.map(String);
    if (state.good !== undefined) this.log.error({ file, errors, keptResources: state.good.docs.length }, 'config file rejected; keeping its last good state');
    else this.log.error({ file, errors }, 'config file rejected');
  }

  private forgetFile(file: string): void {
    const state = this.files.get(file);
    if (state === undefined) return;
    this.files.delete(file);
    if (state.good !== undefined) this.removeDeclarations(file, state.good.docs);
    this.log.info({ file, resources: state.good?.docs.length ?? 0 }, 'config file removed');
  }

  private addDeclarations(docs: readonly Declaration[]): void {
    for (const d of docs) {
      const all = this.declarations.get(d.key);
      if (all === undefined) this.declarations.set(d.key, [d]);
      else {
        all.push(d);
        all.sort(byFileThenIndex);
      }
      this.dirty.add(d.key);
    }
  }

  private removeDeclarations(file: string, docs: readonly Declaration[]): void {
    for (const d of docs) {
      const all = this.declarations.get(d.key);
      if (all !== undefined) {
        const rest = all.filter((x) => x.file !== file);
        if (rest.length === 0) this.declarations.delete(d.key);
        else this.declarations.set(d.key, rest);
      }
      this.dirty.add(d.key);
    }
  }

  /** Brings duplicate reports for `keys` up to date, logging each newly shadowed declaration once. */
  private updateShadowed(keys: readonly string[]): void {
    const touched = new Set(keys);
    const before = new Set<string>();
    const next = new Map<string, { decl: Declaration; winner: Declaration }>();
    for (const [id, s] of this.shadowed) {
      if (touched.has(s.decl.key)) before.add(id);
      else next.set(id, s);
    }
    for (const key of keys) {
      const all = this.declarations.get(key);
      if (all === undefined || all.length < 2) continue;
      const winner = all[0]!;
      for (const decl of all.slice(1)) {
        const id = `${decl.file}:${decl.index}`;
        next.set(id, { decl, winner });
        if (!before.has(id)) {
          this.log.warn({ resource: key, file: decl.file, index: decl.index, servedFrom: `${winner.file}:${winner.index}` }, 'duplicate resource: an earlier file (in path order) defines it; this definition is not served');
        }
      }
    }
    this.shadowed = next;
  }

  /**
   * Brings what is served up to date with the declarations of the dirty keys, publishing one
   * event per change, unless the mass-deletion guard holds the change (then nothing changes).
   */
  /**
   * `confirm`: the deletions a confirmation file covers (those of the change held before it was
   * found); the change applies despite the guard when it deletes none other.
   */
  private commit(confirm: ReadonlySet<string> | undefined, written = false): 'none' | 'applied' | 'held' | 'confirmed' {
    if (this.dirty.size === 0) return 'none';
    const keys = [...this.dirty].sort();
    this.updateShadowed(keys);
    const ops: Op[] = [];
    const deleted: string[] = [];
    let additions = 0;
    let modifications = 0;
    for (const key of keys) {
      const decl = this.declarations.get(key)?.[0];
      const served = this.resources.get(key);
      if (decl === undefined) {
        if (served !== undefined) {
          ops.push({ type: 'delete', key });
          deleted.push(key);
        }
      } else if (served === undefined) {
        ops.push({ type: 'add', key, decl });
        additions++;
      } else if (!sameContent(served.resource, decl.resource)) {
        ops.push({ type: 'modify', key, decl });
        modifications++;
      } else if (served.file !== decl.file || served.index !== decl.index) {
        ops.push({ type: 'move', key, decl });
      }
    }
    const verdict = judgeDeletion(this.guard, deleted.length, this.resources.size);
    const confirmed = confirm !== undefined && deleted.every((k) => confirm.has(k));
    if (verdict.hold && !confirmed && !written) {
      const marker = path.join(this.dir, CONFIRM_DELETE_MARKER);
      const before = this.held;
      this.held = {
        since: before?.since ?? new Date().toISOString(),
        deletions: deleted.length, total: this.resources.size, additions, modifications,
        sample: sampleKeys(deleted),
        confirm: `to apply it, create ${marker} (touch it); to withdraw it, restore the files`,
      };
      this.heldDeletions = new Set(deleted);
      if (before === undefined || before.deletions !== deleted.length || before.additions !== additions || before.modifications !== modifications) {
        this.log.error({ deletions: deleted.length, total: this.resources.size, additions, modifications, sample: this.held.sample, confirm: `touch ${marker}` }, 'mass deletion held: the change would delete most of the mesh; serving the last good state until it is confirmed');
      }
      return 'held';
    }
    const now = new Date().toISOString();
    for (const op of ops) {
      const served = this.resources.get(op.key);
      if (op.type === 'delete') {
        this.resources.delete(op.key);
        const rev = ++this.rev;
        this.publish({ type: 'DELETED', resource: deepFreeze(withVersion(served!.resource, rev)), revision: rev });
      } else if (op.type === 'move') {
        this.resources.set(op.key, { resource: served!.resource, file: op.decl.file, index: op.decl.index });
      } else {
        const d = op.decl.resource;
        const { resourceVersion: _rv, creationTimestamp: _c, generation: _g, ...meta } = d.metadata;
        const rev = ++this.rev;
        const generation = served === undefined ? 1 : (served.resource.metadata.generation ?? 1) + (sameSpec(served.resource, d) ? 0 : 1);
        const resource = deepFreeze<Resource>({
          apiVersion: d.apiVersion,
          kind: d.kind,
          metadata: { ...meta, resourceVersion: String(rev), creationTimestamp: served?.resource.metadata.creationTimestamp ?? now, generation },
          spec: d.spec,
          ...(d.status !== undefined ? { status: d.status } : {}),
        });
        this.resources.set(op.key, { resource, file: op.decl.file, index: op.decl.index });
        this.publish({ type: served === undefined ? 'ADDED' : 'MODIFIED', resource, revision: rev });
      }
    }
    this.dirty.clear();
    const wasHeld = this.held;
    this.held = undefined;
    this.heldDeletions = new Set();
    if (verdict.hold && confirmed) {
      this.log.warn({ deletions: deleted.length, total: verdict.total, additions, modifications, sample: sampleKeys(deleted) }, 'mass deletion confirmed; applied');
      return 'confirmed';
    }
    if (wasHeld !== undefined) this.log.info({ deletions: deleted.length, additions, modifications, heldSince: wasHeld.since }, 'held change withdrawn (the files were restored); applied what remains');
    return 'applied';
  }

  /** Records links the walk did not follow (warning once per link) and whether it was cut short. */
  private noteWalk(walk: WalkResult): void {
    const lines: string[] = [];
    const present = new Set<string>();
    for (const s of walk.skipped) {
      present.add(s.path);
      lines.push(s.reason === 'loop'
        ? `${s.path}: symbolic link loop${s.target !== '' ? ` (leads back to ${s.target})` : ''}; not followed`
        : `${s.path}: leads to ${s.target}, which is read already; not followed`);
      if (this.warnedLinks.has(s.path)) continue;
      if (this.warnedLinks.size >= MAX_WARNED_LINKS) this.warnedLinks.clear();
      this.warnedLinks.add(s.path);
      this.log.warn({ link: s.path, ...(s.target !== '' ? { target: s.target } : {}), reason: s.reason },
        s.reason === 'loop' ? 'symbolic link loop in the config directory; not followed' : 'symbolic link to a directory read already; not followed');
    }
    this.skippedLinks = lines;
    const complete = walk.truncated === undefined;
    if (complete) for (const l of this.warnedLinks) if (!present.has(l)) this.warnedLinks.delete(l);
    for (const u of walk.unreadable) {
      if (u.dir === this.dir || this.warnedUnreadable.has(u.dir)) continue;
      if (this.warnedUnreadable.size >= MAX_WARNED_LINKS) this.warnedUnreadable.clear();
      this.warnedUnreadable.add(u.dir);
      this.log.warn({ dir: u.dir, code: u.code }, 'cannot read a config directory; its files keep their last state');
    }
    if (walk.truncated !== undefined) {
      const { maxDirectories, maxFiles, maxDepth } = this.limits;
      const message = `config directory has ${walk.truncated}: the rest is not read, and no file is removed until the tree fits (limits: ${maxDirectories} directories, ${maxFiles} files, ${maxDepth} levels)`;
      if (this.walkProblem?.message !== message) {
        this.log.error({ limit: walk.truncated, maxDirectories, maxFiles, maxDepth }, 'config directory exceeds the walk limits; the rest of the tree is not read and nothing is removed');
      }
      this.walkProblem = { code: 'walk-limit', since: this.walkProblem?.since ?? new Date().toISOString(), message };
    } else if (this.walkProblem !== undefined) {
      this.walkProblem = undefined;
      this.log.info('config directory fits the walk limits again');
    }
  }

  // ---- watching the tree ----

  /**
   * Watches one directory (not recursively: Node's recursive watch on Linux misses deletions
   * and puts an inotify watch on every file). Each directory the walk enters gets one.
   */
  private watchDir(abs: string): void {
    if (!this.watchFiles || this.closed || this.dirWatchers.has(abs)) return;
    if (this.dirWatchers.size >= this.limits.maxDirectories) {
      if (!this.warnedWatchLimit) this.log.warn({ limit: this.limits.maxDirectories, dir: abs }, 'too many directories to watch; the rest are picked up by the periodic rescan');
      this.warnedWatchLimit = true;
      return;
    }
    try {
      const w = watchFs(abs, { persistent: false }, (_event, filename) => this.onFsEvent(abs, filename));
      w.on('error', (err) => {
        // The directory went away (or the watch failed): the parent's watcher reports the removal.
        if (!isNotFound(err)) this.log.warn({ err, dir: abs }, 'watching a config directory failed; relying on the periodic rescan');
        this.unwatchDir(abs);
      });
      this.dirWatchers.set(abs, w);
    } catch (err) {
      if (!isNotFound(err)) this.log.warn({ err, dir: abs }, 'cannot watch a config directory; relying on the periodic rescan');
    }
  }

  private unwatchDir(abs: string): void {
    const prefix = abs + path.sep;
    for (const [d, w] of this.dirWatchers) {
      if (d === abs || d.startsWith(prefix)) {
        w.close();
        this.dirWatchers.delete(d);
      }
    }
  }

  private unwatchAll(): void {
    for (const w of this.dirWatchers.values()) w.close();
    this.dirWatchers.clear();
    this.warnedWatchLimit = false;
  }

  /** After a complete walk: stops watching directories no longer part of the tree (a removed link, a folder moved away). */
  private pruneWatchers(visited: ReadonlySet<string>): void {
    for (const [d, w] of this.dirWatchers) {
      if (visited.has(d)) continue;
      w.close();
      this.dirWatchers.delete(d);
    }
  }

  private onFsEvent(dir: string, filename: string | Buffer | null): void {
    if (filename === null) {
      this.fullRescanPending = true;
    } else {
      const name = filename.toString();
      // Kubernetes' atomic writer swaps a hidden '..data' link; a full stat rescan follows it.
      if (name.startsWith('..')) this.fullRescanPending = true;
      else if (this.pending.size >= MAX_PENDING_PATHS) this.fullRescanPending = true;
      else this.pending.add(path.relative(this.dir, path.join(dir, name)));
    }
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.closed) return;
    const now = Date.now();
    if (this.debounceTimer === undefined) this.firstPendingAt = now;
    else clearTimeout(this.debounceTimer);
    const wait = Math.max(0, Math.min(this.debounceMs, this.firstPendingAt + this.maxDebounceMs - now));
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      void this.exclusive(() => this.flush()).catch((err: unknown) => {
        if (!(err instanceof StoreClosedError)) this.log.error({ err }, 'rescan of changed config files failed');
      });
    }, wait);
  }

  private async flush(): Promise<void> {
    const paths = [...this.pending].sort();
    this.pending.clear();
    const full = this.fullRescanPending;
    this.fullRescanPending = false;
    const root = await this.checkRoot();
    if (root === 'lost') return;
    // Paths with a hidden segment are swap and temp files (and the confirmation file, which applyBatch looks for).
    const evented = paths.filter((rel) => !rel.split(path.sep).some((seg) => seg.startsWith('.'))).map((rel) => path.join(this.dir, rel));
    const forceRead = new Set(evented);
    if (full || root === 'changed') {
      await this.rescanTree(root === 'ok', forceRead);
      return;
    }
    const reads: Array<[string, ReadResult]> = [];
    const gone: string[] = [];
    for (const abs of evented) {
      let st;
      try {
        st = await lstat(abs);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        // Gone: a file, or a whole directory renamed or removed.
        gone.push(abs);
        this.unwatchDir(abs);
        continue;
      }
      // A new or changed directory or link: walk the whole tree, so loops and repeats are seen from the root.
      if (st.isDirectory() || st.isSymbolicLink()) {
        await this.rescanTree(true, forceRead);
        return;
      }
      if (isConfigFileName(path.basename(abs))) reads.push([abs, await this.readConfigFile(abs)]);
    }
    await this.applyBatch(reads, gone);
  }

  /** Applies pending outside edits now instead of after the debounce (tests, CLI). */
  async sync(): Promise<void> {
    if (this.debounceTimer !== undefined) {
      clearTimeout(this.debounceTimer);
      this.debounceTimer = undefined;
    }
    this.pending.clear();
    this.fullRescanPending = false;
    // Compare content, not stat: two writes within one mtime tick can have the same size.
    await this.exclusive(() => this.rescanTree(false));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unwatchAll();
    if (this.debounceTimer !== undefined) clearTimeout(this.debounceTimer);
    if (this.resyncTimer !== undefined) clearInterval(this.resyncTimer);
    if (this.rootPollTimer !== undefined) clearInterval(this.rootPollTimer);
    for (const w of this.watchers) w.cancelled = true;
    this.watchers.clear();
    await this.chain;
  }
}
