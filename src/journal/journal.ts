import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Level } from 'level';
import { JournalClosedError, JournalFullError, JournalWriteError } from '../core/errors.ts';
import { type Logger, ThrottledLog } from '../core/logger.ts';
import type { AppendCallback, ReadBatch, RecordAppender, RecordLog } from '../core/pipeline.ts';
import { encodeRecord, type RecordInput, type StoredRecord } from '../core/record.ts';
import { buildChunk, CHUNK_OVERHEAD_BYTES, chunkCumAfter, chunkCuts, ENTRY_HEADER_BYTES } from './chunk.ts';
import { CLOCK_JUMP_MS, type ClockShifts } from './clock-shifts.ts';
import { Cursors, type DirtyCursors } from './cursors.ts';
import { type DeadLetter, DeadLetterStore } from './dead-letters.ts';
import { DiskReaders } from './disk-readers.ts';
import { GroupCommit, type Pending } from './group-commit.ts';
import { chunkKey, META_CLOCK_SHIFTS, META_CUM_BYTES, META_NEXT_SEQ, seqValue } from './keys.ts';
import { migrateLegacyRecords } from './migrate.ts';
import { dbOptions, openDatabase, readOpenState } from './open.ts';
import { readFromDisk, tsOnDisk } from './reader.ts';
import { Retention } from './retention.ts';
import {
  type Db,
  type Ends,
  type JournalCounters,
  type JournalOptions,
  noop,
  type OpenState,
} from './state.ts';
import { TailCache } from './tail-cache.ts';

export type { DeadLetter, DeadLetterStats } from './dead-letters.ts';
export { MAX_DEAD_LETTER_PAGE } from './dead-letters.ts';
export { isDamaged, quarantine, tableBytesFor } from './open.ts';
export type { JournalCounters, JournalOptions } from './state.ts';

const RECOVERY_RETRY_MS = 1000;
const MIN_DEAD_LETTER_BYTES = 1024 * 1024;
const CLOCK_CHECK_MS = 1000;
const RECOVERING = new Error('the journal is reopening after a write error');
const CONCURRENT_FAILURE = new Error('another journal write failed meanwhile; the journal is reopening');

/**
 * The durable, ordered record log. One writer (group commit: group-commit.ts), many readers by
 * seq (reader.ts), named cursors that decide what may be trimmed (cursors.ts, retention.ts).
 * Each group commit is stored as one or more chunks (chunk.ts), one LevelDB value each.
 *
 * Invariants: committed records occupy exactly the seqs [firstSeq, lastSeq] with no holes; seqs
 * are never reused (the next seq is persisted in every batch, so trimming everything keeps it);
 * bytes = cum(lastSeq + 1) - cum(firstSeq), from ledger values, never by scanning.
 *
 * Events: 'commit' (lastSeq) after every group commit; 'writable' (false) when a failed write
 * starts a recovery, (true) when the reopened database takes writes again.
 */
export class Journal extends EventEmitter implements RecordAppender, RecordLog {
  readonly epoch: string;
  readonly path: string;
  readonly counters: JournalCounters = {
    appended: 0,
    committedBatches: 0,
    rejected: 0,
    writeErrors: 0,
    droppedFull: 0,
    droppedTtl: 0,
    corrupt: 0,
    quarantined: 0,
    deadLettered: 0,
    deadLettersDropped: 0,
    reopened: 0,
    clockJumps: 0,
  };

  private db: Db;
  /** Set while the database is being reopened after a failed write (see `startRecovery`). */
  private recovering: Promise<void> | null = null;
  /** close() was called: a recovery that cannot reopen gives up. */
  private closeRequested = false;
  /** The last recovery gave up: the database is closed and nothing is pending on it. */
  private unrecovered = false;
  /** Cuts the wait between two reopen attempts short at shutdown. */
  private recoveryAbort = new AbortController();
  private readonly opts: JournalOptions;
  private readonly log: Logger;
  private readonly ends: Ends;
  private readonly cursors: Cursors;
  private readonly group: GroupCommit;
  private readonly retention: Retention;
  private readonly deadLetters: DeadLetterStore;
  private clockShifts: ClockShifts;
  private readonly clock: { wall(): number; mono(): number };
  private clockTimer: NodeJS.Timeout | null = null;
  private lastWall = 0;
  private lastMono = 0;
  private readonly tail: TailCache;
  private readonly diskReaders = new DiskReaders();
  /** A full or failing disk fails every commit: one line a second says so, with a count. */
  private readonly writeErrorLog = new ThrottledLog();
  private closed = false;
  private trimTimer: NodeJS.Timeout | null = null;
  private trimming: Promise<void> = Promise.resolve();
  private ttlTimer: NodeJS.Timeout | null = null;

