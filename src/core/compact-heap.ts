// An explicit garbage collection, for the one moment V8's own heuristics are known to miss:
// right after startup.

type GcOptions = { type: 'major' | 'minor'; execution: 'sync' | 'async'; flavor?: 'regular' | 'last-resort' };
type GcFunction = (opts: GcOptions) => unknown;

let gc: GcFunction | null | undefined;

/**
 * V8's gc(), without `--expose-gc` on the command line (which would put `gc` on every module's
 * global object): the flag is set at run time and the function taken from a fresh vm context, so
 * only this module holds it. Null when V8 refuses; callers then do nothing.
 */
function gcFunction(): GcFunction | null {
  if (gc !== undefined) return gc;
  try {
    process.getBuiltinModule('node:v8').setFlagsFromString('--expose-gc');
    const fn = process.getBuiltinModule('node:vm').runInNewContext('gc') as unknown;
    gc = typeof fn === 'function' ? (fn as GcFunction) : null;
  } catch {
    gc = null;
  }
  return gc;
}

/**
 * One full, compacting, memory-reducing GC. Startup allocates far more than the daemon keeps
 * (module sources being compiled, protobuf descriptors): it leaves V8's old generation sparse
 * and grown, and V8's memory reducer, which an idle browser tab would get, does not start in a
 * process that has not yet done a mark-compact. Measured with bench/tools/idle-rss.ts: idle RSS
 * 91 -> 82 MB, V8 heapTotal 29 -> 20 MB. A plain major GC shrinks nothing: it has to be the
 * last-resort flavour. About 20 ms; run once, before the daemon reports ready.
 */
export function compactHeap(): boolean {
  const fn = gcFunction();
  if (fn === null) return false;
  fn({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return true;
}
