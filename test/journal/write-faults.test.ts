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
    await appendAll(
      j,
      Array.from({ length: 50 }, (_, k) => record(k)),
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
});