  private constructor(db: Db, opts: JournalOptions, log: Logger, state: OpenState) {
    super();
    this.db = db;
    this.opts = opts;
    this.log = log;
    this.path = opts.path;
    this.epoch = state.epoch;
    this.ends = {
      firstSeq: state.firstSeq,
      lastSeq: state.lastSeq,
      firstCum: state.firstCum,
      nextCum: state.nextCum,
      firstChunk: state.firstChunk,
    };
    this.clockShifts = state.clockShifts;
    this.clock = opts.clock ?? { wall: Date.now, mono: performance.now.bind(performance) };
    const write = <T>(op: (db: Db) => Promise<T>): Promise<T> => this.writeOp(op);
    this.group = new GroupCommit(opts.groupCommit, opts.maxPendingBytes, {
      commit: (batch) => this.commit(batch),
      canFlush: () => this.recovering === null,
      hasCursorMoves: () => this.cursors.hasMoves,
      stopped: () => this.recovering !== null || this.unrecovered || this.closed,
    });
    this.cursors = new Cursors(state.cursors, {
      write,
      closed: () => this.closed,
      writing: () => this.group.writing,
      commitDone: () => this.group.commitDone,
      flush: () => this.group.flush(),
      scheduleTrim: () => this.scheduleTrim(),
    });
    this.retention = new Retention({
      ends: this.ends,
      opts,
      counters: this.counters,
      log,
      db: () => this.db,
      write,
      dropped: (seq) => {
        this.tail.dropBefore(seq);
        if (this.clockShifts.prune(seq)) this.saveClockShifts();
      },
      offsetFor: (seq) => this.clockShifts.offsetFor(seq),
    });
    this.deadLetters = new DeadLetterStore(
      {
        db: () => this.db,
        usable: () => this.usable(),
        write,
        fsync: opts.fsync,
        now: () => this.clock.wall(),
        counters: this.counters,
      },
      opts.deadLetterMaxBytes ?? Math.max(MIN_DEAD_LETTER_BYTES, opts.maxBytes / 10),
      state.deadLetters,
      log,
    );
    // A reader that keeps up is a batch or two behind; more tail only holds memory (and, with
    // every sink down, holds it for nothing).
    this.tail = new TailCache(opts.tailRecords ?? 4096, opts.tailBytes ?? 4 * 1024 * 1024);
    // The tail holds only what this process commits; records already on disk are read from disk.
    this.tail.dropBefore(state.lastSeq + 1);
    this.counters.quarantined = state.quarantined;
  }

  /**
   * Opens (or creates) the journal at `opts.path` (see open.ts for the lock wait and the
   * quarantine of damaged files). A journal of the layout before chunks is migrated first
   * (migrate.ts).
   */
  static async open(opts: JournalOptions, log: Logger): Promise<Journal> {
    const { db, quarantined } = await openDatabase(opts, log);
    try {
      const migrated = await migrateLegacyRecords(db, log);
      const state = await readOpenState(db);
      state.quarantined = quarantined;
      const journal = new Journal(db, opts, log, state);
      journal.counters.corrupt += migrated.corrupt;
      journal.startTtlSweeps();
      return journal;
    } catch (err) {
      await db.close().catch(noop);
      throw new Error(`journal ${opts.path} could not be opened: ${(err as Error).message}`, { cause: err });
    }
  }

  // ---- append (the hot path) -------------------------------------------------------------

