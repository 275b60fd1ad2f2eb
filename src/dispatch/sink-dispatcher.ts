import { backoffDelay, type RetryPolicy } from '../core/backoff.ts';
import { SinkAuthError, SinkSendError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { OutboundBatch, ReadBatch, Sink } from '../core/pipeline.ts';
import { RecordFieldSpans, type StoredRecord } from '../core/record.ts';
import { TopicRouter } from '../core/topic-filter.ts';
import type { DeadLetter, Journal } from '../journal/journal.ts';

export interface DispatchOptions {
  routes: readonly string[];
  batch: { maxRecords: number; maxBytes: number; lingerMs: number };
  retry: RetryPolicy;
  /** Deadline of one upstream call. */
  timeoutMs: number;
  /** Up with a backlog and no progress for this long = stalled. */
  stallAfterMs?: number;
}

/**
 * `backoff`: the upstream failed retryably (or a journal write the loop needs failed) and the
 * loop waits before trying again; `auth-failing`: the same wait, because the upstream refused
 * the sink's credentials; `stopped`: only after stop().
 */
export type SinkState = 'starting' | 'up' | 'backoff' | 'auth-failing' | 'stalled' | 'stopped';

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
  /** Dead letters sent again by replayDeadLetters and acknowledged (then deleted). */
  replayed: number;
}

export interface ReplayResult {
  /** Dead letters the upstream acknowledged, now deleted. */
  replayed: number;
  /** Whether the sink still has dead letters (refused again, or beyond the limit). */
  remaining: boolean;
}

interface ReplayRequest {
  limit: number;
  resolve: (r: ReplayResult) => void;
  reject: (err: Error) => void;
}

/** journal.listDeadLetters takes at most this many at once. */
const DEAD_LETTER_PAGE = 1000;
/**
 * And a replay reads about this much body at once (or one sink batch, if larger): a page of 1000
 * big dead letters (records refused for their size) would hold up to the whole dead-letter budget.
 */
