import { SinkSendError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { ReadBatch, Sink } from '../core/pipeline.ts';
import { readTopic, type StoredRecord } from '../core/record.ts';
import { TopicRouter } from '../core/topic-filter.ts';
import type { Journal } from '../journal/journal.ts';
import { backoffDelay, type RetryPolicy } from './backoff.ts';

export interface DispatchOptions {
  routes: readonly string[];
  batch: { maxRecords: number; maxBytes: number; lingerMs: number };
  retry: RetryPolicy;
  /** Deadline of one upstream call. */
  timeoutMs: number;
  /** Up with a backlog and no progress for this long = stalled. */
  stallAfterMs?: number;
}

export type SinkState = 'starting' | 'up' | 'backoff' | 'stalled' | 'stopped';

export interface SinkCounters {
  /** Records the upstream acknowledged. */
  delivered: number;
  deliveredBatches: number;
  /** Failed attempts that will be retried. */
  retries: number;
  deadLettered: number;
  /** Records past their TTL, skipped and never sent. */
  expired: number;
  /** Records walked past because no route matched. */
  filtered: number;
}

export interface SinkStatus {
  name: string;
  type: string;
  state: SinkState;
  /** Last seq this sink is done with. */
  cursor: number;
  /** Records between the cursor and the newest committed record. */
  backlog: number;
  lastError: string | null;
  lastSuccessAt: number | null;
  /** Records per second delivered, smoothed over about ten seconds. */
  drainRate: number;
  counters: SinkCounters;
}

const RATE_TICK_MS = 1000;
const RATE_ALPHA = 0.2;

/**
 * One delivery loop per sink: read from the sink's cursor in batches, keep what its routes
 * match, send, and advance the cursor only after the upstream acknowledged (at-least-once, in
 * journal order). Retryable failures back off and resend the same batch; non-retryable ones
 * dead-letter it and move on, so poison data never blocks the sink.
 */
export class SinkDispatcher {
  readonly sink: Sink;
  readonly counters: SinkCounters = {
    delivered: 0,
    deliveredBatches: 0,
    retries: 0,
    deadLettered: 0,
    expired: 0,
    filtered: 0,
  };
  private readonly journal: Journal;
  private readonly opts: DispatchOptions;
  private readonly log: Logger;
  private readonly router: TopicRouter;
  private readonly cursorName: string;
  private cursor = 0;
  private state: SinkState = 'starting';
  private lastError: string | null = null;
  private lastSuccessAt: number | null = null;
  private lastProgressAt = Date.now();
  private drainRate = 0;
  private deliveredAtTick = 0;
  private rateTimer: NodeJS.Timeout | null = null;
  private loop: Promise<void> = Promise.resolve();
  /** Set by stop(): deliver what is committed, then end. */
  private draining = false;
  /** Set when the grace time is over: abandon the batch in flight (it stays undelivered). */
  private halted = false;
  private inflight: AbortController | null = null;
  private wake: (() => void) | null = null;
  /** Only an idle loop is woken by new commits; a backoff or linger sleep runs its course. */
  private idle = false;

  constructor(sink: Sink, journal: Journal, opts: DispatchOptions, log: Logger) {
    this.sink = sink;
    this.journal = journal;
    this.opts = opts;
    this.log = log;
    this.router = new TopicRouter(opts.routes);
    this.cursorName = `sink/${sink.name}`;
  }

  static cursorNameOf(sinkName: string): string {
    return `sink/${sinkName}`;
  }

  async start(): Promise<void> {
    this.cursor = await this.journal.openCursor(this.cursorName);
    this.journal.on('commit', this.onCommit);
    this.rateTimer = setInterval(this.tickRate, RATE_TICK_MS);
    this.rateTimer.unref();
    this.state = 'up';
    this.loop = this.run().catch((err) => {
      this.log.error({ sink: this.sink.name, err: (err as Error).message }, 'sink dispatcher failed');
      this.state = 'stopped';
    });
  }

  /**
   * Stops taking new records, delivers what is committed for up to `graceMs`, then abandons the
   * batch in flight (it stays behind the cursor and is sent after restart).
   */
  async stop(graceMs: number): Promise<void> {
    this.draining = true;
    this.wakeUp();
    const timer = setTimeout(() => {
      this.halted = true;
      this.inflight?.abort(new Error('shutdown'));
      this.wakeUp();
    }, graceMs);
    await this.loop;
    clearTimeout(timer);
    this.journal.off('commit', this.onCommit);
    if (this.rateTimer) clearInterval(this.rateTimer);
    this.state = 'stopped';
    await this.sink.close();
  }

  status(now = Date.now()): SinkStatus {
    const backlog = Math.max(
      0,
      this.journal.lastCommittedSeq - Math.max(this.cursor, this.journal.firstRetainedSeq - 1),
    );
    let state = this.state;
    const stallAfter = this.opts.stallAfterMs ?? 60_000;
    if (state === 'up' && backlog > 0 && now - this.lastProgressAt > stallAfter) state = 'stalled';
    return {
      name: this.sink.name,
      type: this.sink.type,
      state,
      cursor: this.cursor,
      backlog,
      lastError: this.lastError,
      lastSuccessAt: this.lastSuccessAt,
      drainRate: Math.round(this.drainRate),
      counters: { ...this.counters },
    };
  }

  get position(): number {
    return this.cursor;
  }

  private readonly onCommit = (): void => {
    if (this.idle) this.wakeUp();
  };

  private readonly tickRate = (): void => {
    const delta = this.counters.delivered - this.deliveredAtTick;
    this.deliveredAtTick = this.counters.delivered;
    this.drainRate = this.drainRate * (1 - RATE_ALPHA) + (delta * 1000 * RATE_ALPHA) / RATE_TICK_MS;
  };

  private wakeUp(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private sleep(ms: number | null): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === null ? null : setTimeout(() => this.wakeUp(), ms);
      this.wake = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    const { maxRecords, maxBytes, lingerMs } = this.opts.batch;
    // The batch after the one in flight, read while the upstream works (a backlog drains at
    // the pace of the slower of the two, not of both added up).
    let prefetched: Promise<ReadBatch> | null = null;
    let prefetchedFrom = 0;
    while (!this.halted) {
      const from = this.cursor + 1;
      let batch: ReadBatch;
      if (prefetched !== null && prefetchedFrom === from) {
        const p = prefetched;
        prefetched = null;
        const got = await this.readOrWait(p);
        if (got === null) continue;
        batch = got;
      } else {
        prefetched = null;
        const available = this.journal.lastCommittedSeq - from + 1;
        if (available <= 0) {
          if (this.draining) return;
          this.idle = true;
          await this.sleep(null);
          this.idle = false;
          // Idle is not a stall: the clock for "no progress" starts when work arrives.
          this.lastProgressAt = Date.now();
          if (lingerMs > 0 && !this.draining && this.journal.lastCommittedSeq - this.cursor < maxRecords) {
            await this.sleep(lingerMs);
          }
          continue;
        }
        const got = await this.readOrWait(this.journal.readBatch(from, maxRecords, maxBytes));
        if (got === null) continue;
        batch = got;
      }
      // The journal says how far it looked: past records that failed their checksum (counted
      // there), never past what it has not read.
      const done = batch.next - 1;
      if (batch.records.length === 0) {
        if (done > this.cursor) this.advance(done);
        continue;
      }
      if (this.journal.lastCommittedSeq > done && !this.draining) {
        prefetchedFrom = batch.next;
        prefetched = this.journal.readBatch(prefetchedFrom, maxRecords, maxBytes);
        // Awaited on the next turn; a failure then stops the loop like any read failure.
        prefetched.catch(noop);
      }
      const sendable = this.select(batch.records);
      if (sendable.length > 0 && !(await this.deliver(sendable))) return;
      this.advance(done);
    }
  }

  /**
   * A journal read that failed (the database reopening after a write error closed it under the
   * read) is not the sink's end: wait a little and read again from the cursor.
   */
  private async readOrWait(read: Promise<ReadBatch>): Promise<ReadBatch | null> {
    try {
      return await read;
    } catch (err) {
      this.lastError = `journal read failed: ${(err as Error).message}`;
      this.log.warn({ sink: this.sink.name, err: (err as Error).message }, 'journal read failed, retrying');
      await this.sleep(this.opts.retry.minMs);
      return null;
    }
  }

  /** Drops expired records and those no route matches; keeps journal order. */
  private select(records: StoredRecord[]): StoredRecord[] {
    const cutoff = this.journal.expiryCutoff();
    if (this.router.matchesAll && (cutoff === 0 || records[0].ts >= cutoff)) return records;
    const out: StoredRecord[] = [];
    for (const r of records) {
      if (r.ts < cutoff) this.counters.expired++;
      else if (this.router.matchesAll || this.router.matches(readTopic(r.body))) out.push(r);
      else this.counters.filtered++;
    }
    return out;
  }

  private advance(seq: number): void {
    this.cursor = seq;
    this.lastProgressAt = Date.now();
    // Persisted with the next group commit; not awaited, so the next batch goes out meanwhile.
    // A crash before it is written resends what it covered (at-least-once).
    this.journal.commitCursor(this.cursorName, seq).catch(this.onCursorError);
  }

  private readonly onCursorError = (err: Error): void => {
    this.log.warn(
      { sink: this.sink.name, err: err.message },
      'sink cursor not persisted; retried with the next commit',
    );
  };

  /** Sends until acknowledged or dead-lettered (true), or until halted (false). */
  private async deliver(records: StoredRecord[]): Promise<boolean> {
    const batch = { epoch: this.journal.epoch, records };
    for (let attempt = 0; !this.halted; attempt++) {
      const ac = new AbortController();
      this.inflight = ac;
      const timer = setTimeout(
        () => ac.abort(new Error(`deadline of ${this.opts.timeoutMs} ms exceeded`)),
        this.opts.timeoutMs,
      );
      try {
        await this.sink.send(batch, ac.signal);
        this.counters.delivered += records.length;
        this.counters.deliveredBatches++;
        this.lastSuccessAt = Date.now();
        if (this.state !== 'up') {
          this.log.info({ sink: this.sink.name, after: attempt }, 'sink is up again');
          this.state = 'up';
        }
        this.lastError = null;
        return true;
      } catch (err) {
        if (this.halted) return false;
        const e = err as Error;
        this.lastError = e.message;
        if (err instanceof SinkSendError && !err.retryable) {
          await this.journal.deadLetter(this.sink.name, records, e.message);
          this.counters.deadLettered += records.length;
          this.log.warn(
            { sink: this.sink.name, records: records.length, firstSeq: records[0].seq, reason: e.message },
            'upstream refused batch: dead-lettered',
          );
          return true;
        }
        this.counters.retries++;
        const retryAfter = err instanceof SinkSendError ? err.retryAfterMs : undefined;
        const delay = backoffDelay(this.opts.retry, attempt, retryAfter);
        if (this.state !== 'backoff') {
          this.log.warn(
            { sink: this.sink.name, err: e.message, retryInMs: Math.round(delay) },
            'sink send failed, backing off',
          );
        }
        this.state = 'backoff';
        await this.sleep(delay);
      } finally {
        clearTimeout(timer);
        this.inflight = null;
      }
    }
    return false;
  }
}

function noop(): void {}
