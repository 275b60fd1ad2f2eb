// A full disk, for real: the journal on a 4 MiB tmpfs filled up by another file. Mounting needs
// root; where that is not possible the test is skipped with the reason in its title and a line
// on stderr, never silently.

import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { JournalWriteError } from '../../src/core/errors.ts';
import type { Logger } from '../../src/core/logger.ts';
import { decodeRecord, type RecordInput } from '../../src/core/record.ts';
import { Journal, type JournalOptions } from '../../src/journal/journal.ts';
import { mountTmpfs } from '../helpers/tmpfs.ts';

const disk = mountTmpfs('edgeferry-fulldisk-', '4m');
const mountPoint = disk.dir;
const mounted = disk.mounted;

let journal: Journal | null = null;

afterAll(async () => {
  await journal?.close().catch(() => {});
  disk.remove();
});

const errors: { obj: object; msg: string }[] = [];
const noop = (): void => {};
const log: Logger = { debug: noop, info: noop, warn: noop, error: (obj, msg) => errors.push({ obj, msg }) };

const options = (path: string): JournalOptions => ({
  path,
  maxBytes: 1024 * 1024 * 1024,
  onFull: 'reject',
  fsync: false,
  groupCommit: { maxRecords: 64, maxDelayMs: 0 },
  lockWaitMs: 0,
});

const record = (i: number): RecordInput => ({
  ts: 1_700_000_000_000 + i,
  source: 'mqtt',
  device: 'dev',
  topic: `disk/${i}`,
  payload: Buffer.alloc(1000, 0x30 + (i % 10)),
});

function append(j: Journal, i: number): Promise<{ err: Error | null; seq: number }> {
  return new Promise((resolve) => j.append(record(i), (err, seq) => resolve({ err, seq }), null));
}

const title = mounted
  ? 'refuses appends with a write error while the disk is full, loses nothing committed, and recovers when space returns'
  : 'full disk (skipped: cannot mount a tmpfs here, needs root)';

describe('journal on a full disk', () => {
  it.skipIf(!mounted)(title, async () => {
    let j = await Journal.open(options(join(mountPoint, 'journal')), log);
    journal = j;
    writeFileSync(join(mountPoint, 'filler'), Buffer.alloc(3_900_000));
    const committed: number[] = [];
    let refused = 0;
    let firstErr: Error | null = null;
    // Appended one at a time until a good run of refusals: the disk is full.
    for (let i = 0; i < 5000 && refused < 200; i++) {
      const { err, seq } = await append(j, i);
      if (err) {
        refused++;
        firstErr ??= err;
      } else committed.push(i);
      if (err === null) expect(seq).toBe(committed.length);
    }
    expect(refused).toBe(200);
    expect(firstErr).toBeInstanceOf(JournalWriteError);
    expect(firstErr?.message).toMatch(/No space left on device/);
    // The first failed commit stops writing; later appends are refused without touching the disk.
    expect(j.counters.writeErrors).toBeGreaterThanOrEqual(1);
    // A few lines, not one per refused record.
    expect(errors.length).toBeLessThan(10);
    expect(errors[0].msg).toBe('journal group commit failed');

    rmSync(join(mountPoint, 'filler'));
    // The journal reopens its database once space is back (it retries every second).
    let after = await append(j, 100_000);
    for (let k = 0; k < 50 && after.err !== null; k++) {
      await sleep(100);
      after = await append(j, 100_000);
    }
    expect(after).toEqual({ err: null, seq: committed.length + 1 });
    expect(errors.map((e) => e.msg)).toContain(
      'journal write failed: refusing records until the database is reopened',
    );

    // Everything acknowledged is there, under gap-free seqs, also after a reopen.
    await j.close();
    j = await Journal.open(options(join(mountPoint, 'journal')), log);
    journal = j;
    expect(j.lastCommittedSeq).toBe(committed.length + 1);
    const { records: all } = await j.readBatch(1, 100_000, 1024 * 1024 * 1024);
    expect(all.map((r) => r.seq)).toEqual(Array.from({ length: committed.length + 1 }, (_, k) => k + 1));
    expect(all.map((r) => decodeRecord(r.body).topic)).toEqual(
      [...committed, 100_000].map((i) => `disk/${i}`),
    );
    await j.close();
  });
});
