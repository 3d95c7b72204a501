// Writing several config files as one step (the directory store's apply): every new content
// goes to a hidden temp file beside its target and is fsynced first; only then are the temp
// files renamed into place and removed files unlinked. If a rename or unlink fails, the files
// already changed get their old bytes back, so the tree is as it was before the batch.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from './persist.ts';

/** One file of a batch: its new text, or null to remove it. */
export interface FileWrite {
  file: string;
  text: string | null;
}

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

async function writeTemp(file: string, text: string): Promise<string> {
  const dir = path.dirname(file);
  // The file's folder may be created, never its parent: a write does not recreate a moved config directory.
  await mkdir(dir).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  });
  const tmp = path.join(dir, `.${path.basename(file)}.sextant-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o644);
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  return tmp;
}

/** Applies every write, or (as far as the filesystem lets it) none. */
export async function writeFilesTogether(writes: readonly FileWrite[]): Promise<void> {
  const temps = new Map<string, string>();
  const previous = new Map<string, Buffer | null>();
  try {
    for (const w of writes) {
      previous.set(w.file, await readFile(w.file).catch((err: unknown) => {
        if (isNotFound(err)) return null;
        throw err;
      }));
      if (w.text !== null) temps.set(w.file, await writeTemp(w.file, w.text));
    }
  } catch (err) {
    await Promise.all([...temps.values()].map((t) => unlink(t).catch(() => undefined)));
    throw err;
  }
  const done: string[] = [];
  try {
    for (const w of writes) {
      const tmp = temps.get(w.file);
      if (tmp !== undefined) {
        await rename(tmp, w.file);
        temps.delete(w.file);
      } else {
        await unlink(w.file).catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
      }
      done.push(w.file);
    }
  } catch (err) {
    for (const file of done.reverse()) {
      const old = previous.get(file);
      if (old === null || old === undefined) await unlink(file).catch(() => undefined);
      else await writeFileAtomic(file, old.toString('utf8')).catch(() => undefined);
    }
    await Promise.all([...temps.values()].map((t) => unlink(t).catch(() => undefined)));
    throw err;
  }
}
