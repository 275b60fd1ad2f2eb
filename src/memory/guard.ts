// The last guard of the memory budget: the buffers budget.ts sizes bound what the daemon holds
// on purpose, not the garbage V8 lets build up between collections, nor memory native code
// keeps. When RSS nears the limit, intake pauses through the journal's own back-pressure
// (sources see `saturated` and stop reading their devices, TCP pushes back), a memory-reducing
// collection runs, and intake resumes below a lower mark. Delivery goes on meanwhile: holding it
// too kept a drain near the mark paused most of the time (400 000 records not delivered within
// 120 s under 160 MiB), and a backlog's drain is what frees the journal.
// RSS is VmRSS, file pages included (the node binary's, LevelDB's mapped tables): what `ps` and
// the target show, though a cgroup charges less of it (the binary's pages are shared).

import { compactHeap, startMajorGc } from '../core/compact-heap.ts';
import { type Logger, ThrottledLog } from '../core/logger.ts';
import type { AppendCallback, RecordAppender } from '../core/pipeline.ts';
import type { RecordInput } from '../core/record.ts';
import { mib } from './budget.ts';

export interface MemoryGuardOptions {
  limit: number;
  pauseAtBytes: number;
  resumeAtBytes: number;
  /** How often RSS is read (default 20 ms: at 50 ms, bursts of 100k msg/s went 5 MiB further past the pause mark). */
  checkMs?: number;
  /** Above this RSS, a concurrent major collection is asked for, intake untouched (default: none). */
  collectAtBytes?: number;
  /** Tests pass their own readings and collectors. */
  rss?: () => number;
  now?: () => number;
  collect?: () => void;
  collectConcurrently?: () => void;
}

export interface MemoryGuardCounters {
  /** Times intake paused because RSS passed `pauseAtBytes`. */
  pauses: number;
  /** Milliseconds intake spent paused for memory, in all. */
  pausedMs: number;
  /** Memory-reducing collections run while paused. */
  collections: number;
  /** Concurrent major collections asked for above `collectAtBytes`. */
  earlyCollections: number;
  /** Pauses ended because collections no longer lowered RSS (the pause mark then rises). */
  settles: number;
  /** Highest RSS read. */
  peakRss: number;
}

/** While paused, a memory-reducing collection at most this often (one costs 20-200 ms of the loop). */
const COLLECT_EVERY_MS = 1000;
/** A collection is judged this long after it ran (at 200 ms, one drain under 160 MiB paused 121 times, not 40). */
const JUDGE_AFTER_MS = 1000;
/** A collection that gave back less than this did not help. */
const SETTLE_BYTES = 1024 * 1024;
/** After such a pause, intake pauses again this share of the limit higher. */
const SETTLE_STEP = 0.02;

/**
 * A RecordAppender in front of the journal: appends go straight through; `saturated` is the
 * journal's or the guard's. A pause ends when RSS falls below `resumeAtBytes`, or when a
 * collection no longer lowers it (see `check`): the guard must never stop intake for good.
 */
export class MemoryGuard implements RecordAppender {
  readonly counters: MemoryGuardCounters = {
    pauses: 0,
    pausedMs: 0,
    collections: 0,
    earlyCollections: 0,
    settles: 0,
    peakRss: 0,
  };
  readonly opts: MemoryGuardOptions;
  private readonly inner: RecordAppender;
  private readonly log: Logger;
  private readonly rss: () => number;
  private readonly now: () => number;
  private readonly collect: () => void;
  private readonly collectConcurrently: () => void;
  private timer: NodeJS.Timeout | null = null;
  private pausedAt = 0;
  private lastCollect = 0;
  private lastEarly = 0;
  /** RSS when the last collection of a pause started. */
  private rssAtCollect = 0;
  /** The pause mark raised after a pause that collections could not end (see check). */
  private settledAt: number | null = null;
  private waiters: (() => void)[] = [];
  /** Under steady pressure pauses come several a second: one line in ten seconds says so. */
  private readonly pauseLog = new ThrottledLog(10_000);
  private readonly resumeLog = new ThrottledLog(10_000);
  /** RSS at the last check. */
  lastRss = 0;
  paused = false;

  constructor(inner: RecordAppender, opts: MemoryGuardOptions, log: Logger) {
    this.inner = inner;
    this.opts = opts;
    this.log = log;
    this.rss = opts.rss ?? process.memoryUsage.rss;
    this.now = opts.now ?? Date.now;
    this.collect = opts.collect ?? compactHeap;
    this.collectConcurrently = opts.collectConcurrently ?? startMajorGc;
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(this.check, this.opts.checkMs ?? 20);
    this.timer.unref();
    this.check();
  }

