import { varintSize, writeVarint } from '../../core/record.ts';

// `edgeferry.v1.Record` with only field 10, `Gap gap`, set (record.proto): written by hand like
// the records' own prefix, since Subscribe's serializer passes ready-made bytes through.
const TAG_RECORD_GAP = (10 << 3) | 2;
const TAG_FROM_SEQ = (1 << 3) | 0;
const TAG_TO_SEQ = (2 << 3) | 0;
const TAG_REASON = (3 << 3) | 2;

/** Why a Subscribe stream skipped records. */
export type GapReason = 'not retained' | 'corrupt';

/** The bytes of a Record that tells a subscriber it misses seqs `fromSeq..toSeq`. */
export function encodeGapRecord(fromSeq: number, toSeq: number, reason: GapReason): Buffer {
  const reasonLen = Buffer.byteLength(reason);
  const inner = 1 + varintSize(fromSeq) + 1 + varintSize(toSeq) + 1 + varintSize(reasonLen) + reasonLen;
  const buf = Buffer.allocUnsafe(1 + varintSize(inner) + inner);
  let pos = 0;
  buf[pos++] = TAG_RECORD_GAP;
  pos = writeVarint(buf, pos, inner);
  buf[pos++] = TAG_FROM_SEQ;
  pos = writeVarint(buf, pos, fromSeq);
  buf[pos++] = TAG_TO_SEQ;
  pos = writeVarint(buf, pos, toSeq);
  buf[pos++] = TAG_REASON;
  pos = writeVarint(buf, pos, reasonLen);
  buf.write(reason, pos, 'utf8');
  return buf;
}
