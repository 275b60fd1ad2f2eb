import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdirSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Level } from 'level';
import { JournalClosedError, JournalFullError, JournalWriteError } from '../core/errors.ts';
import { type Logger, ThrottledLog } from '../core/logger.ts';
import type { AppendCallback, ReadBatch, RecordAppender, RecordLog } from '../core/pipeline.ts';
import { encodeRecord, type RecordInput, type StoredRecord } from '../core/record.ts';
import { CLOCK_JUMP_MS, ClockShifts } from './clock-shifts.ts';
import {
  type DeadLetter,
  type DeadLetterStats,
  DeadLetterStore,
  readDeadLetterStats,
} from './dead-letters.ts';
import { DiskReaders } from './disk-readers.ts';
import {
  CURSORS_GTE,
  CURSORS_LT,
  cursorKey,
  META_CLOCK_SHIFTS,
  META_CUM_BYTES,
  META_EPOCH,
  META_NEXT_SEQ,
  RECORD_KEY_BYTES,
  RECORDS_GTE,
  RECORDS_LT,
  readSeq,
  recordKey,
  seqOfRecordKey,
  seqValue,
} from './keys.ts';

export type { DeadLetter, DeadLetterStats } from './dead-letters.ts';
export { MAX_DEAD_LETTER_PAGE } from './dead-letters.ts';

import { TailCache } from './tail-cache.ts';
import { sealValue, VALUE_HEADER_BYTES, valueBody, valueCum, valueIntact, valueTs } from './value.ts';

export interface JournalOptions {
  path: string;
  /** Disk budget: record keys plus values. */
  maxBytes: number;
  onFull: 'drop-oldest' | 'reject';
  /** Records older than this (ms) are dropped and never read again. */
  ttlMs?: number;
  /** Make every group commit a synchronous (fsync'd) LevelDB write: survives power loss. */
  fsync: boolean;
  /**
   * A group commit takes at most `maxRecords` records. While the journal is idle, the first
   * append waits `maxDelayMs` for company (0: until the current I/O callbacks have run); while a
   * write is in flight, appends wait for it and go in the next batch.
   */
  groupCommit: { maxRecords: number; maxDelayMs: number };
  /**
   * Bytes appended but not yet committed above which the journal reports `saturated` and sources
   * stop reading their inputs (TCP back-pressure to publishers), so a flood cannot grow memory.
   */
  maxPendingBytes?: number;
  /** How long to wait for another process's LevelDB lock (a rolling update on one hostPath). */
  lockWaitMs: number;
  /** In-memory tail for sinks that keep up. */
  tailRecords?: number;
  tailBytes?: number;
  /**
   * Disk budget of the dead letters (keys and values), apart from `maxBytes`: past it the oldest
   * are dropped and counted. Default: a tenth of `maxBytes`, at least 1 MiB.
   */
  deadLetterMaxBytes?: number;
  /**
   * The clocks TTL ages records by. Tests pass their own to jump the wall clock; changing the
   * machine's clock would disturb everything else running on it.
   */
  clock?: { wall(): number; mono(): number };
}

/** Counters read by the metrics collector at scrape time: the hot path only increments fields. */
export interface JournalCounters {
  appended: number;
  committedBatches: number;
  rejected: number;
  writeErrors: number;
  droppedFull: number;
  droppedTtl: number;
  corrupt: number;
  quarantined: number;
  deadLettered: number;
  /** Dead letters dropped, oldest first, to keep them within `deadLetterMaxBytes`. */
  deadLettersDropped: number;
  /** Reopens of the database after a failed write. */
  reopened: number;
  /** Wall-clock jumps seen (TTL ages records across them: see clock-shifts.ts). */
  clockJumps: number;
}

interface Pending {
  values: Buffer[];
  ts: number[];
  cbs: (AppendCallback<unknown> | null)[];
  states: unknown[];
  bytes: number;
}

function newPending(): Pending {
  return { values: [], ts: [], cbs: [], states: [], bytes: 0 };
}

type Db = Level<Buffer, Buffer>;

/**
 * LevelDB's table options, sized for how little of the journal's files ends up in RSS. LevelDB
 * reads its tables through mmap, so every page a read, a trim or a compaction touched counts in
 * the daemon's RSS for as long as its table stays open: in the table cache (`maxOpenFiles` - 10
 * tables) or under an iterator. A memtable flush becomes one table of the memtable's size (the
 * keys only grow, so LevelDB moves each flush whole to a deeper level); compactions write tables
 * of `maxFileSize`. With LevelDB's defaults (4 MiB memtables, 2 MiB tables, 1000 open files)
 * draining a 1 000 000-record backlog left 40-50 MB of table pages mapped; with these, 21-38 MB,
 * and no loss in ingest rate (bench/README.md, Memory). Compaction tables grow with the disk
 * budget, so a full journal stays around TABLES_PER_BUDGET files.
 */
