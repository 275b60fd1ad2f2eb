// Writes other than a group commit fail into the same recovery as a failed commit: a failing
// drop-oldest, range delete or dead-letter write. The failures are injected on the journal's
// LevelDB handle: a real full disk fails the group commit first, so it cannot make one of these
// fail alone. Recovery reopens the database, which drops the injected handle.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JournalWriteError } from '../../src/core/errors.ts';
import type { Journal } from '../../src/journal/journal.ts';
import { eventually } from '../helpers/daemon.ts';
import { appendAll, JournalKit, record } from './journal-kit.ts';

let kit: JournalKit;
beforeEach(() => {
  kit = new JournalKit();
});
afterEach(() => kit.cleanup());

interface Injectable {
  clear(...args: unknown[]): Promise<void>;
  batch(...args: unknown[]): { write(...args: unknown[]): Promise<void>; close(): Promise<void> };
}
const dbOf = (j: Journal): Injectable => (j as unknown as { db: Injectable }).db;

function failClear(j: Journal): void {
  dbOf(j).clear = () => Promise.reject(new Error('EIO: injected range-delete failure'));
}

describe('write failures outside the group commit', () => {
  it('a failed drop-oldest fails its whole group commit: every callback runs, recovery starts', async () => {
    const j = await kit.open({ maxBytes: 64 * 1024, onFull: 'drop-oldest' });
    for (let b = 0; b < 4; b++)
      await appendAll(
        j,
        Array.from({ length: 100 }, (_, k) => record(b * 100 + k, undefined, 200)),
      );
    const first = j.firstRetainedSeq;
    const last = j.lastCommittedSeq;
    expect(j.bytes()).toBeGreaterThan(32 * 1024);
    failClear(j);
    const acks = await appendAll(
      j,
      Array.from({ length: 100 }, (_, k) => record(1000 + k, undefined, 200)),
    );
    // Before: the rejection was swallowed, no callback ran (a QoS 1 publisher's acks held for ever).
    expect(acks.every((a) => a.err instanceof JournalWriteError)).toBe(true);
    expect(j.counters.writeErrors).toBeGreaterThanOrEqual(1);
    expect(j.firstRetainedSeq).toBe(first);
    expect(j.lastCommittedSeq).toBe(last);
    await eventually(() => j.writable, 'the journal reopened');
    expect(j.counters.reopened).toBe(1);
    const again = await appendAll(j, [record(2000, undefined, 200)]);
    expect(again[0]).toEqual({ err: null, seq: last + 1 });
    expect(j.bytes()).toBeLessThanOrEqual(64 * 1024);
  });

  it('a failed range delete leaves the first position where the records still are', async () => {
    const j = await kit.open();
    // Two group commits: a trim to 30 deletes the first chunk whole.
    await appendAll(
      j,
      Array.from({ length: 30 }, (_, k) => record(k)),
    );
    await appendAll(
      j,
      Array.from({ length: 20 }, (_, k) => record(30 + k)),
    );
    await j.openCursor('sink/a', 0);
    failClear(j);
    await j.commitCursor('sink/a', 30);
    await expect(j.trim()).rejects.toBeInstanceOf(JournalWriteError);
    // Before: firstSeq moved to 31 although nothing was deleted.
    expect(j.firstRetainedSeq).toBe(1);
    expect(j.records).toBe(50);
    await eventually(() => j.writable, 'the journal reopened');
    await eventually(async () => {
      await j.trim().catch(() => {});
      return j.firstRetainedSeq === 31;
    }, 'the trim done after recovery');
    const { records } = await j.readBatch(1, 100, 1 << 20);
    expect(records[0].seq).toBe(31);
    expect(records).toHaveLength(20);
  });

  it('a failed dead-letter write rejects retryably, recovers, and a retry keeps it once', async () => {
    const j = await kit.open();
    const db = dbOf(j);
    const batch = db.batch.bind(db);
    db.batch = (...args: unknown[]) => {
      const wb = batch(...args);
      wb.write = () => Promise.reject(new Error('ENOSPC: injected dead-letter write failure'));
      return wb;
    };
    const letters = [{ seq: 7, ts: 1, body: Buffer.from('poison') }];
    const err = await j.deadLetter('cloud', letters, 'HTTP 400').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JournalWriteError);
    expect((err as JournalWriteError).retryable).toBe(true);
    expect(j.deadLetterSummary()).toEqual([]);
    await eventually(() => j.writable, 'the journal reopened');
    await j.deadLetter('cloud', letters, 'HTTP 400');
    const kept = await j.listDeadLetters('cloud', 10);
    expect(kept.map((d) => [d.n, d.seq, d.body.toString()])).toEqual([[1, 7, 'poison']]);
    expect(j.counters.deadLettered).toBe(1);
  });

  it('a dead-letter write that went through is not reported failed when the budget drop after it fails', async () => {
    // Injected: the batch of dead-letter deletes that keeps the budget fails, the write before
    // it succeeds (a disk that filled between the two, or a recovery closing the database).
    const j = await kit.open({ deadLetterMaxBytes: 2000 });
    const body = Buffer.alloc(300, 0x2e);
    for (let s = 1; s <= 5; s++) await j.deadLetter('cloud', [{ seq: s, ts: 1, body }], 'HTTP 400');
    const db = dbOf(j);
    const batch = db.batch.bind(db);
    // The array form (the drop's deletes) fails; the chained form (the write) works.
    db.batch = ((...args: unknown[]) => {
      if (Array.isArray(args[0])) return Promise.reject(new Error('ENOSPC: injected budget-drop failure'));
      return batch(...args);
    }) as Injectable['batch'];
    // Five of 341 bytes fit in 2000; the sixth (seq 6) makes the store drop the oldest.
    const letters = [{ seq: 6, ts: 1, body }];
    // The dispatcher retries a rejected dead-letter write until it resolves, as here.
    let rejected = 0;
    for (;;) {
      try {
        await j.deadLetter('cloud', letters, 'HTTP 400');
        break;
      } catch {
        rejected++;
        await eventually(() => j.writable, 'the journal reopened');
      }
    }
    // Before: the write of seq 6 had gone through, the drop after it failed, the call rejected,
    // and the retry wrote seq 6 a second time (and counted it twice).
    await eventually(() => j.writable, 'the journal reopened');
    const kept = await j.listDeadLetters('cloud', 100);
    expect(kept.filter((d) => d.seq === 6)).toHaveLength(1);
    expect(rejected).toBe(0);
    expect(j.counters.deadLettered).toBe(6);
    // The budget is kept again by the next write.
    await j.deadLetter('cloud', [{ seq: 7, ts: 1, body }], 'HTTP 400');
    expect(j.counters.deadLettersDropped).toBeGreaterThan(0);
    expect(j.deadLetterBytes).toBeLessThanOrEqual(2000);
  });
});