  append<S>(rec: RecordInput, cb: AppendCallback<S> | null, state: S): void {
    if (this.closed) {
      if (cb) process.nextTick(cb, new JournalClosedError(), 0, state);
      return;
    }
    if (this.recovering) {
      if (cb) process.nextTick(cb, new JournalWriteError(RECOVERING), 0, state);
      return;
    }
    this.group.add(encodeRecord(rec), rec.ts, cb as AppendCallback<unknown> | null, state);
  }

  /**
   * True while more than `maxPendingBytes` wait for commit. Sources stop reading new input
   * until `whenUnsaturated` calls back.
   */
  get saturated(): boolean {
    return this.group.saturated;
  }

  /** Calls `cb` once when the bytes waiting for commit fall to half the limit (or at once). */
  whenUnsaturated(cb: () => void): void {
    this.group.whenUnsaturated(cb);
  }

  /** Writes one group commit: its records as chunks, the ledger, and the cursor moves. */
  private async commit(batch: Pending): Promise<void> {
    const { bodies, ts } = batch;
    let accept = bodies.length;
    let cuts = chunkCuts(bodies, 0, accept);
    let cursors: DirtyCursors | null = null;
    let wb: ReturnType<Db['batch']> | null = null;
    const seq0 = this.ends.lastSeq + 1;
    let cum = this.ends.nextCum;
    try {
      const size = batchBytes(bodies, accept, cuts.length);
      if (this.bytes() + size > this.opts.maxBytes) {
        if (this.opts.onFull === 'drop-oldest') {
          // Inside the try: a failed drop fails this batch like a failed write (callbacks, recovery).
          await this.retention.dropOldest(this.bytes() + size - this.opts.maxBytes);
          cum = this.ends.nextCum;
        } else {
          // Accept the prefix that fits; refuse the rest (their sources send no ack).
          accept = this.fittingPrefix(bodies, cuts);
          cuts = chunkCuts(bodies, 0, accept);
          if (accept < bodies.length) {
            const err = new JournalFullError(this.opts.maxBytes);
            this.counters.rejected += bodies.length - accept;
            for (let i = accept; i < bodies.length; i++) batch.cbs[i]?.(err, 0, batch.states[i]);
          }
        }
      }
      cursors = this.cursors.take();
      if (accept === 0 && cursors.ops.length === 0) return;
      wb = this.db.batch();
      let from = 0;
      for (const to of cuts) {
        const c = buildChunk(bodies, ts, from, to, seq0 + from, cum);
        wb.put(chunkKey(seq0 + from), c);
        cum = chunkCumAfter(c);
        from = to;
      }
      if (accept > 0) {
        wb.put(META_NEXT_SEQ, seqValue(seq0 + accept));
        wb.put(META_CUM_BYTES, doubleValue(cum));
      }
      for (const op of cursors.ops) wb.put(op.key, op.value);
      await wb.write({ sync: this.opts.fsync });
      // Another write (a trim, a dead letter) failed while this batch waited behind it in
      // LevelDB: the batch may follow a torn log record that the reopen drops, so it is not
      // acknowledged. If it survives the reopen, its records are kept and a resend duplicates
      // them (at-least-once), never the other way round.
      if (this.recovering) throw CONCURRENT_FAILURE;
    } catch (cause) {
      await wb?.close().catch(noop);
      // Nothing of this batch is committed and no state moved: the next batch reuses these seqs,
      // so the log stays gap-free. Sources get the error and send no ack.
      this.counters.writeErrors++;
      const err = new JournalWriteError(cause);
      const suppressed = this.writeErrorLog.take();
      if (suppressed >= 0) {
        this.log.error(
          { err: (cause as Error).message, records: accept, suppressed },
          'journal group commit failed',
        );
      }
      for (let i = 0; i < accept; i++) batch.cbs[i]?.(err, 0, batch.states[i]);
      if (cursors) this.cursors.restore(cursors, err);
      this.startRecovery(cause);
      return;
    }
    for (const w of cursors.waiters) w.resolve();
    if (accept === 0) return;
    const e = this.ends;
    if (e.firstSeq > e.lastSeq) {
      e.firstSeq = seq0;
      e.firstCum = e.nextCum;
      e.firstChunk = seq0;
    }
    const last = seq0 + accept - 1;
    e.lastSeq = last;
    e.nextCum = cum;
    this.counters.appended += accept;
    this.counters.committedBatches++;
    for (let i = 0; i < accept; i++) this.tail.push({ seq: seq0 + i, ts: ts[i], body: bodies[i] });
    for (let i = 0; i < accept; i++) batch.cbs[i]?.(null, seq0 + i, batch.states[i]);
    this.emit('commit', last);
  }

