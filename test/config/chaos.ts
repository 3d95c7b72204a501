// Config-directory chaos: seeded random edits of a watched config tree (writes, partial writes,
// reverts, renames, deletes, files moved away and back, symbolic links and link loops,
// duplicates, sub-folders and the directory itself moved away and back), and an independent,
// simple model of what the store must serve afterwards: per file its last good content, the
// first definition in path order for each resource, and the mass-deletion guard's hold.
import {
  cpSync, existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { toYaml, type Resource } from '../../src/api/index.ts';
import { CONFIRM_DELETE_MARKER, judgeDeletion, type DeleteGuard } from '../../src/config/index.ts';

/** A small, seedable generator (mulberry32): the same seed gives the same steps. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed to use: SEXTANT_CHAOS_SEED to replay one, else a fresh one (printed on failure). */
export function chaosSeed(): number {
  const env = process.env['SEXTANT_CHAOS_SEED'];
  return env !== undefined && env !== '' ? Number(env) : Math.floor(Math.random() * 2 ** 31);
}

/** A resource as the model knows it: its key and what tells two versions apart (the host). */
export interface Doc {
  key: string;
  sig: string;
}

export const CHAOS_PORT = 9080;

/** The ServiceEntry a chaos file declares: STATIC, one loopback endpoint, so the pilot makes a cluster of it. */
export function chaosEntry(name: string, host: string): Resource {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name, namespace: 'default' },
    spec: {
      hosts: [host], location: 'MESH_INTERNAL', resolution: 'STATIC',
      ports: [{ number: CHAOS_PORT, name: 'http', protocol: 'HTTP' }],
      endpoints: [{ address: '127.0.0.1' }],
    },
  };
}

function docsText(docs: readonly Doc[]): string {
  return docs.map((d) => toYaml(chaosEntry(d.key.split('/')[2]!, d.sig))).join('---\n');
}

/** Three ways a file can be bad; each is refused whatever the parser's leniency. */
function badText(docs: readonly Doc[], variant: number): string {
  const good = docsText(docs);
  if (variant === 0) return good.slice(0, good.lastIndexOf('kind: Serv') + 10); // cut off mid-word: unknown kind
  if (variant === 1) return `${good}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: broken}\nspec: {hosts: [broken.chaos.local], ports: [{number: 0, name: http}]}\n`;
  return `${good.slice(0, Math.floor(good.length / 2))}\n  : [unclosed\n`;
}

interface FileNow {
  text: string;
  /** null when the content is refused. */
  docs: Doc[] | null;
}

/** The independent model: what is on disk, each path's last good content, and what is served. */
export class ChaosModel {
  readonly dir: string;
  readonly guard: DeleteGuard;
  /** Every config file visible under the directory (through links too), by relative path. */
  readonly files = new Map<string, FileNow>();
  readonly lastGood = new Map<string, { docs: Doc[]; text: string }>();
  served = new Map<string, string>();
  held = false;
  /** What the held change deletes. */
  heldDeletions = new Set<string>();

  constructor(dir: string, guard: DeleteGuard) {
    this.dir = dir;
    this.guard = guard;
  }

  write(rel: string, f: FileNow): void {
    this.files.set(rel, f);
    if (f.docs !== null) this.lastGood.set(rel, { docs: f.docs, text: f.text });
  }

  remove(rel: string): void {
    this.files.delete(rel);
    this.lastGood.delete(rel);
  }

  /** Each resource from its first definition, files in path order. */
  desired(): Map<string, string> {
    const out = new Map<string, string>();
    for (const rel of this.orderedGood()) for (const d of this.lastGood.get(rel)!.docs) if (!out.has(d.key)) out.set(d.key, d.sig);
    return out;
  }

  private orderedGood(): string[] {
    return [...this.lastGood.keys()].sort((a, b) => {
      const x = path.join(this.dir, a);
      const y = path.join(this.dir, b);
      return x < y ? -1 : x > y ? 1 : 0;
    });
  }

