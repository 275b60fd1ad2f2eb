// The journal's chunk layout (src/journal/chunk.ts): one LevelDB value per group commit, cut at
// CHUNK_CAP_BYTES; reads, trim, TTL, drop-oldest and the checksum rule at and across chunk
// boundaries; and journals of the layout before chunks, migrated at open.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeRecord, encodeRecord, type RecordInput, type StoredRecord } from '../../src/core/record.ts';
import { CHUNK_CAP_BYTES, CHUNK_OVERHEAD_BYTES, ENTRY_HEADER_BYTES } from '../../src/journal/chunk.ts';
import type { Journal } from '../../src/journal/journal.ts';
import { appendAll, JournalKit, record } from './journal-kit.ts';
import { countKeys, writeLegacyJournal } from './legacy-layout.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const BIG = 1 << 30;

let kit: JournalKit;
beforeEach(() => {
  kit = new JournalKit();
});
afterEach(() => kit.cleanup());

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, k) => from + k);
/** Records `from..to`, appended in one group commit each call. */
const recs = (from: number, to: number, payloadBytes = 16, ts?: (i: number) => number): RecordInput[] =>
  range(from, to).map((i) => record(i, ts?.(i), payloadBytes));
const chunkBytes = (rs: RecordInput[]): number =>
  rs.reduce((n, r) => n + encodeRecord(r).length + ENTRY_HEADER_BYTES, CHUNK_OVERHEAD_BYTES);

/** Seq n carries record(n - 1): checks seqs and content. */
function expectSeqs(out: StoredRecord[], seqs: number[]): void {
  expect(out.map((r) => r.seq)).toEqual(seqs);
  for (const r of out) {
    expect(decodeRecord(r.body).topic).toBe(`t/${r.seq - 1}`);
    expect(r.ts).toBe(1_700_000_000_000 + r.seq - 1);
  }
}

const dbOf = (j: Journal): Level<Buffer, Buffer> => (j as unknown as { db: Level<Buffer, Buffer> }).db;

/** First seqs of the chunks on disk. */
async function chunkKeys(j: Journal): Promise<number[]> {
  const keys = await dbOf(j)
    .keys({ gte: Buffer.from('k'), lt: Buffer.from('l') })
    .all();
  return keys.map((k) => k.readUInt32BE(1) * 2 ** 32 + k.readUInt32BE(5));
}

/** Appends three group commits of 10 records each: chunks at 1, 11 and 21. */
async function threeChunks(j: Journal): Promise<void> {
  for (let i = 0; i < 30; i += 10) await appendAll(j, recs(i, i + 9));
  expect(await chunkKeys(j)).toEqual([1, 11, 21]);
}

