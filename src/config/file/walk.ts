// Walking the config tree: every config file under the root, in sorted path order. Symbolic
// links are followed (ConfigMap volumes are links), but a directory is entered once, known by
// its device and inode, so a link back up the tree (`ln -s .. sub/up`) or two links to one
// folder cannot make the walk endless or read the same files twice. Every walk is bounded in
// directories, files and depth.
import type { Dirent, Stats } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { isConfigFileName } from './persist.ts';

export interface WalkLimits {
  /** Directories entered, the root included. */
  maxDirectories: number;
  /** Config files found. */
  maxFiles: number;
  /** Levels below the root. */
  maxDepth: number;
}

export const DEFAULT_WALK_LIMITS: WalkLimits = Object.freeze({ maxDirectories: 10_000, maxFiles: 200_000, maxDepth: 32 });

/** A directory link the walk did not follow. */
export interface SkippedLink {
  /** The link's path under the root. */
  path: string;
  /** `loop`: it leads to a directory on its own path (or its resolution loops); `repeat`: to a directory already read through another path. */
  reason: 'loop' | 'repeat';
  /** The path the directory was first read under ('' when the link does not resolve). */
  target: string;
}

export interface WalkResult {
  /** Config files found, sorted. */
  files: string[];
  /** Every directory entered, the root first. */
  directories: string[];
  skipped: SkippedLink[];
  /** Why the walk stopped before the end (a limit was reached); files it did not reach may still exist. */
  truncated: string | undefined;
  /** Directories that could not be read (permissions); files under them may still exist. */
  unreadable: Array<{ dir: string; code: string }>;
}

/** Device and inode: what a directory is, whatever path reaches it. */
export function fileIdentity(st: Stats): string {
  return `${st.dev}:${st.ino}`;
}

function byName(a: Dirent, b: Dirent): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}

/**
 * Walks `root` depth-first in sorted order; `onDirectory` is called for each directory before
 * it is read (the store watches it there, so an edit made during the read is not missed).
 * Hidden names (starting with '.') are skipped. A root that is not a readable directory gives
 * an empty result with `unreadable` set.
 */
export async function walkConfigTree(root: string, limits: WalkLimits, onDirectory: (dir: string) => void): Promise<WalkResult> {
  const result: WalkResult = { files: [], directories: [], skipped: [], truncated: undefined, unreadable: [] };
  /** Identity → the path it was first entered under. */
  const entered = new Map<string, string>();
  let rootStat: Stats;
  try {
    rootStat = await stat(root);
  } catch (err) {
    result.unreadable.push({ dir: root, code: errorCode(err) });
    return result;
  }
  const rootId = fileIdentity(rootStat);
  entered.set(rootId, root);
  result.directories.push(root);

  const stop = (why: string): void => {
    result.truncated ??= why;
  };

  const visit = async (dir: string, ancestors: Set<string>, depth: number): Promise<void> => {
    onDirectory(dir);
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = errorCode(err);
      // Removed while walking: nothing to read there.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') result.unreadable.push({ dir, code });
      return;
    }
    entries.sort(byName);
    for (const e of entries) {
      if (result.truncated !== undefined) return;
      if (e.name.startsWith('.')) continue;
      const p = path.join(dir, e.name);
      let st: Stats | undefined;
      if (e.isSymbolicLink()) {
        try {
          st = await stat(p);
        } catch (err) {
          // A link whose resolution loops (a -> b -> a) is a loop; a dangling one has nothing to read.
          if (errorCode(err) === 'ELOOP') result.skipped.push({ path: p, reason: 'loop', target: '' });
          continue;
        }
        if (st.isFile()) {
          if (isConfigFileName(e.name)) addFile(p);
          continue;
        }
        if (!st.isDirectory()) continue;
      } else if (e.isDirectory()) {
        try {
          st = await stat(p);
        } catch {
          continue; // removed while walking
        }
      } else {
        if (e.isFile() && isConfigFileName(e.name)) addFile(p);
        continue;
      }
      const id = fileIdentity(st);
      const first = entered.get(id);
      if (first !== undefined) {
        result.skipped.push({ path: p, reason: ancestors.has(id) ? 'loop' : 'repeat', target: first });
        continue;
      }
      if (depth + 1 > limits.maxDepth) {
        stop(`more than ${limits.maxDepth} levels of directories (at ${p})`);
        return;
      }
      if (result.directories.length >= limits.maxDirectories) {
        stop(`more than ${limits.maxDirectories} directories (at ${p})`);
        return;
      }
      entered.set(id, p);
      result.directories.push(p);
      ancestors.add(id);
      await visit(p, ancestors, depth + 1);
      ancestors.delete(id);
    }
  };

  const addFile = (p: string): void => {
    if (result.files.length >= limits.maxFiles) {
      stop(`more than ${limits.maxFiles} config files (at ${p})`);
      return;
    }
    result.files.push(p);
  };

  await visit(root, new Set([rootId]), 0);
  // Depth-first in sorted name order is not sorted path order ('a/x' vs 'a-b'): sort once.
  result.files.sort();
  return result;
}
