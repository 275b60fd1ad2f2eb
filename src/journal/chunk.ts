import { crc32 } from 'node:zlib';
import { readSeq, writeSeq } from './keys.ts';

// A chunk: the records of one group commit (or of one CHUNK_CAP_BYTES slice of it) in one
// LevelDB value under the key 'k' firstSeq, as Fluent Bit chunks and Kafka record batches
// store them. One key and one checksum per commit instead of one per record: fewer LevelDB
// puts and index entries, and a header that TTL and the disk budget read without decoding
// the records.
//
//   0   u32  crc32 of bytes 4..end
//   4   u8   format version (CHUNK_VERSION)
//   5   u32  record count
//   9   u64  seq of the first record (the key's; a value under the wrong key is damaged)
//   17  f64  cumulative journal bytes before the chunk
//   25  f64  smallest ingest ts (ms)
//   33  f64  largest ingest ts (ms)
//   41       the records, each: u32 body length, f64 ingest ts, body (protobuf fields 3..9 of
//            edgeferry.v1.Record)
//
// Accounting: a chunk counts its key plus its value against the disk budget, as a record did.
// The cumulative bytes before the record at byte offset `off` of a chunk are
// `cumBefore + off - CHUNK_HEADER_BYTES`; the key and header are counted with the chunk's last
// record, so they leave the count when the chunk leaves the disk. The bytes of a range stay the
// difference of two cumulative values, never a scan.

export const CHUNK_VERSION = 1;
export const CHUNK_HEADER_BYTES = 41;
export const ENTRY_HEADER_BYTES = 12;
export const CHUNK_KEY_BYTES = 9;
/** What a chunk adds to its records' entries: its key and its header. */
export const CHUNK_OVERHEAD_BYTES = CHUNK_KEY_BYTES + CHUNK_HEADER_BYTES;

/**
 * A group commit larger than this is cut into several chunks. A random read (a reader starting
 * at a seq, tsAt, the budget's and TTL's binary searches) fetches, checksums and walks the whole
 * chunk holding its seq: about 25 µs plus 2 µs per KiB (bench/tools/chunk-cap.ts, 200 000
 * records of 200 B: median 53 µs at 16 KiB, 139 at 64 KiB, 536 at 256 KiB, 2.3 ms at 1 MiB),
 * while the write cost per record did not move with the cap between 16 KiB and 1 MiB. At 16 KiB
 * a chunk still holds about 65 such records (one key and checksum instead of 65), and a damaged
 * chunk loses at most 16 KiB of records.
 */
export const CHUNK_CAP_BYTES = 16 * 1024;

/** What one record takes in a chunk. */
export function entryBytes(body: Buffer): number {
  return ENTRY_HEADER_BYTES + body.length;
}

/**
 * Ends of the chunks `bodies[from..to)` is cut into: each chunk takes records while its value
 * stays within CHUNK_CAP_BYTES (and always at least one record).
 */
export function chunkCuts(bodies: readonly Buffer[], from: number, to: number): number[] {
  const cuts: number[] = [];
  let size = CHUNK_HEADER_BYTES;
  for (let i = from; i < to; i++) {
    const e = ENTRY_HEADER_BYTES + bodies[i].length;
    if (size + e > CHUNK_CAP_BYTES && size > CHUNK_HEADER_BYTES) {
      cuts.push(i);
      size = CHUNK_HEADER_BYTES;
    }
    size += e;
  }
  if (to > from) cuts.push(to);
  return cuts;
}

/** Builds and seals the chunk of records `bodies[from..to)`, the first of which gets `firstSeq`. */
export function buildChunk(
  bodies: readonly Buffer[],
  ts: readonly number[],
  from: number,
  to: number,
  firstSeq: number,
  cumBefore: number,
): Buffer {
  let size = CHUNK_HEADER_BYTES;
  for (let i = from; i < to; i++) size += ENTRY_HEADER_BYTES + bodies[i].length;
  const c = Buffer.allocUnsafeSlow(size);
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let pos = CHUNK_HEADER_BYTES;
  for (let i = from; i < to; i++) {
    const body = bodies[i];
    const t = ts[i];
    if (t < min) min = t;
    if (t > max) max = t;
    c.writeUInt32BE(body.length, pos);
    c.writeDoubleBE(t, pos + 4);
    pos += ENTRY_HEADER_BYTES + body.copy(c, pos + ENTRY_HEADER_BYTES);
  }
  c[4] = CHUNK_VERSION;
  c.writeUInt32BE(to - from, 5);
  writeSeq(c, 9, firstSeq);
  c.writeDoubleBE(cumBefore, 17);
  c.writeDoubleBE(min, 25);
  c.writeDoubleBE(max, 33);
  c.writeUInt32BE(crc32(c.subarray(4)), 0);
  return c;
}

/**
 * Whether `c` is a chunk of this format stored under the key of `keySeq`: its checksum holds,
 * and so does what the checksum cannot vouch for, the key it sits under.
 */
export function chunkIntact(c: Buffer, keySeq: number): boolean {
  if (c.length < CHUNK_HEADER_BYTES || c.readUInt32BE(0) !== crc32(c.subarray(4))) return false;
  return c[4] === CHUNK_VERSION && readSeq(c, 9) === keySeq && chunkCount(c) > 0;
}

export function chunkCount(c: Buffer): number {
  return c.readUInt32BE(5);
}

export function chunkFirstSeq(c: Buffer): number {
  return readSeq(c, 9);
}

export function chunkLastSeq(c: Buffer): number {
  return readSeq(c, 9) + c.readUInt32BE(5) - 1;
}

export function chunkCumBefore(c: Buffer): number {
  return c.readDoubleBE(17);
}

/** Cumulative journal bytes after the chunk (its key and header included). */
export function chunkCumAfter(c: Buffer): number {
  return c.readDoubleBE(17) + c.length + CHUNK_KEY_BYTES;
}

export function chunkMaxTs(c: Buffer): number {
  return c.readDoubleBE(33);
}

/** Byte offset of the record `seq` in an intact chunk that holds it. */
export function entryOffset(c: Buffer, seq: number): number {
  let off = CHUNK_HEADER_BYTES;
  for (let s = chunkFirstSeq(c); s < seq; s++) off += ENTRY_HEADER_BYTES + c.readUInt32BE(off);
  return off;
}

/** Cumulative journal bytes before the record at byte offset `off`. */
export function cumAtOffset(c: Buffer, off: number): number {
  return chunkCumBefore(c) + off - CHUNK_HEADER_BYTES;
}

export function entryBodyLength(c: Buffer, off: number): number {
  return c.readUInt32BE(off);
}

export function entryTs(c: Buffer, off: number): number {
  return c.readDoubleBE(off + 4);
}

export function entryBody(c: Buffer, off: number): Buffer {
  const start = off + ENTRY_HEADER_BYTES;
  return c.subarray(start, start + c.readUInt32BE(off));
}

/** Offset of the record after the one at `off`. */
export function nextEntry(c: Buffer, off: number): number {
  return off + ENTRY_HEADER_BYTES + c.readUInt32BE(off);
}
