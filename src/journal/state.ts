import type { Level } from 'level';
import type { ClockShifts } from './clock-shifts.ts';
import type { DeadLetterStats } from './dead-letters.ts';

// What the parts of the journal share: its options, its counters, and the ends of its record
// range.

export type Db = Level<Buffer, Buffer>;

export interface JournalOptions {
  path: string;
  /** Disk budget: chunk keys plus values (see chunk.ts). */
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

/**
 * The retained records: exactly the seqs [firstSeq, lastSeq] are readable; bytes =
 * nextCum - firstCum (cumulative values from the chunk headers, never a scan). `firstChunk` is
 * the key seq of the oldest chunk on disk, at or before firstSeq: records below firstSeq that
 * share a chunk with retained ones stay on disk, unread, until the whole chunk can go.
 */
export interface Ends {
  firstSeq: number;
  lastSeq: number;
  firstCum: number;
  nextCum: number;
  firstChunk: number;
}

export function endsOf(e: Ends): Ends {
  return {
    firstSeq: e.firstSeq,
    lastSeq: e.lastSeq,
    firstCum: e.firstCum,
    nextCum: e.nextCum,
    firstChunk: e.firstChunk,
  };
}

/** What opening (or reopening) the database finds. */
export interface OpenState extends Ends {
  epoch: string;
  cursors: Map<string, number>;
  deadLetters: Map<string, DeadLetterStats>;
  clockShifts: ClockShifts;
  quarantined: number;
}

export function noop(): void {}
