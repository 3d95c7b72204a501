// Gives memory back to the OS after a burst of short-lived state (e.g. thousands of
// passthrough destinations) is gone: V8 neither collects an idle heap nor returns its
// pooled pages on its own, so RSS would stay at the burst's peak (M15).
import v8 from 'node:v8';
import vm from 'node:vm';

type GcFunction = (opts?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;
let gc: GcFunction | null | undefined;

// V8's gc() without exposing it as a global to the rest of the process.
function collector(): GcFunction | null {
  if (gc !== undefined) return gc;
  try {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as GcFunction;
    v8.setFlagsFromString('--no-expose-gc');
  } catch {
    gc = null;
  }
  return gc;
}

/**
 * A memory-reducing full collection: frees garbage and returns V8's pooled pages.
 * Costs a few milliseconds on a small live heap; call it only after a burst is over.
 * Returns false when the runtime does not allow it.
 */
export function reclaimMemory(): boolean {
  const f = collector();
  if (f === null) return false;
  f({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return true;
}
