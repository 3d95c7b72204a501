// The directory ConfigStore: a tree of YAML/JSON files is the source of truth, held in memory
// and kept current by watching the tree. A file applies whole or not at all.
import { closeSync, fstatSync, openSync, readSync, watch as watchFs, type FSWatcher } from 'node:fs';
import { lstat, mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { ConfigError, parseDocuments, resourceKey, validateResource, type LoadResult, type Resource } from '../../api/index.ts';
import {
  AlreadyExistsError,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  RevisionCompactedError,
  StoreClosedError,
} from '../errors.ts';
import { checkSegments, compareByNamespaceName, deepFreeze, keyOf, prepareWrite, sameContent, sameSpec, storedForm, withVersion } from '../object.ts';
import { toLabelSelector } from '../selector.ts';
import type { ConfigStore, ConfigWatch, DeleteOptions, ListOptions, Revision, WatchEvent, WatchHandler, WatchOptions } from '../store.ts';
import { contentHash, isConfigFileName, rewriteYamlDocument, serializeAll, writeFileAtomic } from './persist.ts';

export interface DirectoryStoreOptions {
  /** The config directory (read recursively; hidden entries are skipped). Created if missing. */
  dir: string;
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
  /** Events kept for watch(fromRevision). Default 100,000; older revisions get RevisionCompactedError. */
  historyLimit?: number;
  /** Watch the tree for outside edits. Default true. */
  watchFiles?: boolean;
  /** Files read in parallel at load. Default 64. */
  readConcurrency?: number;
}

interface FileRecord {
  /** Keys of the file's resources, in document order. */
  keys: string[];
  hash: string;
  mtimeMs: number;
  size: number;
  format: 'yaml' | 'json';
  /** Whether any resource came from a `kind: List` (such files are rewritten whole). */
  hasList: boolean;
}

interface Entry {
  /** Frozen, with resourceVersion set. */
  resource: Resource;
  file: string;
  /** Document index in the file. */
  index: number;
}

interface FailedFile {
  errors: ConfigError[];
  hash: string;
  mtimeMs: number;
  size: number;
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

const MAX_PENDING_PATHS = 10_000;
const MAX_WATCHED_DIRS = 10_000;

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
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
  private readonly debounceMs: number;
  private readonly maxDebounceMs: number;
  private readonly resyncIntervalMs: number;
  private readonly historyLimit: number;
  private readonly watchFiles: boolean;
  private readonly readConcurrency: number;

  private readonly resources = new Map<string, Entry>();
  private readonly files = new Map<string, FileRecord>();
  private readonly failed = new Map<string, FailedFile>();
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

  constructor(options: DirectoryStoreOptions) {
    if (typeof options.dir !== 'string' || options.dir === '') throw new InvalidArgumentError('configDir must be a non-empty path');
    this.dir = path.resolve(options.dir);
    this.log = (options.logger ?? pino({ level: process.env.SEXTANT_LOG_LEVEL ?? 'info' })).child({ component: 'config', backend: 'directory', dir: this.dir });
    this.debounceMs = options.debounceMs ?? 100;
    this.maxDebounceMs = options.maxDebounceMs ?? 1000;
    this.resyncIntervalMs = options.resyncIntervalMs ?? 30_000;
    this.historyLimit = options.historyLimit ?? 100_000;
    this.watchFiles = options.watchFiles ?? true;
    this.readConcurrency = options.readConcurrency ?? 64;
  }

  /** Initial load; called once by openDirectoryStore. */
  async load(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    // Watch before reading, so an edit made during the load is not missed.
    this.loading = true;
    try {
      await this.exclusive(() => this.rescanTree(this.dir));
    } finally {
      this.loading = false;
    }
    this.historyFloor = this.rev;
    if (this.resyncIntervalMs > 0) {
      this.resyncTimer = setInterval(() => void this.exclusive(() => this.rescanTree(this.dir)).catch((err: unknown) => this.log.error({ err }, 'periodic rescan failed')), this.resyncIntervalMs);
      this.resyncTimer.unref();
    }
    this.log.info({ resources: this.resources.size, files: this.files.size, invalidFiles: this.failed.size, revision: this.rev }, 'config directory loaded');
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

  errors(): ConfigError[] {
    const out: ConfigError[] = [];
    for (const f of [...this.failed.keys()].sort()) out.push(...this.failed.get(f)!.errors);
    return out;
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
      const entry = await this.current(key);
      const actual = entry.resource.metadata.resourceVersion;
      if (options.resourceVersion !== undefined && options.resourceVersion !== actual) {
        throw new ConflictError(key, options.resourceVersion, actual);
      }
      const before = this.rev;
      await this.rewrite(entry, null);
      if (this.resources.has(key)) throw new Error(`${key} was removed from ${entry.file} but is still loaded (see errors())`);
      return withVersion(entry.resource, this.lastDeleteRevision(key, before));
    });
  }

  /**
   * The entry for key, after first applying any outside edit of its file that the watcher has
   * not delivered yet, so a write never overwrites an edit it did not see.
   */
  private async current(key: string): Promise<Entry> {
    let entry = this.resources.get(key);
    if (entry !== undefined) {
      await this.rescanFile(entry.file);
      entry = this.resources.get(key);
    }
    if (entry === undefined) throw new NotFoundError(key);
    const refused = this.failed.get(entry.file);
    if (refused !== undefined) {
      // Rewriting the file would throw away an outside edit someone is still making.
      const actual = entry.resource.metadata.resourceVersion;
      throw new ConflictError(key, undefined, actual, `${key}: ${entry.file} has an outside edit that is not valid (${refused.errors[0]?.toString() ?? 'unreadable'}); fix or revert the file first`);
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
    const record = this.files.get(entry.file)!;
    const key = resourceKey(entry.resource);
    const clean = (r: Resource): Resource => {
      const s = storedForm(r);
      const { creationTimestamp: _c, generation: _g, ...metadata } = s.metadata;
      return { ...s, metadata };
    };
    if (replacement === null && record.keys.length === 1) {
      await unlink(entry.file);
      await this.rescanFile(entry.file);
      return;
    }
    let text: string | undefined;
    if (record.format === 'yaml' && !record.hasList) {
      const current = await readFile(entry.file, 'utf8');
      text = rewriteYamlDocument(current, entry.index, entry.resource, replacement === null ? null : clean(replacement));
    }
    if (text === undefined) {
      const all: Resource[] = [];
      for (const k of record.keys) {
        if (k === key) {
          if (replacement !== null) all.push(clean(replacement));
        } else {
          all.push(clean(this.resources.get(k)!.resource));
        }
      }
      text = serializeAll(all, record.format);
    }
    await this.writeAndApply(entry.file, text);
  }

  private async writeAndApply(file: string, text: string): Promise<void> {
    // Validate the exact text about to be written, so the file on disk is never one we would reject.
    const parsed = this.parseAndValidate(file, text);
    if (parsed.errors.length > 0) throw new Error(`refusing to write ${file}: ${parsed.errors.map(String).join('; ')}`);
    await writeFileAtomic(file, text);
    await this.rescanFile(file);
  }

  /** DIR/<namespace>/<kind>-<name>.yaml, with a numeric suffix if that file exists already. */
  private async newFilePath(resource: Resource): Promise<string> {
    const base = path.join(this.dir, resource.metadata.namespace, `${resource.kind.toLowerCase()}-${resource.metadata.name}`);
    for (let n = 1; ; n++) {
      const file = n === 1 ? `${base}.yaml` : `${base}-${n}.yaml`;
      if (this.files.has(file) || this.failed.has(file)) continue;
      try {
        await lstat(file);
      } catch (err) {
        if (isNotFound(err)) return file;
        throw err;
      }
    }
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

  private parseAndValidate(file: string, text: string): { docs: Array<{ resource: Resource; index: number }>; errors: ConfigError[]; hasList: boolean } {
    const parsed = parseConfigText(file, text);
    const errors = [...parsed.errors];
    const docs: Array<{ resource: Resource; index: number }> = [];
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
      docs.push({ resource: d.resource, index: d.origin.index });
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
    const known = this.files.get(file) ?? this.failed.get(file);
    const hash = contentHash(buf);
    if (known !== undefined && known.hash === hash) return { kind: 'unchanged', mtimeMs, size };
    return { kind: 'ok', hash, mtimeMs, size, text: buf.toString('utf8') };
  }

  /** Re-reads one file and applies its change whole, or records why it was refused. */
  private async rescanFile(file: string): Promise<void> {
    this.applyRead(file, await this.readConfigFile(file));
  }

  private applyRead(file: string, read: ReadResult): void {
    switch (read.kind) {
      case 'missing':
        this.removeFile(file);
        return;
      case 'unchanged': {
        const rec = this.files.get(file) ?? this.failed.get(file);
        if (rec !== undefined) {
          rec.mtimeMs = read.mtimeMs;
          rec.size = read.size;
        }
        return;
      }
      case 'unreadable':
        this.refuse(file, [read.error], '', 0, 0);
        return;
      case 'ok': {
        const parsed = this.parseAndValidate(file, read.text);
        if (parsed.errors.length === 0) {
          // Another file already defines one of these resources: refuse this file, naming both.
          for (const d of parsed.docs) {
            const key = resourceKey(d.resource);
            const other = this.resources.get(key);
            if (other !== undefined && other.file !== file) {
              parsed.errors.push(new ConfigError({ file, index: d.index, resource: key, path: 'metadata.name', detail: `duplicate resource: already defined in ${other.file}:${other.index}` }));
            }
          }
        }
        if (parsed.errors.length > 0) {
          this.refuse(file, parsed.errors, read.hash, read.mtimeMs, read.size);
          return;
        }
        this.applyFile(file, parsed.docs, parsed.hasList, read);
        return;
      }
    }
  }

  private refuse(file: string, errors: ConfigError[], hash: string, mtimeMs: number, size: number): void {
    this.failed.set(file, { errors, hash, mtimeMs, size });
    const applied = this.files.get(file);
    if (applied !== undefined) {
      // The last good state stays; remember the bad content's hash so it is not re-parsed.
      this.log.error({ file, errors: errors.map(String), keptResources: applied.keys.length }, 'config file rejected; keeping its last good state');
    } else {
      this.log.error({ file, errors: errors.map(String) }, 'config file rejected');
    }
  }

  private applyFile(file: string, docs: Array<{ resource: Resource; index: number }>, hasList: boolean, read: { hash: string; mtimeMs: number; size: number }): void {
    const old = this.files.get(file);
    const newKeys = docs.map((d) => resourceKey(d.resource));
    const newKeySet = new Set(newKeys);
    let released = false;
    if (old !== undefined) {
      for (const key of old.keys) {
        if (newKeySet.has(key)) continue;
        const entry = this.resources.get(key)!;
        this.resources.delete(key);
        const rev = ++this.rev;
        this.publish({ type: 'DELETED', resource: deepFreeze(withVersion(entry.resource, rev)), revision: rev });
        released = true;
      }
    }
    const now = new Date().toISOString();
    for (const d of docs) {
      const key = resourceKey(d.resource);
      const existing = this.resources.get(key);
      if (existing !== undefined && sameContent(existing.resource, d.resource)) {
        existing.index = d.index;
        continue;
      }
      const { resourceVersion: _rv, creationTimestamp: _c, generation: _g, ...meta } = d.resource.metadata;
      const rev = ++this.rev;
      const generation = existing === undefined ? 1 : (existing.resource.metadata.generation ?? 1) + (sameSpec(existing.resource, d.resource) ? 0 : 1);
      const resource = deepFreeze<Resource>({
        apiVersion: d.resource.apiVersion,
        kind: d.resource.kind,
        metadata: { ...meta, resourceVersion: String(rev), creationTimestamp: existing?.resource.metadata.creationTimestamp ?? now, generation },
        spec: d.resource.spec,
      });
      this.resources.set(key, { resource, file, index: d.index });
      this.publish({ type: existing === undefined ? 'ADDED' : 'MODIFIED', resource, revision: rev });
    }
    const format = /\.json$/i.test(file) ? 'json' : 'yaml';
    this.files.set(file, { keys: newKeys, hash: read.hash, mtimeMs: read.mtimeMs, size: read.size, format, hasList });
    if (this.failed.delete(file)) this.log.info({ file, resources: newKeys.length }, 'config file accepted again');
    if (released) this.retryRefused();
  }

  private removeFile(file: string): void {
    const old = this.files.get(file);
    this.failed.delete(file);
    if (old === undefined) return;
    this.files.delete(file);
    for (const key of old.keys) {
      const entry = this.resources.get(key)!;
      this.resources.delete(key);
      const rev = ++this.rev;
      this.publish({ type: 'DELETED', resource: deepFreeze(withVersion(entry.resource, rev)), revision: rev });
    }
    this.log.info({ file, resources: old.keys.length }, 'config file removed');
    this.retryRefused();
  }

  /**
   * Files refused only because another file held the same resource may apply now that the
   * resource is gone; they are re-read on the next rescan (their content hash is forgotten).
   */
  private retryRefused(): void {
    for (const [file, f] of this.failed) {
      if (f.errors.some((e) => e.detail.startsWith('duplicate resource: already defined in'))) {
        f.hash = '';
        this.pending.add(path.relative(this.dir, file));
        this.scheduleFlush();
      }
    }
  }

  /** Walks `root` and rescans every config file whose size or mtime changed; removes vanished ones. */
  private async rescanTree(root: string, trustStat = true): Promise<void> {
    const found = new Set<string>();
    await this.walk(root, found);
    const prefix = root.endsWith(path.sep) ? root : root + path.sep;
    const under = (f: string): boolean => f === root || f.startsWith(prefix);
    for (const f of [...this.files.keys(), ...this.failed.keys()]) {
      if (under(f) && !found.has(f)) this.removeFile(f);
    }
    const sorted = [...found].sort();
    // Read in parallel (bounded), apply in sorted order so duplicates resolve the same way every time.
    const results = new Array<ReadResult | undefined>(sorted.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < sorted.length) {
        const i = next++;
        const file = sorted[i]!;
        const known = this.files.get(file) ?? this.failed.get(file);
        if (trustStat && known !== undefined && known.hash !== '') {
          try {
            const st = await stat(file);
            if (st.mtimeMs === known.mtimeMs && st.size === known.size) {
              results[i] = { kind: 'unchanged', mtimeMs: st.mtimeMs, size: st.size };
              continue;
            }
          } catch {
            // Read below reports it.
          }
        }
        results[i] = await this.readConfigFile(file);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.readConcurrency, sorted.length) }, worker));
    for (let i = 0; i < sorted.length; i++) this.applyRead(sorted[i]!, results[i]!);
  }

  private async walk(dir: string, out: Set<string>): Promise<void> {
    // Watch before reading, so an edit made while the directory is read is not missed.
    this.watchDir(dir);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isNotFound(err)) return;
      if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw err;
    }
    const subdirs: string[] = [];
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) subdirs.push(p);
      else if (e.isSymbolicLink()) {
        // Kubernetes ConfigMap volumes are symlinks into a hidden, atomically swapped directory.
        try {
          const st = await stat(p);
          if (st.isDirectory()) subdirs.push(p);
          else if (st.isFile() && isConfigFileName(e.name)) out.add(p);
        } catch {
          // Dangling link: nothing to read.
        }
      } else if (e.isFile() && isConfigFileName(e.name)) out.add(p);
    }
    await Promise.all(subdirs.map((d) => this.walk(d, out)));
  }

  // ---- watching the tree ----

  /**
   * Watches one directory (not recursively: Node's recursive watch on Linux misses deletions
   * and puts an inotify watch on every file). Each directory the walk visits gets one.
   */
  private watchDir(abs: string): void {
    if (!this.watchFiles || this.closed || this.dirWatchers.has(abs)) return;
    if (this.dirWatchers.size >= MAX_WATCHED_DIRS) {
      if (!this.warnedWatchLimit) this.log.warn({ limit: MAX_WATCHED_DIRS, dir: abs }, 'too many directories to watch; the rest are picked up by the periodic rescan');
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
    if (this.fullRescanPending) {
      this.fullRescanPending = false;
      await this.rescanTree(this.dir);
      return;
    }
    for (const rel of paths) {
      const abs = path.join(this.dir, rel);
      const base = path.basename(abs);
      if (rel.split(path.sep).some((seg) => seg.startsWith('.'))) continue; // hidden: swap and temp files
      let st;
      try {
        st = await lstat(abs);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        // Gone: a file, or a whole directory renamed or removed.
        if (this.files.has(abs) || this.failed.has(abs)) this.removeFile(abs);
        const prefix = abs + path.sep;
        for (const f of [...this.files.keys(), ...this.failed.keys()]) if (f.startsWith(prefix)) this.removeFile(f);
        this.unwatchDir(abs);
        continue;
      }
      if (st.isDirectory()) await this.rescanTree(abs);
      else if (st.isSymbolicLink()) await this.rescanTree(this.dir);
      else if (isConfigFileName(base)) await this.rescanFile(abs);
    }
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
    await this.exclusive(() => this.rescanTree(this.dir, false));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unwatchDir(this.dir);
    if (this.debounceTimer !== undefined) clearTimeout(this.debounceTimer);
    if (this.resyncTimer !== undefined) clearInterval(this.resyncTimer);
    for (const w of this.watchers) w.cancelled = true;
    this.watchers.clear();
    await this.chain;
  }
}
