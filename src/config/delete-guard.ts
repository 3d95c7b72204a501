// The mass-deletion guard, shared by the directory and etcd stores: a change that would remove
// most of the mesh at once (a moved-away folder, `rm -rf`, a wiped etcd prefix, a bad `git
// checkout`) is held, and the last good state kept, until an operator confirms it.
import { InvalidArgumentError } from './errors.ts';

export interface DeleteGuardOptions {
  /**
   * Hold a change that deletes more than this fraction of the resources being served (and
   * more than `minDeletions`). 0 or 1 turns the guard off. Default 0.5.
   */
  fraction?: number;
  /** Deletions at or below this count always apply, whatever the fraction. Default 10. */
  minDeletions?: number;
}

export interface DeleteGuard {
  /** 0 when the guard is off. */
  readonly fraction: number;
  readonly minDeletions: number;
}

export const DEFAULT_DELETE_GUARD: DeleteGuard = Object.freeze({ fraction: 0.5, minDeletions: 10 });

/**
 * The hidden name an operator creates to confirm a held deletion: a file in the config
 * directory's root (`touch DIR/.sextant-confirm-delete`), or the key PREFIX/.sextant-confirm-delete
 * in etcd. It confirms the change held when the store sees it, and the store removes it. Both
 * stores count only a marker that appears while the change is already held and reported (not
 * one found with the deletion or put before it, nor, in the directory store, one in a directory
 * that was moved away or replaced), and only while the change deletes nothing beyond what was
 * held: see docs/config-stores.md.
 */
export const CONFIRM_DELETE_MARKER = '.sextant-confirm-delete';

/** Checks the options once, at the boundary; throws InvalidArgumentError naming the bad value. */
export function deleteGuard(options: DeleteGuardOptions | undefined): DeleteGuard {
  const fraction = options?.fraction ?? DEFAULT_DELETE_GUARD.fraction;
  const minDeletions = options?.minDeletions ?? DEFAULT_DELETE_GUARD.minDeletions;
  if (typeof fraction !== 'number' || !Number.isFinite(fraction) || fraction < 0 || fraction > 1) {
    throw new InvalidArgumentError(`invalid delete guard fraction ${String(fraction)}: expected a number from 0 to 1 (0 or 1 turns the guard off)`);
  }
  if (!Number.isSafeInteger(minDeletions) || minDeletions < 0) {
    throw new InvalidArgumentError(`invalid delete guard minimum ${String(minDeletions)}: expected an integer >= 0`);
  }
  return Object.freeze({ fraction: fraction >= 1 ? 0 : fraction, minDeletions });
}

export interface DeletionVerdict {
  /** True when the change must wait for confirmation. */
  hold: boolean;
  deletions: number;
  /** Resources served before the change. */
  total: number;
}

/** Whether a change deleting `deletions` of the `total` resources served must be held. */
export function judgeDeletion(guard: DeleteGuard, deletions: number, total: number): DeletionVerdict {
  const hold = guard.fraction > 0 && deletions > guard.minDeletions && deletions > guard.fraction * total;
  return { hold, deletions, total };
}

/** A change the guard holds, as stores report it (status pages, logs). */
export interface HeldChange {
  /** When the change was first held (ISO 8601). */
  since: string;
  /** Resources the change would delete, and how many were served when it was held. */
  deletions: number;
  total: number;
  /** Other parts of the change, held with it (directory store). */
  additions: number;
  modifications: number;
  /** Up to 20 of the resources it would delete, `Kind/namespace/name`. */
  sample: string[];
  /** What the operator does to apply it. */
  confirm: string;
}

/** The first `n` keys, sorted: what logs and status pages show of a large deletion. */
export function sampleKeys(keys: Iterable<string>, n = 20): string[] {
  return [...keys].sort().slice(0, n);
}