describe('a group commit that overlaps a failing write', () => {
  it('is not acknowledged: it may follow the torn log record that the reopen drops', async () => {
    const j = await kit.open();
    await appendAll(j, [record(0)]);
    await j.openCursor('sink/a', 0);
    // Hold the next group commit's LevelDB write until a range delete has failed beside it
    // (both injected: the order of two writes cannot be arranged on a real disk).
    const db = dbOf(j);
    const batch = db.batch.bind(db);
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let held = false;
    db.batch = (...args: unknown[]) => {
      const wb = batch(...args);
      const write = wb.write.bind(wb);
      wb.write = async (...w: unknown[]) => {
        held = true;
        await gate;
        return write(...w);
      };
      return wb;
    };
    failClear(j);
    const acks = appendAll(j, [record(1)]);
    try {
      await eventually(() => held, 'the group commit in flight');
      j.commitCursor('sink/a', 1).catch(() => {});
      await expect(j.trim()).rejects.toBeInstanceOf(JournalWriteError);
      expect(j.writable).toBe(false);
    } finally {
      release();
    }
    const [ack] = await acks;
    expect(ack.err).toBeInstanceOf(JournalWriteError);
    await eventually(() => j.writable, 'the journal reopened');
    const [again] = await appendAll(j, [record(2)]);
    expect(again.err).toBeNull();
  });
});
