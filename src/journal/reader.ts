import type { ReadBatch } from '../core/pipeline.ts';
import type { StoredRecord } from '../core/record.ts';
import {
  CHUNK_CAP_BYTES,
  CHUNK_HEADER_BYTES,
  chunkIntact,
  chunkLastSeq,
  ENTRY_HEADER_BYTES,
  entryBodyLength,
  entryOffset,
  entryTs,
  nextEntry,
} from './chunk.ts';
import type { DiskReader, DiskReaders, Entry } from './disk-readers.ts';
import { CHUNKS_GTE, chunkKey, seqOfKey } from './keys.ts';
import type { Db, JournalCounters } from './state.ts';
import { noop } from './state.ts';

/** Chunks and bytes one disk nextv() may return. */
const READ_STEP_CHUNKS = 64;
const MAX_READ_STEP_BYTES = 8 * 1024 * 1024;

/** The chunk whose key is the greatest at or below `seq`, if its checksum holds or not. */
export interface Located {
  entry: Entry;
  keySeq: number;
  intact: boolean;
}

/**
 * The chunk that holds `seq`: the one with the greatest key at or below it (a reverse
 * iterator, limit 1). Undefined when none is there or the one found ends before `seq` (a gap:
 * records a migration found damaged). A damaged one is returned as such: its records are
 * unknown.
 */
export async function chunkHolding(db: Db, seq: number): Promise<Located | undefined> {
  const found = await db.iterator({ gte: CHUNKS_GTE, lte: chunkKey(seq), reverse: true, limit: 1 }).all();
  if (found.length === 0) return undefined;
  const entry = found[0];
  const keySeq = seqOfKey(entry[0]);
  const intact = chunkIntact(entry[1], keySeq);
  if (intact && chunkLastSeq(entry[1]) < seq) return undefined;
  return { entry, keySeq, intact };
}

/** Ingest ts of the record `seq` on disk, unless its chunk is missing or damaged. */
export async function tsOnDisk(db: Db, seq: number): Promise<number | undefined> {
  const c = await chunkHolding(db, seq);
  if (c === undefined || !c.intact) return undefined;
  return entryTs(c.entry[1], entryOffset(c.entry[1], seq));
}

/**
 * The disk side of Journal.readBatch: records from `from` (retained, not in the tail) up to
 * the limits, continuing the reader left at `from` or opening one at the chunk holding it.
 * A chunk failing its checksum is skipped, and the records it held (up to the next chunk's
 * first seq) counted in `counters.corrupt`.
 */
export async function readFromDisk(
  db: Db,
  from: number,
  lastSeq: number,
  maxRecords: number,
  maxBytes: number,
  readers: DiskReaders,
  counters: JournalCounters,
): Promise<ReadBatch> {
  const records: StoredRecord[] = [];
  const now = Date.now();
  const reader = readers.take(from, db, now) ?? (await openReader(db, from, lastSeq, maxBytes, now));
  let ended = false;
  try {
    let bytes = 0;
    fill: while (records.length < maxRecords && bytes < maxBytes) {
      if (reader.chunk === null) {
        if (reader.pending.length === 0) {
          reader.pending = await reader.it.nextv(READ_STEP_CHUNKS);
          if (reader.pending.length === 0) {
            ended = true;
            break;
          }
        }
        openChunk(reader, reader.pending.shift()!, counters);
        continue;
      }
      const c = reader.chunk;
      let off = reader.offset;
      while (off < c.length) {
        const len = entryBodyLength(c, off);
        // Same rule as the memory path: stop before going over, but always return one record.
        if (records.length >= maxRecords || (records.length > 0 && bytes + len > maxBytes)) {
          reader.offset = off;
          break fill;
        }
        const start = off + ENTRY_HEADER_BYTES;
        records.push({ seq: reader.nextSeq, ts: entryTs(c, off), body: c.subarray(start, start + len) });
        bytes += len;
        reader.nextSeq++;
        off = nextEntry(c, off);
      }
      reader.chunk = null;
    }
  } catch (err) {
    ended = true;
    throw err;
  } finally {
    if (ended && reader.lostFrom > 0) countLost(reader, reader.lastSeq + 1, counters);
    // A reader that reached the end of its snapshot is done, whether or not its iterator has
    // said so yet: kept, it would answer the next read with nothing although newer records
    // are committed. The next read opens one on the current state.
    ended ||= reader.chunk === null && reader.pending.length === 0 && reader.nextSeq > reader.lastSeq;
    if (ended) await reader.it.close().catch(noop);
    else readers.put(reader, now);
  }
  packBodies(records);
  // A reader that ended has looked at every key of its snapshot, up to its lastSeq.
  return { records, next: ended ? Math.max(reader.nextSeq, reader.lastSeq + 1) : reader.nextSeq };
}

async function openReader(db: Db, from: number, lastSeq: number, maxBytes: number, now: number) {
  // The chunk holding `from` (a reverse seek), then an iterator over the chunks after it.
  const first = await chunkHolding(db, from);
  const reader: DiskReader = {
    db,
    it: db.iterator({
      ...(first ? { gt: first.entry[0] } : { gte: chunkKey(from) }),
      lte: chunkKey(lastSeq),
      // classic-level ends a nextv() once 16 KiB are read: one read step per nextv() instead
      // (a batch of 1000 records took 17 thread-pool round trips, one per loop turn).
      highWaterMarkBytes: Math.min(maxBytes, MAX_READ_STEP_BYTES) + CHUNK_CAP_BYTES,
    }),
    nextSeq: from,
    lastSeq,
    pending: first ? [first.entry] : [],
    chunk: null,
    offset: 0,
    lostFrom: 0,
    createdAt: now,
    idleSince: now,
  };
  return reader;
}

/** Makes the chunk `entry` the reader's current one, or counts it lost if damaged. */
function openChunk(reader: DiskReader, entry: Entry, counters: JournalCounters): void {
  const [key, c] = entry;
  const keySeq = seqOfKey(key);
  if (reader.lostFrom > 0) countLost(reader, keySeq, counters);
  if (!chunkIntact(c, keySeq)) {
    // How many records it held is in its damaged header: the next chunk's key says.
    reader.lostFrom = Math.max(keySeq, reader.nextSeq);
    return;
  }
  // A chunk wholly before the reader's position (the one found for a seq in a gap).
  if (chunkLastSeq(c) < reader.nextSeq) return;
  if (keySeq > reader.nextSeq) reader.nextSeq = keySeq;
  reader.chunk = c;
  reader.offset = keySeq === reader.nextSeq ? CHUNK_HEADER_BYTES : entryOffset(c, reader.nextSeq);
}

function countLost(reader: DiskReader, upTo: number, counters: JournalCounters): void {
  if (upTo > reader.lostFrom) {
    counters.corrupt += upTo - reader.lostFrom;
    reader.nextSeq = Math.max(reader.nextSeq, upTo);
  }
  reader.lostFrom = 0;
}

/**
 * Copies the bodies of records read from disk into one buffer, each record's body a view of it.
 * They are views of the chunks classic-level returned, each its own native allocation, which a
 * kept view would hold whole (a 16 KiB chunk for a 200 B record); and, kept by the records until
 * a batch is delivered, they survived two scavenges, were promoted, and then waited for a
 * mark-compact that the under-counted external memory was slow to trigger. One buffer per batch
 * lets the chunks die young.
 */
function packBodies(records: StoredRecord[]): void {
  if (records.length === 0) return;
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
