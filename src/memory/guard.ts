// The last guard of the memory budget: the buffers budget.ts sizes bound what the daemon holds
// on purpose, not the garbage V8 lets build up between collections, nor memory native code
// keeps. When RSS nears the limit, intake pauses through the journal's own back-pressure
// (sources see `saturated` and stop reading their devices, TCP pushes back), a memory-reducing
// collection runs, and intake resumes below a lower mark.

import { compactHeap, startMajorGc } from '../core/compact-heap.ts';
import type { Logger } from '../core/logger.ts';
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
  /** Highest RSS read. */
  peakRss: number;
}

/** While paused, a memory-reducing collection at most this often (one costs 20-200 ms of the loop). */
const COLLECT_EVERY_MS = 1000;

/**
 * A RecordAppender in front of the journal: appends go straight through; `saturated` is the
 * journal's or the guard's. Resuming needs RSS below `resumeAtBytes`, or, once a collection has
 * run during the pause, below the middle of the two marks: what a full collection leaves is all
 * that waiting would free (the sinks still drain meanwhile), so intake goes on rather than stall
 * on memory that glibc keeps, and pauses again if RSS climbs back.
 */
export class MemoryGuard implements RecordAppender {
  readonly counters: MemoryGuardCounters = {
    pauses: 0,
    pausedMs: 0,
    collections: 0,
    earlyCollections: 0,
    peakRss: 0,
  };
  readonly opts: MemoryGuardOptions;
  private readonly inner: RecordAppender;
  private readonly log: Logger;
  private readonly rss: () => number;
  private readonly collect: () => void;
  private readonly collectConcurrently: () => void;
  private timer: NodeJS.Timeout | null = null;
  private pausedAt = 0;
  private lastCollect = 0;
  private lastEarly = 0;
  private collectedInPause = false;
  private waiters: (() => void)[] = [];
  /** RSS at the last check. */
  lastRss = 0;
  paused = false;

  constructor(inner: RecordAppender, opts: MemoryGuardOptions, log: Logger) {
    this.inner = inner;
    this.opts = opts;
    this.log = log;
    this.rss = opts.rss ?? process.memoryUsage.rss;
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
  pausedMs(now = Date.now()): number {
    return this.counters.pausedMs + (this.paused ? now - this.pausedAt : 0);
  }

  readonly check = (): void => {
    const rss = this.rss();
    this.lastRss = rss;
    if (rss > this.counters.peakRss) this.counters.peakRss = rss;
    const o = this.opts;
    if (!this.paused) {
      if (rss > o.pauseAtBytes) this.pause(rss);
      else if (o.collectAtBytes !== undefined && rss > o.collectAtBytes) this.collectEarly();
      return;
    }
    const collected = this.collectedInPause && rss < (o.pauseAtBytes + o.resumeAtBytes) / 2;
    if (rss < o.resumeAtBytes || collected) {
      this.resume(rss);
      return;
    }
    const now = Date.now();
    if (now - this.lastCollect >= COLLECT_EVERY_MS) this.runCollection(now);
  };

  private pause(rss: number): void {
    this.paused = true;
    this.collectedInPause = false;
    this.pausedAt = Date.now();
    this.counters.pauses++;
    // One line per pause: a pause lasts at least one check, so this is never per message.
    this.log.warn(
      { rss, limit: this.opts.limit, pauseAt: this.opts.pauseAtBytes, pauses: this.counters.pauses },
      `memory: RSS ${mib(rss)} is over ${mib(this.opts.pauseAtBytes)} of the ${mib(this.opts.limit)} limit: intake paused`,
    );
    this.runCollection(this.pausedAt);
  }

  /**
   * V8 sizes its old generation by its own heuristics, far above what a limit it does not know
   * leaves (the heap limit is fixed at start-up); garbage promoted under a burst is collected
   * late. A concurrent major collection started early frees it off the main thread.
   */
  private collectEarly(): void {
    const now = Date.now();
    if (now - this.lastEarly < COLLECT_EVERY_MS) return;
    this.lastEarly = now;
    this.counters.earlyCollections++;
    this.collectConcurrently();
  }

  private runCollection(now: number): void {
    this.collect();
    this.counters.collections++;
    this.lastCollect = now;
    this.collectedInPause = true;
  }

  private resume(rss: number): void {
    const now = Date.now();
    this.paused = false;
    this.counters.pausedMs += now - this.pausedAt;
    this.log.info({ rss, pausedMs: now - this.pausedAt }, 'memory: intake resumed');
    const waiters = this.waiters;
    this.waiters = [];
    // The journal may still be saturated itself: each waiter goes on through its wait.
    for (const w of waiters) this.inner.whenUnsaturated(w);
  }
}