  /** How many of `bodies` fit in what is left of the budget, chunk overheads counted. */
  private fittingPrefix(bodies: Buffer[], cuts: number[]): number {
    let room = this.opts.maxBytes - this.bytes();
    let from = 0;
    for (const to of cuts) {
      room -= CHUNK_OVERHEAD_BYTES;
      for (let i = from; i < to; i++) {
        room -= ENTRY_HEADER_BYTES + bodies[i].length;
        if (room < 0) return i;
      }
      from = to;
    }
    return bodies.length;
  }

  /**
   * After a failed write (a full disk, an I/O error) LevelDB's log may end in a torn record, and
   * LevelDB goes on appending after it: on the next open, the reader drops the rest of that log
   * block, acknowledged records included. So nothing more is written to this database: what is
   * queued is refused (sources send no ack), and the database is closed and reopened (a fresh
   * log) every RECOVERY_RETRY_MS until that succeeds, normally once space is back. Reads wait.
   */
  private startRecovery(cause: unknown): void {
    if (this.recovering) return;
    this.group.refuseQueued(new JournalWriteError(cause));
    if (this.closeRequested) {
      // Shutting down: nothing more can be saved; close() goes on without writing.
      this.unrecovered = true;
      this.cursors.forgetMoves();
      return;
    }
    this.log.error(
      { path: this.path, err: (cause as Error)?.message },
      'journal write failed: refusing records until the database is reopened',
    );
    this.recovering = this.recover().finally(() => {
      this.recovering = null;
      if (this.unrecovered) return;
      if (this.clockShifts.size > 0) this.saveClockShifts();
      this.emit('writable', true);
    });
    this.emit('writable', false);
  }

  private async recover(): Promise<void> {
    // A group commit in flight still uses the old database: let it end first.
    while (this.group.writing) await this.group.writeIdle;
    for (;;) {
      await this.diskReaders.closeAll();
      await this.db.close().catch(noop);
      if (this.closeRequested) {
        this.unrecovered = true;
        return;
      }
      const db: Db = new Level<Buffer, Buffer>(this.path, dbOptions(this.opts.maxBytes));
      try {
        await db.open();
        const state = await readOpenState(db);
        this.db = db;
        this.adoptState(state);
        this.counters.reopened++;
        this.log.info(
          { path: this.path, lastSeq: this.ends.lastSeq },
          'journal reopened after a write error',
        );
        return;
      } catch (err) {
        await db.close().catch(noop);
        const suppressed = this.writeErrorLog.take();
        if (suppressed >= 0) {
          this.log.error({ err: (err as Error).message, suppressed }, 'journal reopen failed, retrying');
        }
        if (this.closeRequested) {
          this.unrecovered = true;
          return;
        }
        await sleep(RECOVERY_RETRY_MS, undefined, { signal: this.recoveryAbort.signal }).catch(noop);
      }
    }
  }

  /**
   * Shutdown has begun: a recovery in progress stops retrying (its wait is cut short) and a
   * write failing from now on starts none, so nothing waits for space that may never return.
   * Records already refused stay unacknowledged; cursor moves not yet written are resent after
   * restart (at-least-once).
   */
  abandonRecovery(): void {
    this.closeRequested = true;
    this.recoveryAbort.abort();
  }

