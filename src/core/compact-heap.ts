/**
 * One full, compacting, memory-reducing GC. Startup allocates far more than the daemon keeps
 * (module sources being compiled, protobuf descriptors): it leaves V8's old generation sparse
 * and grown, and V8's memory reducer, which an idle browser tab would get, does not start in a
 * process that has not yet done a mark-compact. Measured with bench/tools/idle-rss.ts: idle RSS
 * 91 -> 82 MB, V8 heapTotal 29 -> 20 MB. A plain major GC shrinks nothing: it has to be the
 * last-resort flavour. About 20 ms; run once, before the daemon reports ready.
 *
 * Without `--expose-gc` on the command line (which would put `gc` on every module's global
 * object): the flag is set at run time and the function taken from a fresh vm context, so only
 * this call sees it. Best effort: false when V8 refuses, and nothing else changes.
 */
export function compactHeap(): boolean {
  const gc = gcFunction();
  if (gc === null) return false;
  try {
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    return true;
  } catch {
    return false;
  }
}

/** Starts a major GC whose marking runs concurrently (off the main thread); best effort. */
export function startMajorGc(): boolean {
  const gc = gcFunction();
  if (gc === null) return false;
  try {
    gc({ type: 'major', execution: 'async' });
    return true;
  } catch {
    return false;
  }
}

let cachedGc: ((opts: object) => void) | null | undefined;

/** V8's `gc`, taken once as compactHeap describes; null when V8 refuses. */
function gcFunction(): ((opts: object) => void) | null {
  if (cachedGc !== undefined) return cachedGc;
  try {
    process.getBuiltinModule('node:v8').setFlagsFromString('--expose-gc');
    const gc = process.getBuiltinModule('node:vm').runInNewContext('gc') as unknown;
    cachedGc = typeof gc === 'function' ? (gc as (opts: object) => void) : null;
  } catch {
    cachedGc = null;
  }
  return cachedGc;
}