describe('chunks', () => {
  it('reads that start inside a chunk and cross chunk boundaries, from disk', async () => {
    const j = await kit.open({ tailRecords: 2 });
    await threeChunks(j);
    expectSeqs((await j.readBatch(5, 12, BIG)).records, range(5, 16));
    // The same reader goes on inside chunk 2, then into chunk 3.
    expectSeqs((await j.readBatch(17, 7, BIG)).records, range(17, 23));
    expectSeqs((await j.readBatch(3, 1000, BIG)).records, range(3, 30));
    expectSeqs((await j.readBatch(10, 2, BIG)).records, [10, 11]);
    // A byte limit that ends a read in the middle of a chunk: exactly the bodies of 8..12.
    const five = (await j.readBatch(8, 5, BIG)).records.reduce((n, r) => n + r.body.length, 0);
    const limited = await j.readBatch(8, 1000, five);
    expectSeqs(limited.records, range(8, 12));
    expect(limited.next).toBe(13);
    expect(await j.tsAt(14)).toBe(1_700_000_000_000 + 13);
    expect(await j.tsAt(1)).toBe(1_700_000_000_000);
  });

  it('cuts a group commit larger than the cap into chunks, each counting its key and header', async () => {
    const j = await kit.open({ tailRecords: 2 });
    // 100 records of about 2 KB in one group commit: about 200 KB, cut into chunks of <= 16 KiB.
    const big = recs(0, 99, 2000);
    await appendAll(j, big);
    expect(j.counters.committedBatches).toBe(1);
    const keys = await chunkKeys(j);
    expect(keys.length).toBe(Math.ceil(chunkBytes(big) / CHUNK_CAP_BYTES));
    expect(keys[0]).toBe(1);
    const values = await dbOf(j)
      .values({ gte: Buffer.from('k'), lt: Buffer.from('l') })
      .all();
    for (const v of values) expect(v.length).toBeLessThanOrEqual(CHUNK_CAP_BYTES);
    // Chunk k holds seqs [keys[k], keys[k + 1]): each chunk's key and header counted once.
    const cuts = [...keys, 101].map((s) => s - 1);
    const expected = keys.reduce((n, _k, c) => n + chunkBytes(big.slice(cuts[c], cuts[c + 1])), 0);
    expect(j.bytes()).toBe(expected);
    expectSeqs((await j.readBatch(1, 1000, BIG)).records, range(1, 100));
    // A record larger than the cap is a chunk of its own.
    await appendAll(j, [record(100, undefined, CHUNK_CAP_BYTES + 10), record(101)]);
    expect((await chunkKeys(j)).slice(-2)).toEqual([101, 102]);
    expectSeqs((await j.readBatch(100, 10, BIG)).records, [100, 101, 102]);
  });

  it('trim keeps a chunk part of whose records are passed, and deletes it once all are', async () => {
    let j = await kit.open({ tailRecords: 2 });
    await threeChunks(j);
    await j.openCursor('a', 0);
    await j.commitCursor('a', 14);
    await j.trim();
    expect(j.firstRetainedSeq).toBe(15);
    // Chunk 1 is all passed; chunk 11 holds 15..20 still.
    expect(await chunkKeys(j)).toEqual([11, 21]);
    // Chunk 11's key and header count with its last record, still retained.
    expect(j.bytes()).toBe(chunkBytes(recs(14, 19)) + chunkBytes(recs(20, 29)));
    expectSeqs((await j.readBatch(1, 1000, BIG)).records, range(15, 30));
    await j.close();
    // The position inside the chunk survives a restart.
    j = await kit.open({ tailRecords: 2 });
    expect(j.firstRetainedSeq).toBe(15);
    expect(j.records).toBe(16);
    expect(j.bytes()).toBe(chunkBytes(recs(14, 19)) + chunkBytes(recs(20, 29)));
    expectSeqs((await j.readBatch(11, 1000, BIG)).records, range(15, 30));
    expect(await j.openCursor('late')).toBe(14);
    await j.removeCursor('late');
    await j.commitCursor('a', 20);
    await j.trim();
    expect(await chunkKeys(j)).toEqual([21]);
    expect(j.bytes()).toBe(chunkBytes(recs(20, 29)));
  });

  it('TTL inside a chunk: the expired records go, the chunk stays for the rest', async () => {
    const ttlMs = 60_000;
    const now = Date.now();
    let j = await kit.open({ ttlMs, tailRecords: 2 });
    // One chunk: 5 records past their TTL, then 15 fresh ones.
    await appendAll(
      j,
      recs(0, 19, 16, (i) => (i < 5 ? now - 2 * ttlMs : now)),
    );
    expect(await j.sweepExpired()).toBe(5);
    expect(j.counters.droppedTtl).toBe(5);
    expect(j.firstRetainedSeq).toBe(6);
    expect(await chunkKeys(j)).toEqual([1]);
    expect((await j.readBatch(1, 100, BIG)).records.map((r) => r.seq)).toEqual(range(6, 20));
    expect(await j.sweepExpired()).toBe(0);
    await j.close();
    j = await kit.open({ ttlMs, tailRecords: 2 });
    expect(j.firstRetainedSeq).toBe(6);
    expect(await j.sweepExpired()).toBe(0);
    expect((await j.readBatch(1, 100, BIG)).records.map((r) => r.seq)).toEqual(range(6, 20));
  });

  it('drop-oldest frees whole chunks, the partly trimmed one first', async () => {
    // Records 10.. : two-digit topics, so every chunk of 10 has the same size.
    const size = chunkBytes(recs(10, 19, 200));
    const j = await kit.open({ maxBytes: 5 * size, onFull: 'drop-oldest', tailRecords: 2 });
    for (let i = 10; i < 60; i += 10) await appendAll(j, recs(i, i + 9, 200));
    expect(j.counters.droppedFull).toBe(0);
    await j.openCursor('a', 0);
    await j.commitCursor('a', 4);
    await j.trim();
    expect(j.firstRetainedSeq).toBe(5);
    // The next chunk does not fit: the partly trimmed chunk goes whole (its 6 records dropped).
    const acks = await appendAll(j, recs(60, 69, 200));
    expect(acks.every((a) => a.err === null)).toBe(true);
    expect(j.counters.droppedFull).toBe(6);
    expect(j.firstRetainedSeq).toBe(11);
    expect(await chunkKeys(j)).toEqual([11, 21, 31, 41, 51]);
    expect(j.bytes()).toBe(5 * size);
    expect(j.bytes()).toBeLessThanOrEqual(j.maxBytes);
    const all = (await j.readBatch(1, 1000, BIG)).records;
    expect(all.map((r) => r.seq)).toEqual(range(11, 60));
  });

  it('a chunk failing its checksum: its records are skipped and counted, reads go on after it', async () => {
    let j = await kit.open({ tailRecords: 2 });
    await threeChunks(j);
    await appendAll(j, recs(30, 39));
    await j.close();
    // Flip a byte in chunk 11's value and in the last chunk's (31..40).
    const db = new Level<Buffer, Buffer>(kit.path, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    for (const first of [11, 31]) {
      const k = Buffer.alloc(9);
      k[0] = 0x6b;
      k.writeUInt32BE(first, 5);
      const v = (await db.get(k))!;
      v[v.length - 3] ^= 0xff;
      await db.put(k, v);
    }
    await db.close();

    j = await kit.open({ tailRecords: 2 });
    expect(j.lastCommittedSeq).toBe(40);
    const first = await j.readBatch(1, 1000, BIG);
    // 11..20 and 31..40 lost: counted once each, and the read says it looked through 40.
    expectSeqs(first.records, [...range(1, 10), ...range(21, 30)]);
    expect(first.next).toBe(41);
    expect(j.counters.corrupt).toBe(20);
    // A read starting inside the damaged chunk counts what it steps over from there.
    const inside = await j.readBatch(15, 3, BIG);
    expectSeqs(inside.records, [21, 22, 23]);
    expect(j.counters.corrupt).toBe(26);
    expect(await j.tsAt(12)).toBeUndefined();
    expect(await j.tsAt(22)).toBe(1_700_000_000_000 + 21);
    // What is committed next is read, not stepped over.
    await appendAll(j, recs(40, 44));
    const after = await j.readBatch(41, 100, BIG);
    expectSeqs(after.records, range(41, 45));
  });
});

describe('a journal of the layout before chunks (one key per record)', () => {
  const epoch = 'a1b2c3d4e5f6';
  const FIRST = 101;
  const legacy = (count: number, damaged: number[] = []) => ({
    epoch,
    firstSeq: FIRST,
    records: range(FIRST - 1, FIRST + count - 2).map((i) => record(i)),
    cursors: { 'sink/http': FIRST + 9, 'consumer/app': FIRST - 1 },
    deadLetters: {
      'sink/http': [
        { seq: 7, reason: 'HTTP 400: bad', body: Buffer.from('dl-one') },
        { seq: 9, reason: 'HTTP 422: worse', body: Buffer.from('dl-two') },
      ],
    },
    damaged,
  });

  /** Every record, cursor and dead letter of `legacy(count)` is in `j`, in order. */
  async function expectMigrated(j: Journal, count: number, lost: number[] = []): Promise<void> {
    expect(j.epoch).toBe(epoch);
    expect(j.firstRetainedSeq).toBe(FIRST);
    expect(j.lastCommittedSeq).toBe(FIRST + count - 1);
    const all: StoredRecord[] = [];
    for (let next = 1; next <= j.lastCommittedSeq; ) {
      const b = await j.readBatch(next, 700, BIG);
      all.push(...b.records);
      next = b.next;
    }
    const want = range(FIRST, FIRST + count - 1).filter((s) => !lost.includes(s));
    expectSeqs(all, want);
    expect(j.cursor('sink/http')).toBe(FIRST + 9);
    expect(j.cursor('consumer/app')).toBe(FIRST - 1);
    const dls = await j.listDeadLetters('sink/http', 10);
    expect(dls.map((d) => [d.n, d.seq, d.reason, d.body.toString()])).toEqual([
      [1, 7, 'HTTP 400: bad', 'dl-one'],
      [2, 9, 'HTTP 422: worse', 'dl-two'],
    ]);
  }

  it('opens it: every record in order, the cursors where they were, the dead letters, the epoch', async () => {
    await writeLegacyJournal(kit.path, legacy(2500, [FIRST + 1000]));
    let j = await kit.open({ tailRecords: 2 });
    await expectMigrated(j, 2500, [FIRST + 1000]);
    // The damaged record was dropped by the migration, counted; the bytes are the chunks'.
    expect(j.counters.corrupt).toBe(1);
    const size = j.bytes();
    const records = range(FIRST - 1, FIRST + 2498)
      .filter((i) => i !== FIRST + 999)
      .map((i) => record(i));
    expect(size).toBeGreaterThanOrEqual(chunkBytes(records));
    expect(size).toBeLessThan(chunkBytes(records) + 40 * CHUNK_OVERHEAD_BYTES);
    const [ack] = await appendAll(j, [record(9999)]);
    expect(ack).toEqual({ err: null, seq: FIRST + 2500 });
    await j.close();
    expect(await countKeys(kit.path, 'r')).toBe(0);
    expect(await countKeys(kit.path, 'k')).toBeGreaterThan(1);
    // Opened again, nothing more to migrate, the same records.
    j = await kit.open({ tailRecords: 2 });
    expect(j.counters.corrupt).toBe(0);
    expect(j.bytes()).toBe(size + chunkBytes([record(9999)]));
    await j.commitCursor('sink/http', FIRST + 1500);
    await j.commitCursor('consumer/app', FIRST + 1500);
    await j.trim();
    expect(j.firstRetainedSeq).toBe(FIRST + 1501);
    expect((await j.readBatch(1, 3, BIG)).records.map((r) => r.seq)).toEqual(
      range(FIRST + 1501, FIRST + 1503),
    );
  });

  it('a migration killed part way leaves a journal that opens with nothing lost or duplicated', async () => {
    await writeLegacyJournal(kit.path, legacy(5000));
    const child = spawn(process.execPath, [path.join(FIXTURES, 'migrate-slowly.ts'), kit.path], {
      stdio: 'pipe',
    });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        // Three writes done: the migration is under way.
        if (out.split('\n').length > 3) resolve();
      });
      child.on('exit', () => reject(new Error(`child exited first: ${out}`)));
    });
    child.kill('SIGKILL');
    await exited;
    expect(out).not.toContain('done');
    // Killed in the middle: some records in chunks, the rest still one key each.
    const left = await countKeys(kit.path, 'r');
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan(5000);
    expect(await countKeys(kit.path, 'k')).toBeGreaterThan(0);

    const j = await kit.open({ tailRecords: 2 });
    await expectMigrated(j, 5000);
    expect(j.counters.corrupt).toBe(0);
    // Renumbered bytes continue across the two runs: the ledger and the chunks agree.
    expect(j.bytes()).toBeGreaterThanOrEqual(
      chunkBytes(range(FIRST - 1, FIRST + 4998).map((i) => record(i))),
    );
    const [ack] = await appendAll(j, [record(9999)]);
    expect(ack).toEqual({ err: null, seq: FIRST + 5000 });
  });
});