  /**
   * Runs a write other than a group commit (dead letters, cursor registration and removal,
   * range deletes, the clock ledger). It fails the way a group commit does: the journal goes into
   * recovery (a failed LevelDB write may have left a torn log tail) and the caller gets a
   * retryable JournalWriteError. While a recovery runs it fails at once, with the same error.
   */
  private async writeOp<T>(op: (db: Db) => Promise<T>): Promise<T> {
    if (this.closed) throw new JournalClosedError();
    if (this.recovering || this.unrecovered) throw new JournalWriteError(RECOVERING);
    let result: T;
    try {
      result = await op(this.db);
    } catch (cause) {
      if (this.closed) throw new JournalClosedError();
      this.counters.writeErrors++;
      const suppressed = this.writeErrorLog.take();
      if (suppressed >= 0)
        this.log.error({ err: (cause as Error).message, suppressed }, 'journal write failed');
      this.startRecovery(cause);
      throw new JournalWriteError(cause);
    }
    // Another write failed while this one was queued behind it in LevelDB: this one may sit
    // after a torn log record, which the reopen drops. Not done, as far as the caller knows.
    if (this.recovering || this.unrecovered) throw new JournalWriteError(CONCURRENT_FAILURE);
    return result;
  }

  /** Takes the reopened database's ends; cursors keep their (newer) positions and are rewritten. */
  private adoptState(state: OpenState): void {
    this.ends.firstSeq = state.firstSeq;
    this.ends.lastSeq = state.lastSeq;
    this.ends.firstCum = state.firstCum;
    this.ends.nextCum = state.nextCum;
    this.ends.firstChunk = state.firstChunk;
    this.deadLetters.adopt(state.deadLetters);
    // Not the reopened database's list: a jump seen during the recovery could not be saved
    // (writes are refused meanwhile), and memory holds every jump the disk does. Saved again
    // once the recovery is over.
    this.clockShifts.prune(state.firstSeq);
    this.tail.dropBefore(state.lastSeq + 1);
    this.cursors.rewriteAll();
  }

  /** False while the journal refuses records until its database is reopened after a write error. */
  get writable(): boolean {
    return this.recovering === null && !this.closed;
  }

  /** The database, once any recovery is over (for reads; a recovery at shutdown ends at once). */
  private async usable(): Promise<Db> {
    while (this.recovering) await this.recovering;
    return this.db;
  }

  // ---- reading ---------------------------------------------------------------------------

  /** Oldest retained seq; greater than `lastCommittedSeq` when the journal is empty. */
  get firstRetainedSeq(): number {
    return this.ends.firstSeq;
  }

  get lastCommittedSeq(): number {
    return this.ends.lastSeq;
  }

  /** Retained records. */
  get records(): number {
    return this.ends.lastSeq - this.ends.firstSeq + 1;
  }

  bytes(): number {
    return this.records > 0 ? this.ends.nextCum - this.ends.firstCum : 0;
  }

  get maxBytes(): number {
    return this.opts.maxBytes;
  }

  /** True while a wall-clock jump concerns retained records: their cutoffs differ by seq. */
  get clockJumpsKept(): boolean {
    return this.clockShifts.size > 0;
  }

  /**
   * Records older than this ts (ms) are expired; 0 without a TTL. With `seq`, the cutoff for
   * that record: moved by the wall-clock jumps since it was committed (clock-shifts.ts), so a
   * record taken before an NTP step is aged by the time it really spent here.
   */
  expiryCutoff(now = this.clock.wall(), seq?: number): number {
    if (!this.opts.ttlMs) return 0;
    const cutoff = now - this.opts.ttlMs;
    return seq === undefined || this.clockShifts.size === 0
      ? cutoff
      : cutoff - this.clockShifts.offsetFor(seq);
  }

  /**
   * Reads committed records with seq >= `fromSeq` (clamped to the oldest retained), at most
   * `maxRecords` and about `maxBytes` of bodies (at least one record). Served from memory when the
   * reader keeps up, from disk otherwise. Records of a chunk failing its checksum are counted and
   * skipped. `next` is where the next read continues: one past the last seq this read examined,
   * whether it returned that record or skipped it. A reader moves its position to `next - 1` even
   * when `records` is empty, and never further: records committed after the read are in the next
   * one.
   */
  async readBatch(fromSeq: number, maxRecords: number, maxBytes: number): Promise<ReadBatch> {
    const from = Math.max(fromSeq, this.ends.firstSeq);
    if (from > this.ends.lastSeq) return { records: [], next: from };
    if (this.tail.covers(from)) {
      const records: StoredRecord[] = [];
      this.tail.read(from, maxRecords, maxBytes, records);
      return { records, next: from + records.length };
    }
    const db = await this.usable();
    return readFromDisk(db, from, this.ends.lastSeq, maxRecords, maxBytes, this.diskReaders, this.counters);
  }