  /** Stops watching and lets every paused source go (shutdown). */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.paused) this.resume(this.lastRss);
  }

  append<S>(rec: RecordInput, cb: AppendCallback<S> | null, state: S): void {
    this.inner.append(rec, cb, state);
  }

  get saturated(): boolean {
    return this.paused || this.inner.saturated;
  }

  whenUnsaturated(cb: () => void): void {
    if (this.paused) this.waiters.push(cb);
    else this.inner.whenUnsaturated(cb);
  }

  /** Milliseconds paused so far, the current pause included. */
  pausedMs(now = this.now()): number {
    return this.counters.pausedMs + (this.paused ? now - this.pausedAt : 0);
  }

  readonly check = (): void => {
    const rss = this.rss();
    this.lastRss = rss;
    if (rss > this.counters.peakRss) this.counters.peakRss = rss;
    const o = this.opts;
    if (!this.paused) {
      if (rss < o.resumeAtBytes) this.settledAt = null;
      if (rss > (this.settledAt ?? o.pauseAtBytes)) this.pause(rss);
      else if (o.collectAtBytes !== undefined && rss > o.collectAtBytes) this.collectEarly();
      return;
    }
    if (rss < o.resumeAtBytes) {
      this.resume(rss);
      return;
    }
    const now = this.now();
    const since = now - this.lastCollect;
    if (since < JUDGE_AFTER_MS) return;
    if (rss > this.rssAtCollect - SETTLE_BYTES) {
      // The last collection gave nothing back: what is held is not intake's garbage (malloc'd
      // memory glibc keeps after a drain, a sink's reads). Pausing on would stop intake for
      // good; it resumes, and pauses again if RSS climbs a step further.
      // Not capped below the limit: RSS held above it (file pages after a drain: LevelDB's mapped
      // tables, which the kernel reclaims before any OOM kill) would pause intake every second.
      this.settledAt = Math.max(o.pauseAtBytes, rss + o.limit * SETTLE_STEP);
      this.counters.settles++;
      this.log.warn(
        { rss, pauseAt: this.settledAt, limit: o.limit },
        `memory: RSS stays at ${mib(rss)} after a collection: intake resumes, and pauses again above ${mib(this.settledAt)}`,
      );
      this.resume(rss);
      return;
    }
    if (since >= COLLECT_EVERY_MS) this.runCollection(now, rss);
  };

  private pause(rss: number): void {
    this.paused = true;
    this.pausedAt = this.now();
    this.counters.pauses++;
    const suppressed = this.pauseLog.take(this.pausedAt);
    if (suppressed >= 0) {
      this.log.warn(
        {
          rss,
          limit: this.opts.limit,
          pauseAt: this.opts.pauseAtBytes,
          pauses: this.counters.pauses,
          suppressed,
        },
        `memory: RSS ${mib(rss)} is over ${mib(this.opts.pauseAtBytes)} of the ${mib(this.opts.limit)} limit: intake paused`,
      );
    }
    this.runCollection(this.pausedAt, rss);
  }

  /**
   * V8 sizes its old generation by its own heuristics, far above what a limit it does not know
   * leaves (the heap limit is fixed at start-up); garbage promoted under a burst is collected
   * late. A concurrent major collection started early frees it off the main thread.
   */
  private collectEarly(): void {
    const now = this.now();
    if (now - this.lastEarly < COLLECT_EVERY_MS) return;
    this.lastEarly = now;
    this.counters.earlyCollections++;
    this.collectConcurrently();
  }

  private runCollection(now: number, rss: number): void {
    this.collect();
    this.counters.collections++;
    this.lastCollect = now;
    this.rssAtCollect = rss;
  }

  private resume(rss: number): void {
    const now = this.now();
    this.paused = false;
    this.counters.pausedMs += now - this.pausedAt;
    const suppressed = this.resumeLog.take(now);
    if (suppressed >= 0)
      this.log.info({ rss, pausedMs: now - this.pausedAt, suppressed }, 'memory: intake resumed');
    const waiters = this.waiters;
    this.waiters = [];
    // The journal may still be saturated itself: each waiter goes on through its wait.
    for (const w of waiters) this.inner.whenUnsaturated(w);
  }
}
