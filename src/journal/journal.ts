import { JournalClosedError, JournalWriteError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { AppendCallback, ReadBatch, RecordAppender, RecordLog } from '../core/pipeline.ts';
import { encodeRecord, type RecordInput, type StoredRecord } from '../core/record.ts';
import { ClockWatch } from './clock-watch.ts';
import { type CommitHost, commitBatch } from './commit.ts';
import { Cursors } from './cursors.ts';
import { JournalDeadLetters } from './dead-letter-api.ts';
import { DeadLetterStore } from './dead-letters.ts';
import { DiskReaders } from './disk-readers.ts';
import { GroupCommit } from './group-commit.ts';
import { migrateLegacyRecords } from './migrate.ts';
import { openDatabase, readOpenState } from './open.ts';
import { readFromDisk, tsOnDisk } from './reader.ts';
import { JournalDb, RECOVERING } from './recovery.ts';
import { Retention } from './retention.ts';
import {
  type Db,
  type Ends,
  endsOf,
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

const MIN_DEAD_LETTER_BYTES = 1024 * 1024;

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
export class Journal extends JournalDeadLetters implements RecordAppender, RecordLog {
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

  /** The LevelDB handle, its write path and its recovery after a failed write. */
  private readonly store: JournalDb;
  private readonly commitHost: CommitHost;
  private readonly opts: JournalOptions;
  private readonly ends: Ends;
  private readonly cursors: Cursors;
  private readonly group: GroupCommit;
  private readonly retention: Retention;
  protected readonly deadLetters: DeadLetterStore;
  /** The wall clock's jumps (for TTL) and the TTL sweeps. */
  private readonly clockWatch: ClockWatch;
  private readonly tail: TailCache;
  private readonly diskReaders = new DiskReaders();
  private closed = false;

  private constructor(db: Db, opts: JournalOptions, log: Logger, state: OpenState) {
    super();
    this.opts = opts;
    this.path = opts.path;
    this.epoch = state.epoch;
    this.ends = endsOf(state);
    this.clockWatch = new ClockWatch(state.clockShifts, opts.clock, opts.ttlMs, {
      counters: this.counters,
      log,
      lastSeq: () => this.ends.lastSeq,
      records: () => this.records,
      write: (op) => this.store.write(op),
      sweep: () => this.retention.scheduleSweep(),
    });
    this.store = new JournalDb(db, {
      path: opts.path,
      maxBytes: opts.maxBytes,
      log,
      counters: this.counters,
      closed: () => this.closed,
      refuseQueued: (err) => this.group.refuseQueued(err),
      forgetMoves: () => this.cursors.forgetMoves(),
      writerIdle: async () => {
        while (this.group.writing) await this.group.writeIdle;
      },
      closeReaders: () => this.diskReaders.closeAll(),
      adopt: (state) => this.adoptState(state),
      writableChanged: (writable) => {
        if (writable && this.clockWatch.shifts.size > 0) this.clockWatch.save();
        this.emit('writable', writable);
      },
    });
    const write = <T>(op: (db: Db) => Promise<T>): Promise<T> => this.store.write(op);
    this.group = new GroupCommit(opts.groupCommit, opts.maxPendingBytes, {
      commit: (batch) => commitBatch(this.commitHost, batch),
      canFlush: () => this.store.recovering === null,
      hasCursorMoves: () => this.cursors.hasMoves,
      stopped: () => !this.store.healthy || this.closed,
    });
    this.cursors = new Cursors(state.cursors, {
      write,
      closed: () => this.closed,
      writing: () => this.group.writing,
      commitDone: () => this.group.commitDone,
      flush: () => this.group.flush(),
      scheduleTrim: () => this.retention.scheduleTrim(),
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
        this.clockWatch.prune(seq);
      },
      offsetFor: (seq) => this.clockWatch.shifts.offsetFor(seq),
      expiryCutoff: () => this.expiryCutoff(),
      cursorMin: () => this.cursors.min(),
      closed: () => this.closed,
      recovering: () => this.store.recovering !== null,
    });
    this.deadLetters = new DeadLetterStore(
      {
        db: () => this.db,
        usable: () => this.store.usable(),
        write,
        fsync: opts.fsync,
        now: () => this.clockWatch.clock.wall(),
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
    this.commitHost = {
      ends: this.ends,
      opts,
      counters: this.counters,
      log,
      store: this.store,
      retention: this.retention,
      cursors: this.cursors,
      tail: this.tail,
      bytes: () => this.bytes(),
      committed: (lastSeq) => this.emit('commit', lastSeq),
    };
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
      journal.clockWatch.start();
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
    if (this.store.recovering) {
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

  /**
   * Shutdown has begun: a recovery in progress stops retrying (its wait is cut short) and a
   * write failing from now on starts none, so nothing waits for space that may never return.
   * Records already refused stay unacknowledged; cursor moves not yet written are resent after
   * restart (at-least-once).
   */
  abandonRecovery(): void {
    this.store.abandonRecovery();
  }

  /** Takes the reopened database's ends; cursors keep their (newer) positions and are rewritten. */
  private adoptState(state: OpenState): void {
    Object.assign(this.ends, endsOf(state));
    this.deadLetters.adopt(state.deadLetters);
    // Not the reopened database's list: a jump seen during the recovery could not be saved
    // (writes are refused meanwhile), and memory holds every jump the disk does. Saved again
    // once the recovery is over.
    this.clockWatch.shifts.prune(state.firstSeq);
    this.tail.dropBefore(state.lastSeq + 1);
    this.cursors.rewriteAll();
  }

  /** False while the journal refuses records until its database is reopened after a write error. */
  get writable(): boolean {
    return this.store.recovering === null && !this.closed;
  }

  /** The current database (tests reach it to inject failures). */
  private get db(): Db {
    return this.store.db;
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
    return this.clockWatch.shifts.size > 0;
  }

  /**
   * Records older than this ts (ms) are expired; 0 without a TTL. With `seq`, the cutoff for
   * that record: moved by the wall-clock jumps since it was committed (clock-shifts.ts), so a
   * record taken before an NTP step is aged by the time it really spent here.
   */
  expiryCutoff(now = this.clockWatch.clock.wall(), seq?: number): number {
    return this.clockWatch.expiryCutoff(now, seq);
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
    const db = await this.store.usable();
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
    if (!this.store.healthy || this.closed) return undefined;
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

  /**
   * Drops the records every cursor has passed; a chunk leaves the disk once all of its records
   * are passed. Without cursors nothing is trimmed.
   */
  trim(): Promise<void> {
    return this.retention.trim();
  }

  /** Runs a clock check now (tests; the timer does it every second). */
  checkClockNow(): void {
    this.clockWatch.check();
  }

  /** Drops records past their TTL: counted, and never read again. */
  sweepExpired(): Promise<number> {
    return this.retention.sweepExpired();
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
    if (this.store.recovering) await this.store.recovering;
    this.closed = true;
    this.group.stopTimers();
    this.cursors.stopTimer();
    this.clockWatch.stop();
    await this.retention.stop();
    await this.deadLetters.idle();
    await this.diskReaders.closeAll();
    await this.store.close();
  }
}