  /** Ingest ts of the record at `seq`, if retained: the age of a sink's oldest undelivered record. */
  async tsAt(seq: number): Promise<number | undefined> {
    if (seq < this.ends.firstSeq || seq > this.ends.lastSeq) return undefined;
    if (this.tail.covers(seq)) {
      const out: StoredRecord[] = [];
      this.tail.read(seq, 1, 1, out);
      return out[0]?.ts;
    }
    // Metrics and status ask this: they answer from memory, never wait for a recovery.
    if (this.recovering || this.unrecovered || this.closed) return undefined;
    return tsOnDisk(this.db, seq).catch(() => undefined);
  }

  // ---- cursors and trimming (cursors.ts, retention.ts) -----------------------------------

  /**
   * Registers a named cursor (a sink, a durable consumer). A new one starts at `initial`, by
   * default before the oldest retained record, so a newly configured sink receives what is
   * buffered. Returns its position: the last seq it is done with.
   */
  openCursor(name: string, initial = this.ends.firstSeq - 1): Promise<number> {
    return this.cursors.open(name, initial, this.ends.lastSeq);
  }

  cursor(name: string): number | undefined {
    return this.cursors.get(name);
  }

  cursorNames(): string[] {
    return this.cursors.names();
  }

  /**
   * Moves a cursor forward (never back). The new position is written with the next group commit
   * (or on its own shortly after when nothing is being appended); the promise resolves once it
   * is on disk. Trimming follows shortly after.
   */
  commitCursor(name: string, seq: number): Promise<void> {
    return this.cursors.commit(name, seq);
  }

  removeCursor(name: string): Promise<void> {
    return this.cursors.remove(name);
  }

  private scheduleTrim(): void {
    if (this.trimTimer !== null || this.closed) return;
    this.trimTimer = setTimeout(() => {
      this.trimTimer = null;
      this.trimming = this.trim().catch((err) => this.log.warn({ err: err.message }, 'journal trim failed'));
    }, 100);
  }

  /**
   * Drops the records every cursor has passed; a chunk leaves the disk once all of its records
   * are passed. Without cursors nothing is trimmed.
   */
  async trim(): Promise<void> {
    if (this.cursors.size === 0 || this.recovering || this.closed) return;
    const upTo = Math.min(this.cursors.min(), this.ends.lastSeq);
    if (upTo < this.ends.firstSeq) return;
    await this.retention.trimTo(upTo);
  }

  private startTtlSweeps(): void {
    this.lastWall = this.clock.wall();
    this.lastMono = this.clock.mono();
    this.clockTimer = setInterval(this.checkClock, CLOCK_CHECK_MS);
    this.clockTimer.unref();
    const ttl = this.opts.ttlMs;
    if (!ttl) return;
    const every = Math.max(50, Math.min(ttl / 10, 1000));
    this.ttlTimer = setInterval(() => {
      this.trimming = this.trimming.then(() => this.sweepExpired()).then(noop, noop);
    }, every);
    this.ttlTimer.unref();
  }

  /**
   * Compares the wall clock's progress with the monotonic clock's: a difference past
   * CLOCK_JUMP_MS is a jump (an NTP step, an operator's `date -s`), logged, counted and
   * remembered for the records kept so far (clock-shifts.ts).
   */
  private readonly checkClock = (): void => {
    const wall = this.clock.wall();
    const mono = this.clock.mono();
    const jump = wall - this.lastWall - (mono - this.lastMono);
    this.lastWall = wall;
    this.lastMono = mono;
    if (Math.abs(jump) < CLOCK_JUMP_MS) return;
    this.counters.clockJumps++;
    this.log.warn(
      { jumpMs: Math.round(jump), lastSeq: this.ends.lastSeq, records: this.records },
      'wall clock jumped: records kept so far are aged by the time they spent here',
    );
    if (this.records === 0) return;
    this.clockShifts.add(this.ends.lastSeq, jump);
    this.saveClockShifts();
  };

