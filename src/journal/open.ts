import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Level } from 'level';
import type { Logger } from '../core/logger.ts';
import { chunkCumAfter, chunkIntact, chunkLastSeq, cumAtOffset, entryOffset } from './chunk.ts';
import { ClockShifts } from './clock-shifts.ts';
import { readDeadLetterStats } from './dead-letters.ts';
import {
  CHUNKS_GTE,
  CHUNKS_LT,
  CURSORS_GTE,
  CURSORS_LT,
  META_CLOCK_SHIFTS,
  META_CUM_BYTES,
  META_EPOCH,
  META_FIRST_SEQ,
  META_NEXT_SEQ,
  readSeq,
  seqOfKey,
} from './keys.ts';
import { chunkHolding } from './reader.ts';
import type { Db, JournalOptions, OpenState } from './state.ts';

// Opening the journal's database: the lock wait, the quarantine of damaged files, and the
// start-up state read from the ledger and the ends of the chunk range.

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
export function dbOptions(maxBytes: number) {
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
/**
 * Opens (or creates) the database at `opts.path`. A held lock is waited for up to
 * `lockWaitMs`; a database that cannot be opened for corruption or torn files is moved aside
 * (into `<path>/corrupt-<time>/`) and a fresh one started, so the daemon comes up instead of
 * crash-looping. Any other failure to open (a full or read-only disk, EIO, EMFILE) is an
 * error: moving a healthy backlog aside would not fix it.
 */
export async function openDatabase(
  opts: JournalOptions,
  log: Logger,
): Promise<{ db: Db; quarantined: number }> {
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
    return { db, quarantined };
  }
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
 * Start-up state from the ledger and the two ends of the chunk range: a constant number of
 * reads, whatever the backlog.
 */
export async function readOpenState(db: Db): Promise<OpenState> {
  let epochBuf = await db.get(META_EPOCH);
  if (!epochBuf) {
    epochBuf = Buffer.from(randomBytes(6).toString('hex'));
    await db.put(META_EPOCH, epochBuf, { sync: true });
  }
  const nextSeqBuf = await db.get(META_NEXT_SEQ);
  const cumBuf = await db.get(META_CUM_BYTES);
  const firstSeqBuf = await db.get(META_FIRST_SEQ);
  let lastSeq = nextSeqBuf ? readSeq(nextSeqBuf, 0) - 1 : 0;
  let nextCum = cumBuf ? cumBuf.readDoubleBE(0) : 0;
  const lastEntry = await db.iterator({ gte: CHUNKS_GTE, lt: CHUNKS_LT, reverse: true, limit: 1 }).all();
  if (lastEntry.length > 0) {
    // The ledger is written in the same batch as the chunks, so it should agree; trust the
    // larger in case of a ledger from an older layout.
    const [key, value] = lastEntry[0];
    const keySeq = seqOfKey(key);
    if (chunkIntact(value, keySeq)) {
      if (chunkLastSeq(value) > lastSeq) {
        lastSeq = chunkLastSeq(value);
        nextCum = chunkCumAfter(value);
      }
    } else if (keySeq > lastSeq) lastSeq = keySeq;
  }
  const firstEntry = await db.iterator({ gte: CHUNKS_GTE, lt: CHUNKS_LT, limit: 1 }).all();
  let firstSeq = lastSeq + 1;
  let firstChunk = firstSeq;
  if (firstEntry.length > 0) {
    firstChunk = seqOfKey(firstEntry[0][0]);
    firstSeq = Math.min(lastSeq + 1, Math.max(firstChunk, firstSeqBuf ? readSeq(firstSeqBuf, 0) : 0));
  }
  let firstCum = nextCum;
  if (firstSeq <= lastSeq) {
    const c = await chunkHolding(db, firstSeq);
    if (c?.intact) firstCum = cumAtOffset(c.entry[1], entryOffset(c.entry[1], firstSeq));
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
    firstChunk,
    cursors,
    deadLetters: await readDeadLetterStats(db),
    clockShifts,
    quarantined: 0,
  };
}