  /** Definitions not served because an earlier file defines the same resource. */
  shadowed(): number {
    const seen = new Set<string>();
    let n = 0;
    for (const rel of this.orderedGood()) {
      for (const d of this.lastGood.get(rel)!.docs) {
        if (seen.has(d.key)) n++;
        seen.add(d.key);
      }
    }
    return n;
  }

  badFiles(): number {
    let n = 0;
    for (const f of this.files.values()) if (f.docs === null) n++;
    return n;
  }

  /**
   * What the store does with the files as they are now, in one batch. `marker`: the batch finds
   * a confirmation file the store saw being created (not one found in a directory that was away).
   * It confirms only a change held before it (one the store reported), and only while that
   * change deletes nothing more; otherwise it confirms nothing (and the store removes it).
   */
  settle(marker: boolean): void {
    const desired = this.desired();
    const deleted = [...this.served.keys()].filter((k) => !desired.has(k));
    const confirmed = marker && this.held && deleted.every((k) => this.heldDeletions.has(k));
    if (judgeDeletion(this.guard, deleted.length, this.served.size).hold && !confirmed) {
      this.held = true;
      this.heldDeletions = new Set(deleted);
      return;
    }
    this.served = desired;
    this.held = false;
    this.heldDeletions = new Set();
  }
}

export type OpName =
  | 'writeGood' | 'writeBad' | 'revert' | 'delete' | 'rename' | 'stash' | 'unstash'
  | 'loopLink' | 'unloopLink' | 'fileLink' | 'unFileLink' | 'dirLink' | 'unDirLink'
  | 'moveSubAway' | 'moveSubBack' | 'rmSub' | 'massDelete' | 'rootAway' | 'rootBack' | 'rootReplace' | 'confirm';

export interface ChaosOptions {
  /** Writes go to a hidden temp file and are renamed into place (a watching store never sees half a file). */
  atomic: boolean;
  /** Ops this run may pick, with weights. */
  weights: Partial<Record<OpName, number>>;
  /** Resources protected from chaos (a file sorted first that no op touches), as the model sees them. */
  protectedDocs?: { rel: string; text: string; docs: Doc[] };
  /** The files chaos writes (relative paths); default: four at the top, five under sub/. */
  paths?: readonly string[];
}

const NAMES = Array.from({ length: 14 }, (_, i) => `c${String(i).padStart(2, '0')}`);
const DEFAULT_PATHS = ['f0.yaml', 'f1.yaml', 'f2.yaml', 'f3.yaml', 'sub/f4.yaml', 'sub/f5.yaml', 'sub/f6.yaml', 'sub/deep/f7.yaml', 'sub/deep/f8.yaml'];
const LOOP_LINKS: Array<{ rel: string; target: string }> = [{ rel: 'self', target: '.' }, { rel: 'sub/up', target: '..' }, { rel: 'sub/deep/top', target: '../..' }];

/** The files, the model and the random steps of one run. */
export class ChaosWorld {
  readonly root: string;
  readonly dir: string;
  readonly away: string;
  readonly outside: string;
  readonly model: ChaosModel;
  readonly rand: () => number;
  readonly options: ChaosOptions;
  /** True while the directory is moved away (the next step brings it back). */
  rootIsAway = false;
  private counter = 0;
  private readonly paths: readonly string[];
  private readonly stashed = new Map<string, { rel: string; file: FileNow }>();
  private subAway: { at: string; files: Map<string, FileNow> } | undefined;

  constructor(root: string, seed: number, guard: DeleteGuard, options: ChaosOptions) {
    this.root = root;
    this.dir = path.join(root, 'config');
    this.away = path.join(root, 'config.away');
    this.outside = path.join(root, 'outside');
    this.model = new ChaosModel(this.dir, guard);
    this.rand = seededRandom(seed);
    this.options = options;
    this.paths = options.paths ?? DEFAULT_PATHS;
    mkdirSync(this.dir, { recursive: true });
    mkdirSync(path.join(this.outside, 'static-dir'), { recursive: true });
    writeFileSync(path.join(this.outside, 'static.yaml'), docsText([{ key: 'ServiceEntry/default/ext0', sig: 'ext0.outside.local' }]));
    writeFileSync(path.join(this.outside, 'static-dir', 'e.yaml'), docsText([{ key: 'ServiceEntry/default/ext1', sig: 'ext1.outside.local' }]));
    const p = options.protectedDocs;
    if (p !== undefined) {
      writeFileSync(path.join(this.dir, p.rel), p.text);
      this.model.write(p.rel, { text: p.text, docs: p.docs });
    }
  }

