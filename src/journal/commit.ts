import { JournalFullError, JournalWriteError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { buildChunk, CHUNK_OVERHEAD_BYTES, chunkCumAfter, chunkCuts, ENTRY_HEADER_BYTES } from './chunk.ts';
import type { Cursors, DirtyCursors } from './cursors.ts';
import type { Pending } from './group-commit.ts';
import { chunkKey, META_CUM_BYTES, META_NEXT_SEQ, seqValue } from './keys.ts';
import { CONCURRENT_FAILURE, type JournalDb } from './recovery.ts';
import type { Retention } from './retention.ts';
import type { Db, Ends, JournalCounters, JournalOptions } from './state.ts';
import { noop } from './state.ts';
import type { TailCache } from './tail-cache.ts';

/** What a group commit needs of the journal. */
export interface CommitHost {
  readonly ends: Ends;
  readonly opts: JournalOptions;
  readonly counters: JournalCounters;
  readonly log: Logger;
  readonly store: JournalDb;
  readonly retention: Retention;
  readonly cursors: Cursors;
  readonly tail: TailCache;
  bytes(): number;
  /** Emits 'commit' with the new last seq. */
  committed(lastSeq: number): void;
}

/** Writes one group commit: its records as chunks, the ledger, and the cursor moves. */
export async function commitBatch(host: CommitHost, batch: Pending): Promise<void> {
  const { ends, opts, counters, store } = host;
  const { bodies, ts } = batch;
  let accept = bodies.length;
  let cuts = chunkCuts(bodies, 0, accept);
  let cursors: DirtyCursors | null = null;
  let wb: ReturnType<Db['batch']> | null = null;
  const seq0 = ends.lastSeq + 1;
  let cum = ends.nextCum;
  try {
    const size = batchBytes(bodies, accept, cuts.length);
    if (host.bytes() + size > opts.maxBytes) {
      if (opts.onFull === 'drop-oldest') {
        // Inside the try: a failed drop fails this batch like a failed write (callbacks, recovery).
        await host.retention.dropOldest(host.bytes() + size - opts.maxBytes);
        cum = ends.nextCum;
      } else {
        // Accept the prefix that fits; refuse the rest (their sources send no ack).
        accept = fittingPrefix(bodies, cuts, opts.maxBytes - host.bytes());
        cuts = chunkCuts(bodies, 0, accept);
        if (accept < bodies.length) {
          const err = new JournalFullError(opts.maxBytes);
          counters.rejected += bodies.length - accept;
          for (let i = accept; i < bodies.length; i++) batch.cbs[i]?.(err, 0, batch.states[i]);
        }
      }
    }
    cursors = host.cursors.take();
    if (accept === 0 && cursors.ops.length === 0) return;
    wb = store.db.batch();
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
    await wb.write({ sync: opts.fsync });
    // Another write (a trim, a dead letter) failed while this batch waited behind it in
    // LevelDB: the batch may follow a torn log record that the reopen drops, so it is not
    // acknowledged. If it survives the reopen, its records are kept and a resend duplicates
    // them (at-least-once), never the other way round.
    if (store.recovering) throw CONCURRENT_FAILURE;
  } catch (cause) {
    await wb?.close().catch(noop);
    // Nothing of this batch is committed and no state moved: the next batch reuses these seqs,
    // so the log stays gap-free. Sources get the error and send no ack.
    counters.writeErrors++;
    const err = new JournalWriteError(cause);
    const suppressed = store.writeErrorLog.take();
    if (suppressed >= 0) {
      host.log.error(
        { err: (cause as Error).message, records: accept, suppressed },
        'journal group commit failed',
      );
    }
    for (let i = 0; i < accept; i++) batch.cbs[i]?.(err, 0, batch.states[i]);
    if (cursors) host.cursors.restore(cursors, err);
    store.startRecovery(cause);
    return;
  }
  for (const w of cursors.waiters) w.resolve();
  if (accept === 0) return;
  const e = ends;
  if (e.firstSeq > e.lastSeq) {
    e.firstSeq = seq0;
    e.firstCum = e.nextCum;
    e.firstChunk = seq0;
  }
  const last = seq0 + accept - 1;
  e.lastSeq = last;
  e.nextCum = cum;
  counters.appended += accept;
  counters.committedBatches++;
  for (let i = 0; i < accept; i++) host.tail.push({ seq: seq0 + i, ts: ts[i], body: bodies[i] });
  for (let i = 0; i < accept; i++) batch.cbs[i]?.(null, seq0 + i, batch.states[i]);
  host.committed(last);
}

/** How many of `bodies` fit in `room` bytes, chunk overheads counted. */
function fittingPrefix(bodies: Buffer[], cuts: number[], room: number): number {
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