function dbOptions(maxBytes: number) {
  return {
    keyEncoding: 'buffer',
    valueEncoding: 'buffer',
    writeBufferSize: 1024 * 1024,
    maxFileSize: tableBytesFor(maxBytes),
    // LevelDB's minimum: 64 tables in its cache.
    maxOpenFiles: 74,
  } as const;
}

/** LevelDB's table size for a disk budget: a power of two, 64 KiB to 2 MiB (LevelDB's default). */
export function tableBytesFor(maxBytes: number): number {
  const bytes = 2 ** Math.round(Math.log2(Math.max(1, maxBytes / TABLES_PER_BUDGET)));
  return Math.min(MAX_TABLE_BYTES, Math.max(MIN_TABLE_BYTES, bytes));
}
const TABLES_PER_BUDGET = 4096;
const MIN_TABLE_BYTES = 64 * 1024;
const MAX_TABLE_BYTES = 2 * 1024 * 1024;
const DROP_CHUNK_FRACTION = 0.05;
/** One LevelDB batch stays below this many bytes, whatever `maxRecords` allows. */
const MAX_BATCH_BYTES = 4 * 1024 * 1024;
const DEFAULT_MAX_PENDING_BYTES = 16 * 1024 * 1024;
const RECOVERY_RETRY_MS = 1000;
const MIN_DEAD_LETTER_BYTES = 1024 * 1024;
const CLOCK_CHECK_MS = 1000;
const RECOVERING = new Error('the journal is reopening after a write error');
const CONCURRENT_FAILURE = new Error('another journal write failed meanwhile; the journal is reopening');
/** Records and body bytes one disk nextv() may return. */
const READ_STEP_RECORDS = 1000;
const MAX_READ_STEP_BYTES = 8 * 1024 * 1024;
/** A cursor move waits this long for a group commit to ride on before it is written alone. */
const CURSOR_FLUSH_MS = 20;