const DEAD_LETTER_PAGE_BYTES = 4 * 1024 * 1024;

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
/** A failed call that lasted this share of the deadline or more ran out of time. */
const DEADLINE_REACHED = 0.9;

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
    replayed: 0,
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
  private stopping: Promise<void> | null = null;
  /** Set by stop(): deliver what is committed, then end. */
  private draining = false;
  /** Set when the grace time is over: abandon the batch in flight (it stays undelivered). */
  private halted = false;
  private inflight: AbortController | null = null;
  private wake: (() => void) | null = null;
  /**
   * New commits (and replay requests) wake only an idle loop: a linger sleep is there to gather
   * records and a backoff sleep to spare the upstream. stop() cuts any sleep short.
   */
  private idle = false;
  /** A replayDeadLetters call waiting for the loop to be between batches. */
  private replayRequest: ReplayRequest | null = null;
  private readonly spans = new RecordFieldSpans();
  /** Records per upstream call: batch.maxRecords, less after calls that ran out their deadline. */
  private sendLimit: number;

  constructor(sink: Sink, journal: Journal, opts: DispatchOptions, log: Logger) {
    this.sink = sink;
    this.journal = journal;
    this.opts = opts;
    this.log = log;
    this.router = new TopicRouter(opts.routes);
    this.cursorName = `sink/${sink.name}`;
    this.sendLimit = opts.batch.maxRecords;
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
    this.loop = this.runUntilStopped();
  }

  /**
   * Sends up to `limit` of this sink's dead letters again, oldest first, in batches of the sink's
   * size, and deletes each one the upstream acknowledged. Records keep their seq, so their ids
   * are the original ones. Runs inside the delivery loop between two of its batches (never
   * beside one of its sends); while the loop backs off on a failing upstream it is refused,
   * also when the loop goes into backoff after it was asked for (see refuseWaitingReplay).
   * A batch refused again stays dead-lettered (not written twice); a retryable failure ends the
   * replay early, leaving the rest for a later call.
   */
  replayDeadLetters(limit: number): Promise<ReplayResult> {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      return Promise.reject(new RangeError(`limit must be an integer >= 1 (got ${limit})`));
    }
    if (this.draining || this.state === 'starting' || this.state === 'stopped') {
      return Promise.reject(new Error(`sink ${this.sink.name} is not running`));
    }
    if (this.replayRequest) {
      return Promise.reject(new Error(`a replay of sink ${this.sink.name} is already waiting`));
    }
    // A replay waits for the loop to be between batches; a loop backing off on a failing upstream
    // may stay there for hours, and the operator's request with it: refuse it now instead.
    if (this.state === 'backoff' || this.state === 'auth-failing') {
      return Promise.reject(
        new Error(
          `sink ${this.sink.name} is in ${this.state} (${this.lastError ?? 'failing'}): replay once it is up`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      this.replayRequest = { limit, resolve, reject };
      if (this.idle) this.wakeUp();
    });
  }

  /**
   * Stops taking new records, delivers what is committed for up to `graceMs`, then abandons the
   * batch in flight (it stays behind the cursor and is sent after restart). A second call waits
   * for the first.
   */
  stop(graceMs: number): Promise<void> {
    this.stopping ??= this.doStop(graceMs);
    return this.stopping;
  }

  private async doStop(graceMs: number): Promise<void> {
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

  /**
   * The loop ends only by stop(): any other failure (a journal write it cannot do without, a bug)
   * is logged, waited out with backoff, and the loop starts again from its cursor, which only
   * ever passed acknowledged or dead-lettered records. Never rejects.
   */
  private async runUntilStopped(): Promise<void> {
    let failures = 0;
    while (!this.halted) {
      const at = this.cursor;
      try {
        await this.run();
        break;
      } catch (err) {
        if (this.halted) break;
        if (this.cursor > at) failures = 0;
        const msg = describe(err);
        this.lastError = `delivery loop failed: ${msg}`;
        const delay = backoffDelay(this.opts.retry, failures++);
        if (this.state !== 'backoff') {
          this.log.error(
            { sink: this.sink.name, err: msg, retryInMs: Math.round(delay) },
            'sink delivery loop failed; resuming from its cursor after a backoff',
          );
        }
        this.state = 'backoff';
        if (failures > 1) this.refuseWaitingReplay();
        await this.sleep(delay);
      }
    }
    const pending = this.replayRequest;
    this.replayRequest = null;
    pending?.reject(new Error(`sink ${this.sink.name} stopped before the replay ran`));
  }

  private async run(): Promise<void> {
    const { maxRecords, maxBytes, lingerMs } = this.opts.batch;
    // The batch after the one in flight, read while the upstream works (a backlog drains at
    // the pace of the slower of the two, not of both added up).
    let prefetched: Promise<ReadBatch> | null = null;
    let prefetchedFrom = 0;
    while (!this.halted) {
      if (this.replayRequest !== null) await this.serveReplay();
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
          // Caught up: whatever failure held the loop back is over.
          if (this.state === 'backoff' || this.state === 'auth-failing') this.markUp(0);
          // Asked for while the loop was busy (it wakes only an idle loop): serve it now.
          if (this.replayRequest !== null) continue;
          this.idle = true;
          await this.sleep(null);
          this.idle = false;
          if (this.replayRequest !== null) continue;
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

  /**
   * Drops expired records and those no route matches; keeps journal order. Returns `records`
   * itself when all of them stay (the common case: no copy).
   */
  private select(records: StoredRecord[]): StoredRecord[] {
    const journal = this.journal;
    // The cutoff of the batch's oldest record is the lowest of the batch, clock jumps included
    // (Journal.expiryCutoff): a batch younger than it skips the per-record TTL check.
    const now = Date.now();
    const lowest = journal.expiryCutoff(now, records[0].seq);
    const perRecord = lowest !== 0 && journal.clockJumpsKept;
    const router = this.router;
    const n = records.length;
    let i = 0;
    while (
      i < n &&
      (perRecord ? records[i].ts >= journal.expiryCutoff(now, records[i].seq) : records[i].ts >= lowest) &&
      router.matchesRecord(records[i].body)
    ) {
      i++;
    }
    if (i === n) return records;
    const out = records.slice(0, i);
    for (; i < n; i++) {
      const r = records[i];
      if (r.ts < (perRecord ? journal.expiryCutoff(now, r.seq) : lowest)) this.counters.expired++;
      else if (router.matchesRecord(r.body)) out.push(r);
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

  /**
   * Sends until every record is acknowledged or dead-lettered (true), or until halted (false).
   * A sink may report that the front of the batch got through before a failure (`acked`) and
   * that a final failure concerns only some records (`refused`): the rest goes on.
   *
   * A call that ran out its deadline halves the records of the next one: over a link too slow to
   * carry a full batch within `timeoutMs` (a 4G upload under a 1 MiB batch), resending the same
   * batch would time out forever while the journal fills. An acknowledged call that took less
   * than half the deadline doubles the size again, up to `batch.maxRecords`: the doubled call
   * should still fit, so a slow link settles on one size instead of failing every other call.
   */
  private async deliver(records: StoredRecord[]): Promise<boolean> {
    const epoch = this.journal.epoch;
    let rest = records;
    let attempt = 0;
    while (!this.halted) {
      const sent = rest.length > this.sendLimit ? rest.slice(0, this.sendLimit) : rest;
      const started = performance.now();
      const err = await this.attempt({ epoch, records: sent });
      const took = performance.now() - started;
      if (err === null) {
        this.countDelivered(sent.length);
        this.markUp(attempt);
        if (this.sendLimit < this.opts.batch.maxRecords && took < this.opts.timeoutMs / 2) {
          this.sendLimit = Math.min(this.opts.batch.maxRecords, this.sendLimit * 2);
        }
        if (sent.length === rest.length) return true;
        rest = rest.slice(sent.length);
        attempt = 0;
        continue;
      }
      if (this.halted) return false;
      const e = err as Error;
      this.lastError = describe(err);
      const se = err instanceof SinkSendError ? err : null;
      const acked = se ? Math.min(se.acked, sent.length) : 0;
      if (acked > 0) {
        this.countDelivered(acked);
        if (acked === rest.length) return true;
        rest = rest.slice(acked);
        attempt = 0;
        if (acked === sent.length) continue;
      }
      const unacked = sent.length - acked;
      if (se !== null && !se.retryable) {
        const k = Math.max(1, Math.min(se.refused ?? unacked, unacked));
        if (!(await this.deadLetter(k === rest.length ? rest : rest.slice(0, k), e.message))) return false;
        if (k === rest.length) return true;
        rest = rest.slice(k);
        attempt = 0;
        continue;
      }
      // The sink's own deadline (gRPC's, undici's) may end the call a little before ours.
      if (unacked > 1 && took >= this.opts.timeoutMs * DEADLINE_REACHED) {
        this.sendLimit = Math.ceil(unacked / 2);
      }
      this.counters.retries++;
      const delay = backoffDelay(this.opts.retry, attempt++, se?.retryAfterMs);
      const next = err instanceof SinkAuthError ? 'auth-failing' : 'backoff';
      // One line per change of state, not per attempt: an upstream down for an hour is one line.
      if (this.state !== next) {
        this.log.warn(
          { sink: this.sink.name, err: e.message, code: se?.code, retryInMs: Math.round(delay) },
          next === 'auth-failing'
            ? 'upstream refused the sink credentials, retrying with backoff'
            : 'sink send failed, backing off',
        );
      }
      this.state = next;
      if (attempt > 1) this.refuseWaitingReplay();
      await this.sleep(delay);
    }
    return false;
  }

  /**
   * A replay asked for while the sink was up waits for the loop to be between batches, and
   * waits out one retry of the batch in flight; once the same work fails again the loop is
   * backing off and could stay there as long as the upstream fails: the replay is refused then,
   * as replayDeadLetters refuses one asked for during a backoff (held, it also refused every
   * later replay as "already waiting" and ran long after its caller had gone).
   */
  private refuseWaitingReplay(): void {
    const req = this.replayRequest;
    if (req === null) return;
    this.replayRequest = null;
    req.reject(
      new Error(
        `sink ${this.sink.name} is in ${this.state} (${this.lastError ?? 'failing'}): replay once it is up`,
      ),
    );
  }

  /** One call of the sink under the deadline: null when acknowledged, else what it threw. */
  private async attempt(batch: OutboundBatch): Promise<unknown> {
    const ac = new AbortController();
    this.inflight = ac;
    const timer = setTimeout(
      () => ac.abort(new Error(`deadline of ${this.opts.timeoutMs} ms exceeded`)),
      this.opts.timeoutMs,
    );
    try {
      await this.sink.send(batch, ac.signal);
      return null;
    } catch (err) {
      return err ?? new Error('sink send failed');
    } finally {
      clearTimeout(timer);
      this.inflight = null;
    }
  }

  private countDelivered(n: number): void {
    this.counters.delivered += n;
    this.counters.deliveredBatches++;
    this.lastSuccessAt = Date.now();
  }

  private markUp(afterAttempts: number): void {
    if (this.state !== 'up') {
      this.log.info({ sink: this.sink.name, after: afterAttempts }, 'sink is up again');
      this.state = 'up';
    }
    this.lastError = null;
  }

  /**
   * Writes refused records to the dead-letter space. A failed write (the journal recovering from
   * a full disk) is retried with backoff rather than ending the loop: the records stay behind the
   * cursor meanwhile. True once written, false if halted first.
   */
  private async deadLetter(records: readonly StoredRecord[], reason: string): Promise<boolean> {
    for (let attempt = 0; !this.halted; attempt++) {
      try {
        await this.journal.deadLetter(this.sink.name, records, reason);
      } catch (err) {
        if (this.halted) return false;
        const msg = describe(err);
        this.lastError = `dead-letter write failed: ${msg}`;
        const delay = backoffDelay(this.opts.retry, attempt);
        if (this.state !== 'backoff') {
          this.log.warn(
            { sink: this.sink.name, err: msg, records: records.length, retryInMs: Math.round(delay) },
            'dead-letter write failed, retrying with backoff',
          );
        }
        this.state = 'backoff';
        if (attempt > 0) this.refuseWaitingReplay();
        await this.sleep(delay);
        continue;
      }
      this.counters.deadLettered += records.length;
      this.log.warn(
        { sink: this.sink.name, records: records.length, firstSeq: records[0].seq, reason },
        'upstream refused batch: dead-lettered',
      );
      if (attempt > 0) {
        this.markUp(attempt);
        this.lastError = reason;
      }
      return true;
    }
    return false;
  }

  private async serveReplay(): Promise<void> {
    const req = this.replayRequest;
    this.replayRequest = null;
    if (req === null) return;
    try {
      req.resolve(await this.replay(req.limit));
    } catch (err) {
      req.reject(err instanceof Error ? err : new Error(describe(err)));
    }
  }

  private async replay(limit: number): Promise<ReplayResult> {
    const name = this.sink.name;
    let replayed = 0;
    let kept = 0;
    let afterN = 0;
    let early = false;
    while (!early && !this.halted && replayed + kept < limit) {
      const page = await this.journal.listDeadLetters(
        name,
        Math.min(DEAD_LETTER_PAGE, limit - replayed - kept),
        afterN,
        Math.max(DEAD_LETTER_PAGE_BYTES, this.opts.batch.maxBytes),
      );
      if (page.length === 0) break;
      afterN = page[page.length - 1].n;
      let i = 0;
      while (i < page.length && !this.halted) {
        const j = this.replayBatchEnd(page, i);
        const err = await this.attempt({ epoch: this.journal.epoch, records: this.toRecords(page, i, j) });
        if (err === null) {
          replayed += await this.dropReplayed(page, i, j);
          i = j;
          continue;
        }
        if (this.halted) break;
        const se = err instanceof SinkSendError ? err : null;
        const acked = se ? Math.min(se.acked, j - i) : 0;
        if (acked > 0) replayed += await this.dropReplayed(page, i, i + acked);
        i += acked;
        if (i >= j) continue;
        if (se !== null && !se.retryable) {
          // Refused again: left where it is, not dead-lettered a second time.
          const k = Math.max(1, Math.min(se.refused ?? j - i, j - i));
          kept += k;
          i += k;
          continue;
        }
        this.lastError = `dead-letter replay: ${describe(err)}`;
        early = true;
        break;
      }
    }
    const remaining = (await this.journal.listDeadLetters(name, 1)).length > 0;
    this.log.info(
      { sink: name, replayed, refusedAgain: kept, stoppedEarly: early, remaining },
      'dead letters replayed',
    );
    return { replayed, remaining };
  }

  /** End (exclusive) of the replay batch starting at `from`: the sink's record and byte limits. */
  private replayBatchEnd(page: DeadLetter[], from: number): number {
    const { maxRecords, maxBytes } = this.opts.batch;
    let bytes = page[from].body.length;
    let j = from + 1;
    while (j < page.length && j - from < maxRecords && bytes + page[j].body.length <= maxBytes) {
      bytes += page[j].body.length;
      j++;
    }
    return j;
  }

  private toRecords(page: DeadLetter[], from: number, to: number): StoredRecord[] {
    const out: StoredRecord[] = [];
    for (let k = from; k < to; k++) {
      const l = page[k];
      out.push({ seq: l.seq, ts: this.spans.scan(l.body).ts, body: l.body });
    }
    return out;
  }

  private async dropReplayed(page: DeadLetter[], from: number, to: number): Promise<number> {
    const ns: number[] = [];
    for (let k = from; k < to; k++) ns.push(page[k].n);
    await this.journal.deleteDeadLetters(this.sink.name, ns);
    this.counters.replayed += ns.length;
    return ns.length;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function noop(): void {}
