import type { AppendCallback } from '../core/pipeline.ts';
import { ENTRY_HEADER_BYTES } from './chunk.ts';

/** Records appended and not yet committed: one group commit's worth. */
export interface Pending {
  bodies: Buffer[];
  ts: number[];
  cbs: (AppendCallback<unknown> | null)[];
  states: unknown[];
  bytes: number;
}

function newPending(): Pending {
  return { bodies: [], ts: [], cbs: [], states: [], bytes: 0 };
}

/** What the group commit needs of the journal. */
export interface GroupCommitHost {
  /** Writes one batch; never rejects (a failure calls the batch's callbacks itself). */
  commit(batch: Pending): Promise<void>;
  /** False while the database is reopening after a write error: nothing is flushed. */
  canFlush(): boolean;
  /** Cursor moves wait to be written (they ride on the next batch, or make one alone). */
  hasCursorMoves(): boolean;
  /** Closed, recovering or given up: sync() has nothing to wait for. */
  stopped(): boolean;
}

/** One LevelDB batch stays below this many bytes, whatever `maxRecords` allows. */
const MAX_BATCH_BYTES = 4 * 1024 * 1024;
const DEFAULT_MAX_PENDING_BYTES = 16 * 1024 * 1024;

/**
 * The group commit's timing: at most one LevelDB batch in flight; everything appended
 * meanwhile goes into the next one. While the journal is idle, the first append waits
 * `maxDelayMs` for company (0: until the current I/O callbacks have run). Above
 * `maxPendingBytes` waiting, the journal is saturated and sources stop reading.
 */
export class GroupCommit {
  /** Full batches waiting for the write in flight, oldest first; `pending` is the one filling. */
  private readonly ready: Pending[] = [];
  private pending = newPending();
  private pendingBytes = 0;
  private readonly maxPendingBytes: number;
  private readonly maxRecords: number;
  private readonly maxDelayMs: number;
  private readonly host: GroupCommitHost;
  private drainWaiters: (() => void)[] = [];
  private flushTimer: NodeJS.Timeout | null = null;
  private flushImmediate: NodeJS.Immediate | null = null;
  private writeIdleResolve: (() => void) | null = null;
  writing = false;
  /** Resolves when the writer goes idle (one promise for a run of back-to-back batches). */
  writeIdle: Promise<void> = Promise.resolve();
  /** The group commit in flight (resolved once it is over and its callbacks have run). */
  commitDone: Promise<void> = Promise.resolve();

  constructor(
    opts: { maxRecords: number; maxDelayMs: number },
    maxPendingBytes: number | undefined,
    host: GroupCommitHost,
  ) {
    this.maxRecords = opts.maxRecords;
    this.maxDelayMs = opts.maxDelayMs;
    this.maxPendingBytes = maxPendingBytes ?? DEFAULT_MAX_PENDING_BYTES;
    this.host = host;
  }

  add(body: Buffer, ts: number, cb: AppendCallback<unknown> | null, state: unknown): void {
    const size = body.length + ENTRY_HEADER_BYTES;
    let p = this.pending;
    if (p.bodies.length >= this.maxRecords || p.bytes + size > MAX_BATCH_BYTES) {
      if (p.bodies.length > 0) this.ready.push(p);
      p = this.pending = newPending();
    }
    p.bodies.push(body);
    p.ts.push(ts);
    p.cbs.push(cb);
    p.states.push(state);
    p.bytes += size;
    this.pendingBytes += size;
    if (this.writing) return;
    if (this.ready.length > 0) this.flush();
    else this.scheduleFlush();
  }

  get saturated(): boolean {
    return this.pendingBytes > this.maxPendingBytes;
  }

  whenUnsaturated(cb: () => void): void {
    if (this.pendingBytes <= this.maxPendingBytes / 2) process.nextTick(cb);
    else this.drainWaiters.push(cb);
  }

  private scheduleFlush(): void {
    if (this.flushTimer !== null || this.flushImmediate !== null) return;
    const delay = this.maxDelayMs;
    if (delay > 0) this.flushTimer = setTimeout(this.onFlushTimer, delay);
    else this.flushImmediate = setImmediate(this.onFlushTimer);
  }

  private readonly onFlushTimer = (): void => {
    this.flushTimer = null;
    this.flushImmediate = null;
    if (!this.writing) this.flush();
  };

  flush(): void {
    // One batch in flight, always: seqs are assigned at commit from lastSeq.
    if (this.writing || !this.host.canFlush()) return;
    this.stopTimers();
    let batch = this.ready.shift();
    if (batch === undefined) {
      batch = this.pending;
      if (batch.bodies.length === 0 && !this.host.hasCursorMoves()) return;
      this.pending = newPending();
    }
    this.writing = true;
    if (this.writeIdleResolve === null) {
      this.writeIdle = new Promise((resolve) => {
        this.writeIdleResolve = resolve;
      });
    }
    const done = (): void => this.afterCommit(batch);
    this.commitDone = this.host.commit(batch).then(done, done);
  }

  private afterCommit(batch: Pending): void {
    this.writing = false;
    this.pendingBytes -= batch.bytes;
    // What arrived during the write has waited long enough: commit it now. (Cursor moves alone
    // wait for their timer.)
    if (this.ready.length > 0 || this.pending.bodies.length > 0) this.flush();
    // Not writing again (nothing queued, or a recovery began): whoever waits for idle goes on.
    if (!this.writing) {
      const resolve = this.writeIdleResolve;
      this.writeIdleResolve = null;
      resolve?.();
    }
    // Last, and not inline: a waiter resumes a source, whose appends must find the writer busy.
    if (this.drainWaiters.length > 0 && this.pendingBytes <= this.maxPendingBytes / 2) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) process.nextTick(w);
    }
  }

  /** Refuses everything queued (a write failed: see Journal.startRecovery). */
  refuseQueued(err: Error): void {
    const queued = [...this.ready, this.pending];
    this.ready.length = 0;
    this.pending = newPending();
    for (const b of queued) {
      this.pendingBytes -= b.bytes;
      for (let i = 0; i < b.bodies.length; i++) b.cbs[i]?.(err, 0, b.states[i]);
    }
  }

  /** Resolves once everything appended so far is committed (or has failed). */
  async sync(): Promise<void> {
    for (;;) {
      if (this.writing) {
        await this.writeIdle;
        continue;
      }
      if (this.host.stopped()) return;
      if (this.ready.length === 0 && this.pending.bodies.length === 0 && !this.host.hasCursorMoves()) return;
      this.flush();
      if (!this.writing) return;
    }
  }

  stopTimers(): void {
    if (this.flushTimer !== null) clearTimeout(this.flushTimer);
    if (this.flushImmediate !== null) clearImmediate(this.flushImmediate);
    this.flushTimer = null;
    this.flushImmediate = null;
  }
}