/**
 * The durable, ordered record log. One writer (group commit: at most one LevelDB batch in
 * flight; everything appended meanwhile goes into the next one), many readers by seq, named
 * cursors that decide what may be trimmed.
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
  private firstSeq: number;
  private lastSeq: number;
  private firstCum: number;
  private nextCum: number;
  private readonly cursors = new Map<string, number>();
  /** Cursor moves not yet on disk, and who waits for them; written with the next group commit. */
  private dirtyCursors = new Set<string>();
  private cursorWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
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
  /** Full batches waiting for the write in flight, oldest first; `pending` is the one filling. */
  private readonly ready: Pending[] = [];
  private pending = newPending();
  private pendingBytes = 0;
  private readonly maxPendingBytes: number;
  private drainWaiters: (() => void)[] = [];
  private writing = false;
  private flushTimer: NodeJS.Timeout | null = null;
  private flushImmediate: NodeJS.Immediate | null = null;
  private cursorTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private writeIdle: Promise<void> = Promise.resolve();
  private writeIdleResolve: (() => void) | null = null;
  /** The group commit in flight (resolved once it is over and its callbacks have run). */
  private commitDone: Promise<void> = Promise.resolve();
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
    this.firstSeq = state.firstSeq;
    this.lastSeq = state.lastSeq;
    this.firstCum = state.firstCum;
    this.nextCum = state.nextCum;
    for (const [k, v] of state.cursors) this.cursors.set(k, v);
    this.clockShifts = state.clockShifts;
    this.clock = opts.clock ?? { wall: Date.now, mono: performance.now.bind(performance) };
    this.deadLetters = new DeadLetterStore(
      {
        db: () => this.db,
        usable: () => this.usable(),
        write: (op) => this.writeOp(op),
        fsync: opts.fsync,
        now: () => this.clock.wall(),
        counters: this.counters,
      },
      opts.deadLetterMaxBytes ?? Math.max(MIN_DEAD_LETTER_BYTES, opts.maxBytes / 10),
      state.deadLetters,
      log,
    );
    this.maxPendingBytes = opts.maxPendingBytes ?? DEFAULT_MAX_PENDING_BYTES;
    // A reader that keeps up is a batch or two behind; more tail only holds memory (and, with
    // every sink down, holds it for nothing).
    this.tail = new TailCache(opts.tailRecords ?? 4096, opts.tailBytes ?? 4 * 1024 * 1024);
    // The tail holds only what this process commits; records already on disk are read from disk.
    this.tail.dropBefore(state.lastSeq + 1);
    this.counters.quarantined = state.quarantined;
  }

  /**
   * Opens (or creates) the journal at `opts.path`. A held lock is waited for up to
   * `lockWaitMs`; a database that cannot be opened for corruption or torn files is moved aside
   * (into `<path>/corrupt-<time>/`) and a fresh one started, so the daemon comes up instead of
   * crash-looping. Any other failure to open (a full or read-only disk, EIO, EMFILE) is an
   * error: moving a healthy backlog aside would not fix it.
   */
  static async open(opts: JournalOptions, log: Logger): Promise<Journal> {
    let quarantined = 0;
    const deadline = Date.now() + opts.lockWaitMs;
    let lockLogged = false;
    for (;;) {
      mkdirSync(opts.path, { recursive: true });
      const db: Db = new Level<Buffer, Buffer>(opts.path, dbOptions(opts.maxBytes));
      try {
        await db.open();
      } catch (err) {
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        if (cause?.code === 'LEVEL_LOCKED') {
          if (Date.now() >= deadline) {
            throw new Error(
              `journal ${opts.path} is locked by another process (waited ${opts.lockWaitMs} ms)`,
              {
                cause: err,
              },
            );
          }
          if (!lockLogged) log.warn({ path: opts.path }, 'journal is locked by another process, waiting');
          lockLogged = true;
          await sleep(250);
          continue;
        }
        if (isDamaged(cause) && quarantined === 0) {
          const aside = quarantine(opts.path, Date.now());
          quarantined++;
          log.error(
            { path: opts.path, movedTo: aside, reason: cause?.message },
            'journal could not be opened; moved aside, starting a fresh one',
          );
          continue;
        }
        throw new Error(
          `journal ${opts.path} could not be opened: ${cause?.message ?? (err as Error).message}`,
          {
            cause: err,
          },
        );
      }
      const state = await readOpenState(db);
      state.quarantined = quarantined;
      const journal = new Journal(db, opts, log, state);
      journal.startTtlSweeps();
      return journal;
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
    const value = encodeRecord(rec, VALUE_HEADER_BYTES);
    const size = value.length + RECORD_KEY_BYTES;
    let p = this.pending;
    if (p.values.length >= this.opts.groupCommit.maxRecords || p.bytes + size > MAX_BATCH_BYTES) {
      if (p.values.length > 0) this.ready.push(p);
      p = this.pending = newPending();
    }
    p.values.push(value);
    p.ts.push(rec.ts);
    p.cbs.push(cb as AppendCallback<unknown> | null);
    p.states.push(state);
    p.bytes += size;
    this.pendingBytes += size;
    if (this.writing) return;
    if (this.ready.length > 0) this.flush();
    else this.scheduleFlush();
  }

  /**
   * True while more than `maxPendingBytes` wait for commit. Sources stop reading new input
   * until `whenUnsaturated` calls back.
   */
  get saturated(): boolean {
    return this.pendingBytes > this.maxPendingBytes;
  }

  /** Calls `cb` once when the bytes waiting for commit fall to half the limit (or at once). */
  whenUnsaturated(cb: () => void): void {
    if (this.pendingBytes <= this.maxPendingBytes / 2) process.nextTick(cb);
    else this.drainWaiters.push(cb);
  }

  private scheduleFlush(): void {
    if (this.flushTimer !== null || this.flushImmediate !== null) return;
    const delay = this.opts.groupCommit.maxDelayMs;
    if (delay > 0) this.flushTimer = setTimeout(this.onFlushTimer, delay);
    else this.flushImmediate = setImmediate(this.onFlushTimer);
  }

  private readonly onFlushTimer = (): void => {
    this.flushTimer = null;
    this.flushImmediate = null;
    if (!this.writing) this.flush();
  };

  private flush(): void {
    // One batch in flight, always: seqs are assigned at commit from lastSeq.
    if (this.writing || this.recovering) return;
    if (this.flushTimer !== null) {
      clearTimeout(this.flushTimer);
      this.flushTimer = null;
    }
    if (this.flushImmediate !== null) {
      clearImmediate(this.flushImmediate);
      this.flushImmediate = null;
    }
    let batch = this.ready.shift();
    if (batch === undefined) {
      batch = this.pending;
      if (batch.values.length === 0 && this.dirtyCursors.size === 0) return;
      this.pending = newPending();
    }
    this.writing = true;
    // One promise for a run of back-to-back batches: it resolves when the writer goes idle.
    if (this.writeIdleResolve === null) {
      this.writeIdle = new Promise((resolve) => {
        this.writeIdleResolve = resolve;
      });
    }
    const done = (): void => this.afterCommit(batch);
    this.commitDone = this.commit(batch).then(done, done);
  }

  private afterCommit(batch: Pending): void {
    this.writing = false;
    this.pendingBytes -= batch.bytes;
    // What arrived during the write has waited long enough: commit it now. (Cursor moves alone
    // wait for their timer.)
    if (this.ready.length > 0 || this.pending.values.length > 0) this.flush();
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

  private async commit(batch: Pending): Promise<void> {
    let accept = batch.values.length;
    let cursors: DirtyCursors | null = null;
    let wb: ReturnType<Db['batch']> | null = null;
    const seq0 = this.lastSeq + 1;
    let cum = this.nextCum;
    try {
      if (this.bytes() + batch.bytes > this.opts.maxBytes) {
        if (this.opts.onFull === 'drop-oldest') {
          // Inside the try: a failed drop fails this batch like a failed write (callbacks, recovery).
          await this.dropOldest(this.bytes() + batch.bytes - this.opts.maxBytes);
          cum = this.nextCum;
        } else {
          // Accept the prefix that fits; refuse the rest (their sources send no ack).
          let room = this.opts.maxBytes - this.bytes();
          accept = 0;
          while (accept < batch.values.length && batch.values[accept].length + RECORD_KEY_BYTES <= room) {
            room -= batch.values[accept].length + RECORD_KEY_BYTES;
            accept++;
          }
          if (accept < batch.values.length) {
            const err = new JournalFullError(this.opts.maxBytes);
            this.counters.rejected += batch.values.length - accept;
            for (let i = accept; i < batch.values.length; i++) batch.cbs[i]?.(err, 0, batch.states[i]);
          }
        }
      }
      cursors = this.takeDirtyCursors();
      if (accept === 0 && cursors.ops.length === 0) return;
      const last = seq0 + accept - 1;
      // A chained batch: each put goes straight into LevelDB's WriteBatch. An array of
      // { type, key, value } objects costs the main thread 0.7-1.2 µs a record in napi property
      // reads, against 0.3-0.4 µs this way (1000-record batches of 240 B, standalone).
      wb = this.db.batch();
      for (let i = 0; i < accept; i++) {
        const v = batch.values[i];
        sealValue(v, cum, batch.ts[i]);
        cum += v.length + RECORD_KEY_BYTES;
        wb.put(recordKey(seq0 + i), v);
      }
      if (accept > 0) {
        wb.put(META_NEXT_SEQ, seqValue(last + 1));
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
      if (cursors) {
        for (const name of cursors.names) if (this.cursors.has(name)) this.dirtyCursors.add(name);
        for (const w of cursors.waiters) w.reject(err);
      }
      this.startRecovery(cause);
      return;
    }
    for (const w of cursors.waiters) w.resolve();
    if (accept === 0) return;
    if (this.firstSeq > this.lastSeq) {
      this.firstSeq = seq0;
      this.firstCum = this.nextCum;
    }
    const last = seq0 + accept - 1;
    this.lastSeq = last;
    this.nextCum = cum;
    this.counters.appended += accept;
    this.counters.committedBatches++;
    for (let i = 0; i < accept; i++) {
      const v = batch.values[i];
      this.tail.push({ seq: seq0 + i, ts: batch.ts[i], body: valueBody(v) });
    }
    for (let i = 0; i < accept; i++) batch.cbs[i]?.(null, seq0 + i, batch.states[i]);
    this.emit('commit', last);
  }

  private takeDirtyCursors(): DirtyCursors {
    const names = [...this.dirtyCursors];
    this.dirtyCursors.clear();
    const waiters = this.cursorWaiters;
    this.cursorWaiters = [];
    const ops = names.map((name) => ({
      type: 'put' as const,
      key: cursorKey(name),
      value: seqValue(this.cursors.get(name) ?? 0),
    }));
    return { names, ops, waiters };
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
    const err = new JournalWriteError(cause);
    const queued = [...this.ready, this.pending];
    this.ready.length = 0;
    this.pending = newPending();
    for (const b of queued) {
      this.pendingBytes -= b.bytes;
      for (let i = 0; i < b.values.length; i++) b.cbs[i]?.(err, 0, b.states[i]);
    }
    if (this.closeRequested) {
      // Shutting down: nothing more can be saved; close() goes on without writing.
      this.unrecovered = true;
      this.dirtyCursors.clear();
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
    while (this.writing) await this.writeIdle;
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
        this.log.info({ path: this.path, lastSeq: this.lastSeq }, 'journal reopened after a write error');
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
    this.firstSeq = state.firstSeq;
    this.lastSeq = state.lastSeq;
    this.firstCum = state.firstCum;
    this.nextCum = state.nextCum;
    this.deadLetters.adopt(state.deadLetters);
    // Not the reopened database's list: a jump seen during the recovery could not be saved
    // (writes are refused meanwhile), and memory holds every jump the disk does. Saved again
    // once the recovery is over.
    this.clockShifts.prune(state.firstSeq);
    this.tail.dropBefore(state.lastSeq + 1);
    for (const name of this.cursors.keys()) this.dirtyCursors.add(name);
    if (this.dirtyCursors.size > 0 && this.cursorTimer === null) {
      this.cursorTimer = setTimeout(this.onCursorTimer, CURSOR_FLUSH_MS);
    }
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
    return this.firstSeq;
  }

  get lastCommittedSeq(): number {
    return this.lastSeq;
  }

  /** Retained records. */
  get records(): number {
    return this.lastSeq - this.firstSeq + 1;
  }

  bytes(): number {
    return this.records > 0 ? this.nextCum - this.firstCum : 0;
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
   * reader keeps up, from disk otherwise. Records failing their checksum are counted and skipped.
   * `next` is where the next read continues: one past the last seq this read examined, whether it
   * returned that record or skipped it. A reader moves its position to `next - 1` even when
   * `records` is empty, and never further: records committed after the read are in the next one.
   */
  async readBatch(fromSeq: number, maxRecords: number, maxBytes: number): Promise<ReadBatch> {
    const records: StoredRecord[] = [];
    const from = Math.max(fromSeq, this.firstSeq);
    if (from > this.lastSeq) return { records, next: from };
    if (this.tail.covers(from)) {
      this.tail.read(from, maxRecords, maxBytes, records);
      return { records, next: from + records.length };
    }
    const db = await this.usable();
    const now = Date.now();
    let reader = this.diskReaders.take(from, db, now);
    if (reader === undefined) {
      const step = Math.min(READ_STEP_RECORDS, maxRecords);
      reader = {
        db,
        it: db.iterator({
          gte: recordKey(from),
          lte: recordKey(this.lastSeq),
          // classic-level ends a nextv() once 16 KiB are read (about 60 records of 200 B): a
          // batch of 1000 took 17 thread-pool round trips, one per loop turn, and under a QoS 0
          // flood a sink reading from disk got one batch per 40-150 ms. One nextv() per step.
          highWaterMarkBytes:
            Math.min(maxBytes, MAX_READ_STEP_BYTES) + step * (RECORD_KEY_BYTES + VALUE_HEADER_BYTES),
        }),
        nextSeq: from,
        lastSeq: this.lastSeq,
        pending: [],
        createdAt: now,
        idleSince: now,
      };
    }
    let ended = false;
    try {
      let bytes = 0;
      fill: while (records.length < maxRecords && bytes < maxBytes) {
        let entries = reader.pending;
        reader.pending = [];
        if (entries.length === 0) {
          entries = await reader.it.nextv(Math.min(READ_STEP_RECORDS, maxRecords - records.length));
          if (entries.length === 0) {
            ended = true;
            break;
          }
        }
        for (let i = 0; i < entries.length; i++) {
          const [key, value] = entries[i];
          if (!valueIntact(value)) {
            this.counters.corrupt++;
            reader.nextSeq = seqOfRecordKey(key) + 1;
            continue;
          }
          const body = valueBody(value);
          // Same rule as the memory path: stop before going over, but always return one record.
          if (records.length >= maxRecords || (records.length > 0 && bytes + body.length > maxBytes)) {
            reader.pending = entries.slice(i);
            break fill;
          }
          const seq = seqOfRecordKey(key);
          records.push({ seq, ts: valueTs(value), body });
          bytes += body.length;
          reader.nextSeq = seq + 1;
        }
      }
    } catch (err) {
      ended = true;
      throw err;
    } finally {
      // A reader that reached the end of its snapshot is done, whether or not its iterator has
      // said so yet: kept, it would answer the next read with nothing although newer records
      // are committed. The next read opens one on the current state.
      ended ||= reader.pending.length === 0 && reader.nextSeq > reader.lastSeq;
      if (ended) await reader.it.close().catch(noop);
      else this.diskReaders.put(reader, now);
    }
    packBodies(records);
    // A reader that ended has looked at every key of its snapshot, up to its lastSeq.
    return { records, next: ended ? Math.max(reader.nextSeq, reader.lastSeq + 1) : reader.nextSeq };
  }

  /** Ingest ts of the record at `seq`, if retained: the age of a sink's oldest undelivered record. */
  async tsAt(seq: number): Promise<number | undefined> {
    if (seq < this.firstSeq || seq > this.lastSeq) return undefined;
    if (this.tail.covers(seq)) {
      const out: StoredRecord[] = [];
      this.tail.read(seq, 1, 1, out);
      return out[0]?.ts;
    }
    // Metrics and status ask this: they answer from memory, never wait for a recovery.
    if (this.recovering || this.unrecovered || this.closed) return undefined;
    try {
      const v = await this.db.get(recordKey(seq));
      return v && valueIntact(v) ? valueTs(v) : undefined;
    } catch {
      return undefined;
    }
  }

  get maxBytes(): number {
    return this.opts.maxBytes;
  }

  // ---- cursors and trimming --------------------------------------------------------------

  /**
   * Registers a named cursor (a sink, a durable consumer). A new one starts at `initial`, by
   * default before the oldest retained record, so a newly configured sink receives what is
   * buffered. Returns its position: the last seq it is done with.
   */
  async openCursor(name: string, initial = this.firstSeq - 1): Promise<number> {
    const existing = this.cursors.get(name);
    if (existing !== undefined) return existing;
    const pos = Math.max(0, Math.min(initial, this.lastSeq));
    await this.writeOp((db) => db.put(cursorKey(name), seqValue(pos)));
    this.cursors.set(name, pos);
    return pos;
  }

  cursor(name: string): number | undefined {
    return this.cursors.get(name);
  }

  cursorNames(): string[] {
    return [...this.cursors.keys()];
  }

  /**
   * Moves a cursor forward (never back). The new position is written with the next group commit
   * (or on its own after CURSOR_FLUSH_MS when nothing is being appended), so a sink advancing
   * after every batch costs no LevelDB write of its own; the promise resolves once it is on
   * disk. Trimming follows shortly after.
   */
  commitCursor(name: string, seq: number): Promise<void> {
    const cur = this.cursors.get(name);
    if (cur !== undefined && seq <= cur) return Promise.resolve();
    if (this.closed) return Promise.reject(new JournalClosedError());
    this.cursors.set(name, seq);
    this.dirtyCursors.add(name);
    const done = new Promise<void>((resolve, reject) => this.cursorWaiters.push({ resolve, reject }));
    // Not a write of its own right away: that would hold up the records arriving meanwhile.
    if (this.cursorTimer === null) this.cursorTimer = setTimeout(this.onCursorTimer, CURSOR_FLUSH_MS);
    this.scheduleTrim();
    return done;
  }

  async removeCursor(name: string): Promise<void> {
    if (!this.cursors.delete(name)) return;
    this.dirtyCursors.delete(name);
    // A batch in flight may still write its old position: delete after it. Only that one: the
    // batches built from now on no longer carry the cursor, and under steady ingest the writer
    // never goes idle (waiting for sync() hung a consumer delete as long as devices published).
    if (this.writing) await this.commitDone;
    try {
      await this.writeOp((db) => db.del(cursorKey(name)));
    } finally {
      // Gone from memory either way; a key left on disk comes back at the next start, where
      // whoever removed it (stale sink, expired consumer) removes it again.
      this.scheduleTrim();
    }
  }

  private readonly onCursorTimer = (): void => {
    this.cursorTimer = null;
    if (this.dirtyCursors.size === 0) return;
    // A batch in flight was built before these moves: try again after it.
    if (this.writing) this.cursorTimer = setTimeout(this.onCursorTimer, CURSOR_FLUSH_MS);
    else this.flush();
  };

  private scheduleTrim(): void {
    if (this.trimTimer !== null || this.closed) return;
    this.trimTimer = setTimeout(() => {
      this.trimTimer = null;
      this.trimming = this.trim().catch((err) => this.log.warn({ err: err.message }, 'journal trim failed'));
    }, 100);
  }

  /** Deletes records every cursor has passed. Without cursors nothing is trimmed. */
  async trim(): Promise<void> {
    if (this.cursors.size === 0 || this.recovering || this.closed) return;
    let min = Number.POSITIVE_INFINITY;
    for (const v of this.cursors.values()) min = Math.min(min, v);
    const upTo = Math.min(min, this.lastSeq);
    if (upTo < this.firstSeq) return;
    await this.deleteBefore(upTo + 1);
  }

  /**
   * Removes [firstSeq, seq) in one range delete, then moves the ledger's first position: a
   * delete that fails leaves the position (and the bytes count) where the records still are.
   */
  private async deleteBefore(seq: number): Promise<number> {
    const from = this.firstSeq;
    if (seq <= from) return 0;
    const newFirstCum = seq > this.lastSeq ? this.nextCum : await this.cumAt(seq);
    await this.writeOp((db) => db.clear({ gte: recordKey(from), lt: recordKey(seq) }));
    // A TTL sweep and a budget drop may race; the position only ever moves forward.
    if (seq <= this.firstSeq) return 0;
    const dropped = seq - this.firstSeq;
    this.firstSeq = seq;
    this.firstCum = newFirstCum;
    this.tail.dropBefore(seq);
    if (this.clockShifts.prune(seq)) this.saveClockShifts();
    return dropped;
  }

  /** Reads for the writer and the sweeps: the current database, never a wait for recovery. */
  private async cumAt(seq: number): Promise<number> {
    const v = await this.db.get(recordKey(seq));
    return v && valueIntact(v) ? valueCum(v) : this.firstCum;
  }

  /**
   * Frees at least `needed` bytes (and a twentieth of the budget, so a full journal does not pay
   * a range delete per batch) from the oldest records, by binary search on the cumulative
   * offsets in the record headers.
   */
  private async dropOldest(needed: number): Promise<void> {
    const target = this.firstCum + Math.max(needed, this.opts.maxBytes * DROP_CHUNK_FRACTION);
    const upTo = await this.searchSeq((v) => valueCum(v) >= target);
    const dropped = await this.deleteBefore(upTo);
    if (dropped > 0) {
      this.counters.droppedFull += dropped;
      this.log.warn({ dropped, maxBytes: this.opts.maxBytes }, 'journal full: dropped oldest records');
    }
  }

  /** Smallest retained seq whose value satisfies `pred` (monotone), or lastSeq + 1. */
  private async searchSeq(pred: (value: Buffer, seq: number) => boolean): Promise<number> {
    let lo = this.firstSeq;
    let hi = this.lastSeq + 1;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const v = await this.db.get(recordKey(mid));
      if (v === undefined || !valueIntact(v) || pred(v, mid)) hi = mid;
      else lo = mid + 1;
    }
    return lo;
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
      { jumpMs: Math.round(jump), lastSeq: this.lastSeq, records: this.records },
      'wall clock jumped: records kept so far are aged by the time they spent here',
    );
    if (this.records === 0) return;
    this.clockShifts.add(this.lastSeq, jump);
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
    const shifts = this.clockShifts;
    const upTo = await this.searchSeq((v, seq) => valueTs(v) + shifts.offsetFor(seq) >= cutoff);
    const dropped = await this.deleteBefore(upTo);
    if (dropped > 0) {
      this.counters.droppedTtl += dropped;
      this.log.info({ dropped, ttlMs: this.opts.ttlMs }, 'journal: dropped records past their ttl');
    }
    return dropped;
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
  async sync(): Promise<void> {
    for (;;) {
      if (this.writing) {
        await this.writeIdle;
        continue;
      }
      if (this.recovering || this.unrecovered || this.closed) return;
      if (this.ready.length === 0 && this.pending.values.length === 0 && this.dirtyCursors.size === 0) return;
      this.flush();
      if (!this.writing) return;
    }
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
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.flushImmediate) clearImmediate(this.flushImmediate);
    if (this.cursorTimer) clearTimeout(this.cursorTimer);
    if (this.trimTimer) clearTimeout(this.trimTimer);
    if (this.ttlTimer) clearInterval(this.ttlTimer);
    if (this.clockTimer) clearInterval(this.clockTimer);
    await this.trimming;
    await this.deadLetters.idle();
    await this.diskReaders.closeAll();
    if (this.unrecovered) await this.db.close().catch(noop);
    else await this.db.close();
  }
}

interface DirtyCursors {
  names: string[];
  ops: { type: 'put'; key: Buffer; value: Buffer }[];
  waiters: { resolve: () => void; reject: (err: Error) => void }[];
}

interface OpenState {
  epoch: string;
  firstSeq: number;
  lastSeq: number;
  firstCum: number;
  nextCum: number;
  cursors: Map<string, number>;
  deadLetters: Map<string, DeadLetterStats>;
  clockShifts: ClockShifts;
  quarantined: number;
}

function doubleValue(n: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeDoubleBE(n, 0);
  return b;
}

/**
 * Whether an open failure is evidence that the database's files are damaged: LevelDB's own
 * corruption status, or one of its files missing (a MANIFEST named by CURRENT that is gone after
 * a torn write). Every other I/O error (EIO, EMFILE, EACCES, ENOSPC, EROFS) says nothing about
 * the files' contents, and moving a backlog aside for it would hide acknowledged records.
 */
export function isDamaged(cause: { code?: string; message?: string } | undefined): boolean {
  if (!cause) return false;
  if (cause.code === 'LEVEL_CORRUPTION') return true;
  if (cause.code !== 'LEVEL_IO_ERROR') return false;
  const msg = cause.message ?? '';
  return /Corruption/i.test(msg) || (/No such file or directory/i.test(msg) && DB_FILE.test(msg));
}

/** LevelDB's own file names: CURRENT, MANIFEST-n, n.ldb, n.sst, n.log. */
const DB_FILE = /(?:\/|^)(?:CURRENT|MANIFEST-\d+|\d+\.(?:ldb|sst|log))\b/;

const QUARANTINE_PREFIX = 'corrupt-';

/**
 * Moves the database's files into `<path>/corrupt-<time>/`, leaving earlier quarantines (and a
 * filesystem's lost+found) where they are, and returns that directory. Not a rename of `path`
 * itself: `path` is often a mount point (a hostPath or volume mounted at journal.path), which
 * cannot be renamed (EBUSY), and a sibling may be on another filesystem (EXDEV). LevelDB skips
 * names it does not recognise when it opens `path`, so the subdirectory does not disturb it.
 */
export function quarantine(path: string, now: number): string {
  const aside = join(path, `${QUARANTINE_PREFIX}${now}`);
  mkdirSync(aside);
  for (const name of readdirSync(path)) {
    if (name.startsWith(QUARANTINE_PREFIX) || name === 'lost+found') continue;
    renameSync(join(path, name), join(aside, name));
  }
  return aside;
}

/**
 * Start-up state from the ledger and the two ends of the record range: a constant number of
 * reads, whatever the backlog.
 */
async function readOpenState(db: Db): Promise<OpenState> {
  let epochBuf = await db.get(META_EPOCH);
  if (!epochBuf) {
    epochBuf = Buffer.from(randomBytes(6).toString('hex'));
    await db.put(META_EPOCH, epochBuf, { sync: true });
  }
  const nextSeqBuf = await db.get(META_NEXT_SEQ);
  const cumBuf = await db.get(META_CUM_BYTES);
  let lastSeq = nextSeqBuf ? readSeq(nextSeqBuf, 0) - 1 : 0;
  let nextCum = cumBuf ? cumBuf.readDoubleBE(0) : 0;
  const lastEntry = await db.iterator({ gte: RECORDS_GTE, lt: RECORDS_LT, reverse: true, limit: 1 }).all();
  if (lastEntry.length > 0) {
    // The ledger is written in the same batch as the records, so it should agree; trust the
    // larger in case of a ledger from an older layout.
    const [key, value] = lastEntry[0];
    const seq = seqOfRecordKey(key);
    if (seq > lastSeq) {
      lastSeq = seq;
      if (valueIntact(value)) nextCum = valueCum(value) + value.length + RECORD_KEY_BYTES;
    }
  }
  let firstSeq = lastSeq + 1;
  let firstCum = nextCum;
  const firstEntry = await db.iterator({ gte: RECORDS_GTE, lt: RECORDS_LT, limit: 1 }).all();
  if (firstEntry.length > 0) {
    const [key, value] = firstEntry[0];
    firstSeq = seqOfRecordKey(key);
    firstCum = valueIntact(value) ? valueCum(value) : nextCum;
  }
  const cursors = new Map<string, number>();
  for await (const [key, value] of db.iterator({ gte: CURSORS_GTE, lt: CURSORS_LT })) {
    cursors.set(key.toString('utf8', 1), readSeq(value, 0));
  }
  const clockShifts = ClockShifts.decode(await db.get(META_CLOCK_SHIFTS));
  clockShifts.prune(firstSeq);
  return {
    epoch: epochBuf.toString(),
    firstSeq,
    lastSeq,
    firstCum,
    nextCum,
    cursors,
    deadLetters: await readDeadLetterStats(db),
    clockShifts,
    quarantined: 0,
  };
}

function noop(): void {}

/**
 * Copies the bodies of records read from disk into one buffer, each record's body a view of it.
 * classic-level returns every key and value as its own Buffer: a native allocation plus a
 * backing-store object each, of which V8's external-memory count sees only the bytes. Kept by
 * the records until a batch is delivered, they survived two scavenges, were promoted, and then
 * waited for a mark-compact that the under-counted external memory was slow to trigger. One
 * buffer per batch lets the per-record ones die young.
 */
function packBodies(records: StoredRecord[]): void {
  if (records.length < 2) return;
  let total = 0;
  for (const r of records) total += r.body.length;
  const packed = Buffer.allocUnsafeSlow(total);
  let off = 0;
  for (const r of records) {
    const len = r.body.copy(packed, off);
    r.body = packed.subarray(off, off + len);
    off += len;
  }
}
