import type { Logger } from '../core/logger.ts';
import { buildChunk, chunkCumAfter, chunkCuts, chunkIntact } from './chunk.ts';
import {
  CHUNKS_GTE,
  CHUNKS_LT,
  chunkKey,
  META_CUM_BYTES,
  RECORDS_GTE,
  RECORDS_LT,
  seqOfKey,
} from './keys.ts';
import { valueBody, valueCum, valueIntact, valueTs } from './legacy-value.ts';
import type { Db } from './state.ts';

/** One migration write stays below this many bytes of chunks (as a group commit does). */
const MIGRATE_WRITE_BYTES = 4 * 1024 * 1024;
const MIGRATE_READ_RECORDS = 1000;

export interface MigrationHooks {
  /** Called after each write, with the records moved so far (a test stops the process there). */
  afterWrite?(moved: number): Promise<void> | void;
  /** Bytes of chunks per write (tests make it small, for many writes). */
  writeBytes?: number;
}

/**
 * Moves the records of the layout before chunks (one key 'r' seq per record, legacy-value.ts)
 * into chunks, oldest first. Each write puts the chunks of a run of records and deletes those
 * records' keys in one LevelDB batch, so a kill anywhere leaves every record in exactly one of
 * the two layouts, and the next open goes on where the last write ended: nothing lost or
 * duplicated. Memory stays at one write's worth whatever the backlog.
 *
 * Cumulative bytes are renumbered as chunks count them (a chunk's key and header instead of a
 * key and header per record), continuing from the first record's own value, and the ledger's
 * total is rewritten with each batch. A record failing its checksum is dropped (the reader
 * skipped it, counted, before) and counted here; the chunks on either side of it leave a gap
 * in the seqs, which readers step over.
 *
 * Returns the records moved and dropped; both 0, at the cost of one seek, once migrated.
 */
export async function migrateLegacyRecords(
  db: Db,
  log: Logger,
  hooks: MigrationHooks = {},
): Promise<{ moved: number; corrupt: number }> {
  const any = await db.iterator({ gte: RECORDS_GTE, lt: RECORDS_LT, limit: 1 }).all();
  if (any.length === 0) return { moved: 0, corrupt: 0 };
  let cum: number | undefined;
  // A migration stopped part way: its chunks end where the remaining records begin.
  const prev = await db.iterator({ gte: CHUNKS_GTE, lt: CHUNKS_LT, reverse: true, limit: 1 }).all();
  if (prev.length > 0 && chunkIntact(prev[0][1], seqOfKey(prev[0][0]))) cum = chunkCumAfter(prev[0][1]);
  log.info({ firstSeq: seqOfKey(any[0][0]) }, 'journal: moving records of the old layout into chunks');
  let moved = 0;
  let corrupt = 0;
  const it = db.iterator({ gte: RECORDS_GTE, lt: RECORDS_LT, highWaterMarkBytes: 1024 * 1024 });
  try {
    let run = newRun();
    for (;;) {
      const entries = await it.nextv(MIGRATE_READ_RECORDS);
      for (const [key, value] of entries) {
        const seq = seqOfKey(key);
        run.dels.push(key);
        if (!valueIntact(value)) {
          corrupt++;
          cutRun(run);
          continue;
        }
        cum ??= valueCum(value);
        if (
          run.bodies.length > run.runStart &&
          run.firstSeqs[run.firstSeqs.length - 1] + run.bodies.length - run.runStart !== seq
        )
          cutRun(run);
        if (run.bodies.length === run.runStart) run.firstSeqs.push(seq);
        const body = valueBody(value);
        run.bodies.push(body);
        run.ts.push(valueTs(value));
        run.bytes += body.length;
      }
      const last = entries.length === 0;
      if (run.dels.length > 0 && (last || run.bytes >= (hooks.writeBytes ?? MIGRATE_WRITE_BYTES))) {
        cutRun(run);
        cum = await writeRun(db, run, cum ?? 0);
        moved += run.bodies.length;
        run = newRun();
        await hooks.afterWrite?.(moved);
      }
      if (last) break;
    }
  } finally {
    await it.close();
  }
  if (corrupt > 0) log.warn({ dropped: corrupt }, 'journal: records of the old layout failed their checksum');
  log.info({ moved }, 'journal: records moved into chunks');
  return { moved, corrupt };
}

/** Records read since the last write: runs of consecutive seqs, cut where a record was damaged. */
interface Run {
  bodies: Buffer[];
  ts: number[];
  /** Per run: its first seq, and where its records start in `bodies` (`starts`). */
  firstSeqs: number[];
  starts: number[];
  /** Where the run being read starts in `bodies`. */
  runStart: number;
  dels: Buffer[];
  bytes: number;
}

function newRun(): Run {
  return { bodies: [], ts: [], firstSeqs: [], starts: [], runStart: 0, dels: [], bytes: 0 };
}

function cutRun(run: Run): void {
  if (run.bodies.length > run.runStart) run.starts.push(run.runStart);
  run.runStart = run.bodies.length;
}

async function writeRun(db: Db, run: Run, cumBefore: number): Promise<number> {
  let cum = cumBefore;
  const wb = db.batch();
  try {
    for (let r = 0; r < run.starts.length; r++) {
      const start = run.starts[r];
      const end = r + 1 < run.starts.length ? run.starts[r + 1] : run.bodies.length;
      let from = start;
      for (const to of chunkCuts(run.bodies, start, end)) {
        const seq = run.firstSeqs[r] + from - start;
        const c = buildChunk(run.bodies, run.ts, from, to, seq, cum);
        wb.put(chunkKey(seq), c);
        cum = chunkCumAfter(c);
        from = to;
      }
    }
    for (const k of run.dels) wb.del(k);
    const b = Buffer.allocUnsafe(8);
    b.writeDoubleBE(cum, 0);
    wb.put(META_CUM_BYTES, b);
    await wb.write({ sync: true });
  } catch (err) {
    await wb.close().catch(() => {});
    throw err;
  }
  return cum;
}