  /** Writes a few good files (the state the store loads), and settles the model. */
  seedFiles(n: number): void {
    for (let i = 0; i < n; i++) this.writeGood(this.paths[i % this.paths.length]!);
    this.model.settle(false);
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.rand() * items.length)]!;
  }

  /** Where files are while the directory is away. */
  private base(): string {
    return this.rootIsAway ? this.away : this.dir;
  }

  private put(rel: string, text: string): void {
    const file = path.join(this.base(), rel);
    mkdirSync(path.dirname(file), { recursive: true });
    if (this.options.atomic) {
      const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${this.counter++}.tmp`);
      writeFileSync(tmp, text);
      renameSync(tmp, file);
    } else {
      writeFileSync(file, text);
    }
  }

  private randomDocs(): Doc[] {
    const n = 1 + Math.floor(this.rand() * 3);
    const names = new Set<string>();
    while (names.size < n) names.add(this.pick(NAMES));
    const tag = (this.counter++).toString(36);
    return [...names].map((name) => ({ key: `ServiceEntry/default/${name}`, sig: `${name}-${tag}.chaos.local` }));
  }

  /** Config files chaos may touch: regular files under the directory (not links, not protected). */
  private ownFiles(): string[] {
    return [...this.model.files.keys()].filter((rel) => rel !== this.options.protectedDocs?.rel && this.paths.includes(rel)).sort();
  }

  private writeGood(rel: string): string {
    const docs = this.randomDocs();
    const text = docsText(docs);
    this.put(rel, text);
    this.model.write(rel, { text, docs });
    return `write ${rel} [${docs.map((d) => d.sig).join(' ')}]`;
  }

  /** Performs one op; returns what it did, or undefined when it does not apply to the tree as it is. */
  private perform(op: OpName): string | undefined {
    const dir = this.base();
    const own = this.ownFiles();
    switch (op) {
      case 'writeGood':
        return this.writeGood(this.pick(this.paths));
      case 'writeBad': {
        const rel = this.pick(this.paths);
        const variant = Math.floor(this.rand() * 3);
        this.put(rel, badText(this.randomDocs(), variant));
        const before = this.model.files.get(rel);
        this.model.files.set(rel, { text: '', docs: null });
        if (before === undefined) this.model.lastGood.delete(rel);
        return `partial/invalid write ${rel} (variant ${variant})`;
      }
      case 'revert': {
        const bad = own.filter((rel) => this.model.files.get(rel)!.docs === null && this.model.lastGood.has(rel));
        if (bad.length === 0) return undefined;
        const rel = this.pick(bad);
        const good = this.model.lastGood.get(rel)!;
        this.put(rel, good.text);
        this.model.write(rel, { text: good.text, docs: good.docs });
        return `revert ${rel} to its last good bytes`;
      }
      case 'delete': {
        if (own.length === 0) return undefined;
        const rel = this.pick(own);
        unlinkSync(path.join(dir, rel));
        this.model.remove(rel);
        return `delete ${rel}`;
      }
      case 'rename': {
        if (own.length === 0) return undefined;
        const from = this.pick(own);
        const to = this.pick(this.paths.filter((p) => p !== from));
        const f = this.model.files.get(from)!;
        mkdirSync(path.dirname(path.join(dir, to)), { recursive: true });
        renameSync(path.join(dir, from), path.join(dir, to));
        this.model.remove(from);
        // A bad file renamed over another one leaves that path's last good content in place.
        if (f.docs === null) this.model.files.set(to, f);
        else this.model.write(to, f);
        return `rename ${from} -> ${to}`;
      }
      case 'stash': {
        if (own.length === 0) return undefined;
        const rel = this.pick(own);
        const id = `stash-${this.counter++}`;
        renameSync(path.join(dir, rel), path.join(this.outside, id));
        this.stashed.set(id, { rel, file: this.model.files.get(rel)! });
        this.model.remove(rel);
        return `move ${rel} out of the tree (${id})`;
      }
      case 'unstash': {
        const ids = [...this.stashed.keys()].filter((id) => !this.model.files.has(this.stashed.get(id)!.rel));
        if (ids.length === 0) return undefined;
        const id = this.pick(ids);
        const { rel, file } = this.stashed.get(id)!;
        this.stashed.delete(id);
        mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
        renameSync(path.join(this.outside, id), path.join(dir, rel));
        if (file.docs === null) this.model.files.set(rel, file);
        else this.model.write(rel, file);
        return `move ${id} back to ${rel}`;
      }
      case 'loopLink': {
        const free = LOOP_LINKS.filter((l) => existsSync(path.join(dir, path.dirname(l.rel))) && !lexists(path.join(dir, l.rel)));
        if (free.length === 0) return undefined;
        const l = this.pick(free);
        symlinkSync(l.target, path.join(dir, l.rel));
        return `link loop ${l.rel} -> ${l.target}`;
      }
      case 'unloopLink': {
        const present = LOOP_LINKS.filter((l) => lexists(path.join(dir, l.rel)));
        if (present.length === 0) return undefined;
        const l = this.pick(present);
        unlinkSync(path.join(dir, l.rel));
        return `remove loop ${l.rel}`;
      }
      case 'fileLink': {
        if (lexists(path.join(dir, 'lnk.yaml'))) return undefined;
        symlinkSync(path.join(this.outside, 'static.yaml'), path.join(dir, 'lnk.yaml'));
        this.model.write('lnk.yaml', { text: '', docs: [{ key: 'ServiceEntry/default/ext0', sig: 'ext0.outside.local' }] });
        return 'link lnk.yaml -> outside/static.yaml';
      }
      case 'unFileLink': {
        if (!lexists(path.join(dir, 'lnk.yaml'))) return undefined;
        unlinkSync(path.join(dir, 'lnk.yaml'));
        this.model.remove('lnk.yaml');
        return 'remove lnk.yaml';
      }
      case 'dirLink': {
        if (lexists(path.join(dir, 'ext'))) return undefined;
        symlinkSync(path.join(this.outside, 'static-dir'), path.join(dir, 'ext'));
        this.model.write('ext/e.yaml', { text: '', docs: [{ key: 'ServiceEntry/default/ext1', sig: 'ext1.outside.local' }] });
        return 'link ext -> outside/static-dir';
      }
      case 'unDirLink': {
        if (!lexists(path.join(dir, 'ext'))) return undefined;
        unlinkSync(path.join(dir, 'ext'));
        this.model.remove('ext/e.yaml');
        return 'remove ext';
      }
      case 'moveSubAway': {
        if (this.subAway !== undefined || !existsSync(path.join(dir, 'sub'))) return undefined;
        const at = path.join(this.outside, `sub-${this.counter++}`);
        renameSync(path.join(dir, 'sub'), at);
        const files = new Map<string, FileNow>();
        for (const [rel, f] of this.model.files) {
          if (!rel.startsWith('sub/')) continue;
          files.set(rel, f);
          this.model.remove(rel);
        }
        this.subAway = { at, files };
        return `move sub/ away (${files.size} files)`;
      }
      case 'moveSubBack': {
        if (this.subAway === undefined || existsSync(path.join(dir, 'sub'))) return undefined;
        renameSync(this.subAway.at, path.join(dir, 'sub'));
        for (const [rel, f] of this.subAway.files) {
          if (f.docs === null) this.model.files.set(rel, f);
          else this.model.write(rel, f);
        }
        const n = this.subAway.files.size;
        this.subAway = undefined;
        return `move sub/ back (${n} files)`;
      }
      case 'rmSub': {
        if (!existsSync(path.join(dir, 'sub'))) return undefined;
        rmSync(path.join(dir, 'sub'), { recursive: true });
        for (const rel of [...this.model.files.keys()]) if (rel.startsWith('sub/')) this.model.remove(rel);
        return 'rm -rf sub/';
      }
      case 'massDelete': {
        // Every file but one, one unlink at a time (not atomic: only for a store settled by sync()).
        if (own.length < 3) return undefined;
        const keep = this.pick(own);
        for (const rel of own) {
          if (rel === keep) continue;
          unlinkSync(path.join(dir, rel));
          this.model.remove(rel);
        }
        return `delete every file but ${keep} (${own.length - 1} files)`;
      }
      case 'rootAway':
        if (this.rootIsAway) return undefined;
        renameSync(this.dir, this.away);
        this.rootIsAway = true;
        return 'move the directory away';
      case 'rootBack':
        if (!this.rootIsAway) return undefined;
        renameSync(this.away, this.dir);
        this.rootIsAway = false;
        return 'move the directory back';
      case 'rootReplace': {
        if (this.rootIsAway) return undefined;
        const copy = path.join(this.root, `config.copy-${this.counter++}`);
        cpSync(this.dir, copy, { recursive: true, verbatimSymlinks: true });
        renameSync(this.dir, path.join(this.root, `config.old-${this.counter++}`));
        renameSync(copy, this.dir);
        return 'replace the directory with a copy (new inode)';
      }
      case 'confirm':
        writeFileSync(path.join(dir, CONFIRM_DELETE_MARKER), '');
        return `touch ${CONFIRM_DELETE_MARKER}`;
    }
  }

  /**
   * One random step (or `forced`). While the directory is away, the step edits a file inside it
   * or brings it back. Returns what was done, and whether it confirms a held deletion.
   */
  step(forced?: OpName): { what: string; op: OpName } {
    if (this.rootIsAway) {
      const away = (op: OpName, what: string): { what: string; op: OpName } => ({ what: op === 'rootBack' ? what : `${what} (inside the moved-away directory)`, op });
      if (forced !== undefined) {
        const what = this.perform(forced);
        if (what !== undefined) return away(forced, what);
      }
      const op: OpName = this.rand() < 0.5 ? 'rootBack' : 'writeGood';
      return away(op, this.perform(op)!);
    }
    if (forced !== undefined) {
      const what = this.perform(forced);
      if (what !== undefined) return { what, op: forced };
    }
    const entries = Object.entries(this.options.weights) as Array<[OpName, number]>;
    const total = entries.reduce((s, [, w]) => s + w, 0);
    for (let attempt = 0; attempt < 50; attempt++) {
      let r = this.rand() * total;
      const op = entries.find(([, w]) => (r -= w) < 0)?.[0] ?? entries[0]![0];
      const what = this.perform(op);
      if (what !== undefined) return { what, op };
    }
    return { what: this.writeGood(this.pick(this.paths)), op: 'writeGood' };
  }

  /**
   * The model after the store has applied the step (a step with the directory away changes
   * nothing). A confirmation file created while the directory was away is found in the step
   * that brings it back, in a directory the store could not watch: it confirms nothing there,
   * whatever was held before, and the store removes it; so only a 'confirm' step with the
   * directory in place confirms.
   */
  settleModel(op: OpName): void {
    if (this.rootIsAway) return;
    this.model.settle(op === 'confirm');
  }

  /** Names of files in a folder, for failure messages. */
  listing(): string {
    const walk = (d: string, pre: string): string[] => {
      let out: string[] = [];
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const rel = pre === '' ? e.name : `${pre}/${e.name}`;
        out.push(e.isSymbolicLink() ? `${rel}@` : rel);
        if (e.isDirectory()) out = out.concat(walk(path.join(d, e.name), rel));
      }
      return out;
    };
    return existsSync(this.dir) ? walk(this.dir, '').join(' ') : '(directory away)';
  }
}

/** Whether a path exists, a dangling or looping link included. */
function lexists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
