// The journal's on-disk format before chunks, as a test fixture: one LevelDB key per record
// ('r' seq, 8-byte big-endian) whose value is crc32 | cumulative bytes before it | ingest ts |
// body, the ledger ('m' epoch, next-seq, cum-bytes), cursors ('c' name) and dead letters
// ('d' sink 0x00 n, ledger 'm' dl-count/sink). Written byte by byte here, not with src/ helpers,
// so that it stays the old format whatever src/journal becomes.

import { crc32 } from 'node:zlib';
import { Level } from 'level';
import { encodeRecord, type RecordInput } from '../../src/core/record.ts';

const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(Math.floor(n / 0x1_0000_0000), 0);
  b.writeUInt32BE(n >>> 0, 4);
  return b;
};
const f64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeDoubleBE(n, 0);
  return b;
};
const key = (prefix: string, rest: Buffer | string): Buffer =>
  Buffer.concat([Buffer.from(prefix), Buffer.from(rest)]);

export const legacyRecordKey = (seq: number): Buffer => key('r', u64(seq));

export interface LegacyJournal {
  epoch: string;
  /** Seq of the first record written (those before were trimmed). */
  firstSeq: number;
  records: RecordInput[];
  cursors: Record<string, number>;
  /** Per sink: the dead letters, as (seq, reason, body). */
  deadLetters: Record<string, { seq: number; reason: string; body: Buffer }[]>;
  /** Seqs whose value gets a flipped byte after sealing. */
  damaged?: number[];
}

/** Writes `j` at `path` in the old format, in batches of 1000 records. */
export async function writeLegacyJournal(path: string, j: LegacyJournal): Promise<void> {
  const db = new Level<Buffer, Buffer>(path, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  // The cum of the first record: what the trimmed ones took (any value works; not 0, to show
  // it carries over).
  let cum = (j.firstSeq - 1) * 100;
  const damaged = new Set(j.damaged ?? []);
  for (let start = 0; start < j.records.length; start += 1000) {
    const ops: { type: 'put'; key: Buffer; value: Buffer }[] = [];
    for (let i = start; i < Math.min(j.records.length, start + 1000); i++) {
      const seq = j.firstSeq + i;
      const v = encodeRecord(j.records[i], 20);
      v.writeDoubleBE(cum, 4);
      v.writeDoubleBE(j.records[i].ts, 12);
      v.writeUInt32BE(crc32(v.subarray(4)), 0);
      if (damaged.has(seq)) v[v.length - 1] ^= 0xff;
      cum += v.length + 9;
      ops.push({ type: 'put', key: legacyRecordKey(seq), value: v });
    }
    await db.batch(ops);
  }
  const meta = (name: string): Buffer => key('m', name);
  await db.put(meta('epoch'), Buffer.from(j.epoch));
  await db.put(meta('next-seq'), u64(j.firstSeq + j.records.length));
  await db.put(meta('cum-bytes'), f64(cum));
  for (const [name, pos] of Object.entries(j.cursors)) await db.put(key('c', name), u64(pos));
  for (const [sink, letters] of Object.entries(j.deadLetters)) {
    let bytes = 0;
    const ops: { type: 'put'; key: Buffer; value: Buffer }[] = letters.map((d, k) => {
      const reason = Buffer.from(d.reason);
      const v = Buffer.concat([Buffer.alloc(2), reason, f64(1_700_000_000_000), f64(d.seq), d.body]);
      v.writeUInt16BE(reason.length, 0);
      const dk = Buffer.concat([Buffer.from('d'), Buffer.from(sink), Buffer.from([0]), u64(k + 1)]);
      bytes += dk.length + v.length;
      return { type: 'put', key: dk, value: v };
    });
    ops.push({
      type: 'put',
      key: meta(`dl-count/${sink}`),
      value: Buffer.concat([u64(letters.length), f64(letters.length), f64(bytes)]),
    });
    await db.batch(ops);
  }
  await db.close();
}

/** How many keys of the database at `path` start with `prefix` ('r': old records, 'k': chunks). */
export async function countKeys(path: string, prefix: 'r' | 'k'): Promise<number> {
  const db = new Level<Buffer, Buffer>(path, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  const gte = Buffer.from(prefix);
  const lt = Buffer.from([gte[0] + 1]);
  const keys = await db.keys({ gte, lt }).all();
  await db.close();
  return keys.length;
}