  /** Runs a clock check now (tests; the timer does it every second). */
  checkClockNow(): void {
    this.checkClock();
  }

  private saveClockShifts(): void {
    const value = this.clockShifts.encode();
    // Off the hot path and rare; a failure is a write failure like any other (recovery).
    this.writeOp((db) => db.put(META_CLOCK_SHIFTS, value)).catch(noop);
  }

  /** Drops records past their TTL: counted, and never read again. */
  async sweepExpired(): Promise<number> {
    const cutoff = this.expiryCutoff();
    if (cutoff === 0 || this.records === 0 || this.closed || this.recovering) return 0;
    return this.retention.sweepExpired(cutoff);
  }

  // ---- dead letters (dead-letters.ts) ----------------------------------------------------

  /**
   * Keeps records a sink's upstream refused for good, with the reason, within the dead letters'
   * own budget. A failed write rejects with a retryable JournalWriteError (and the journal
   * recovers): the caller tries again.
   */
  deadLetter(sink: string, records: readonly StoredRecord[], reason: string): Promise<void> {
    return this.deadLetters.add(sink, records, reason);
  }

  /** Dead letters `sink` keeps now (not the number ever dead-lettered). */
  async deadLetterCount(sink: string): Promise<number> {
    return this.deadLetters.count(sink);
  }

  /** Per sink, from memory: dead letters kept and their bytes on disk. */
  deadLetterSummary(): { sink: string; count: number; bytes: number }[] {
    return this.deadLetters.summary();
  }

  get deadLetterBytes(): number {
    return this.deadLetters.bytes;
  }

  get deadLetterBudget(): number {
    return this.deadLetters.maxBytes;
  }

  /**
   * Dead letters of `sink` numbered above `afterN`, oldest first, at most `limit` (1..1000), and
   * with `maxBodyBytes` none after the one whose body reaches that many bytes in all.
   */
  listDeadLetters(sink: string, limit: number, afterN = 0, maxBodyBytes?: number): Promise<DeadLetter[]> {
    return this.deadLetters.list(sink, limit, afterN, maxBodyBytes);
  }

  /** Deletes the dead letters of `sink` numbered `ns`; returns how many existed and went. */
  deleteDeadLetters(sink: string, ns: readonly number[]): Promise<number> {
    return this.deadLetters.delete(sink, ns);
  }

  // ---- lifecycle -------------------------------------------------------------------------

  /**
   * Resolves once everything appended so far is committed (or has failed). It does not wait
   * for a recovery: a recovery refuses what was queued, so nothing is left to commit but cursor
   * moves, which are written once the database is reopened.
   */
  sync(): Promise<void> {
    return this.group.sync();
  }

  /**
   * Commits what is pending, waits for the write in flight, and closes LevelDB. A recovery in
   * progress is abandoned (see abandonRecovery), so close never waits for disk space.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.abandonRecovery();
    await this.sync();
    if (this.recovering) await this.recovering;
    this.closed = true;
    this.group.stopTimers();
    this.cursors.stopTimer();
    if (this.trimTimer) clearTimeout(this.trimTimer);
    if (this.ttlTimer) clearInterval(this.ttlTimer);
    if (this.clockTimer) clearInterval(this.clockTimer);
    await this.trimming;
    await this.retention.idle();
    await this.deadLetters.idle();
    await this.diskReaders.closeAll();
    if (this.unrecovered) await this.db.close().catch(noop);
    else await this.db.close();
  }
}

/** What a group commit of `count` records in `chunks` chunks adds to the journal's bytes. */
function batchBytes(bodies: Buffer[], count: number, chunks: number): number {
  let n = chunks * CHUNK_OVERHEAD_BYTES + count * ENTRY_HEADER_BYTES;
  for (let i = 0; i < count; i++) n += bodies[i].length;
  return n;
}

function doubleValue(n: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeDoubleBE(n, 0);
  return b;
}
