// Writing several config files as one step (the directory store's apply): every new content
// goes to a hidden temp file beside its target and is fsynced first; only then are the temp
// files renamed into place and removed files unlinked. If a rename or unlink fails, the files
// already changed get their old bytes back, so the tree is as it was before the batch.
import { readFile, rename, unlink } from 'node:fs/promises';
import { isNotFound, writeFileAtomic, writeTempBeside } from './persist.ts';

/** One file of a batch: its new text, or null to remove it. */
export interface FileWrite {
  file: string;
  text: string | null;
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
      if (w.text !== null) temps.set(w.file, await writeTempBeside(w.file, w.text));
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
