import { compactHeap } from '../core/compact-heap.ts';

/**
 * One memory-reducing collection when intake goes quiet after a burst. Under load V8 lets old
 * space fill with garbage up to its growth limit and glibc keeps the freed buffers' pages; once
 * the traffic stops nothing collects them for seconds (V8's own memory reducer waits 8 s), so the
 * RSS an operator sees for a node that is only holding a backlog is the load's, not the data's.
 * A full compacting collection costs 20-50 ms, taken here only after `quietMs` without a single
 * append, and once per quiet spell.
 */
export class IdleCompaction {
  private readonly appended: () => number;
  private readonly quietMs: number;
  private readonly collect: () => boolean;
  private timer: NodeJS.Timeout | null = null;
  private last: number;
  private quietSince = 0;
  private dirty = false;
  /** Collections run so far (reported in /v1/status under memory). */
  runs = 0;

  constructor(appended: () => number, opts: { quietMs?: number; collect?: () => boolean } = {}) {
    this.appended = appended;
    this.quietMs = opts.quietMs ?? 500;
    this.collect = opts.collect ?? compactHeap;
    this.last = appended();
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(this.tick, Math.max(50, this.quietMs / 4));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Exposed for tests: one check at time `now`. */
  readonly tick = (now = Date.now()): void => {
    const n = this.appended();
    if (n !== this.last) {
      this.last = n;
      this.dirty = true;
      this.quietSince = now;
      return;
    }
    if (this.dirty && now - this.quietSince >= this.quietMs) {
      this.dirty = false;
      if (this.collect()) this.runs++;
    }
  };
}
