// Key layout of the journal's one LevelDB database. One-byte prefixes keep the spaces apart;
// sequence numbers are 8-byte big-endian so that byte order is numeric order.
//
//   'k' firstSeq            chunk: the records of one group commit (see chunk.ts)
//   'r' seq                 one record per key, the layout before chunks (legacy-value.ts): only
//                           read, to migrate it into chunks at open (migrate.ts)
//   'c' name                cursor: last seq the consumer is done with (8 bytes)
//   'd' sink 0x00 dlseq     dead-lettered record
//   'm' name                ledger: epoch, next seq, cumulative bytes, first seq, dead-letter
//                           counters, clock shifts

const K = 0x6b;
const R = 0x72;
const C = 0x63;
const D = 0x64;
const M = 0x6d;

export function writeSeq(buf: Buffer, pos: number, seq: number): void {
  buf.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), pos);
  buf.writeUInt32BE(seq >>> 0, pos + 4);
}

export function readSeq(buf: Buffer, pos: number): number {
  return buf.readUInt32BE(pos) * 0x1_0000_0000 + buf.readUInt32BE(pos + 4);
}

export const RECORDS_LT = Buffer.from([R + 1]);
export const RECORDS_GTE = Buffer.from([R]);

export function chunkKey(firstSeq: number): Buffer {
  const k = Buffer.allocUnsafe(9);
  k[0] = K;
  writeSeq(k, 1, firstSeq);
  return k;
}

export const CHUNKS_LT = Buffer.from([K + 1]);
export const CHUNKS_GTE = Buffer.from([K]);

/** The seq of a chunk key, or of a record key of the layout before chunks. */
export function seqOfKey(key: Buffer): number {
  return readSeq(key, 1);
}

export function cursorKey(name: string): Buffer {
  return Buffer.concat([Buffer.from([C]), Buffer.from(name)]);
}
export const CURSORS_GTE = Buffer.from([C]);
export const CURSORS_LT = Buffer.from([C + 1]);

export function seqValue(seq: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  writeSeq(b, 0, seq);
  return b;
}

export function deadLetterPrefix(sink: string): Buffer {
  return Buffer.concat([Buffer.from([D]), Buffer.from(sink), Buffer.from([0])]);
}

export function deadLetterKey(sink: string, n: number): Buffer {
  const p = deadLetterPrefix(sink);
  const k = Buffer.allocUnsafe(p.length + 8);
  p.copy(k, 0);
  writeSeq(k, p.length, n);
  return k;
}

/** The key just past every key starting with `prefix`. */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1]++;
  return end;
}

export function metaKey(name: string): Buffer {
  return Buffer.concat([Buffer.from([M]), Buffer.from(name)]);
}

export const META_EPOCH = metaKey('epoch');
export const META_NEXT_SEQ = metaKey('next-seq');
export const META_CUM_BYTES = metaKey('cum-bytes');
/**
 * The oldest retained seq, once trimming or TTL moved it inside a chunk (the chunk stays on disk
 * until every record of it is gone): without it, a restart would bring those records back.
 */
export const META_FIRST_SEQ = metaKey('first-seq');
const DL_LEDGER = 'dl-count/';
/** Per sink: last dead-letter number, then (since the budget) count and bytes kept. */
export function metaDeadLetterCount(sink: string): Buffer {
  return metaKey(`${DL_LEDGER}${sink}`);
}
export const META_DL_GTE = metaKey(DL_LEDGER);
export const META_DL_LT = prefixEnd(metaKey(DL_LEDGER));
export function sinkOfDeadLetterLedger(key: Buffer): string {
  return key.toString('utf8', 1 + DL_LEDGER.length);
}
/** Clock jumps seen while records were kept: see clock-shifts.ts. */
export const META_CLOCK_SHIFTS = metaKey('clock-shifts');
