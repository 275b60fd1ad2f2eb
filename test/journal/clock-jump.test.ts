// TTL across a wall-clock jump. An edge board without a battery-backed clock starts near 1970
// (or at its last shutdown), and the first NTP sync moves the clock years forward: records taken
// before it must not look decades old and be dropped at once. The clocks are injected: stepping
// the machine's own clock would disturb everything else running on it.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/daemon.ts';
import { appendAll, JournalKit, record, recordingLog } from './journal-kit.ts';

const TTL = 60_000;
const YEARS = 10 * 365 * 24 * 3600 * 1000;

let kit: JournalKit;
beforeEach(() => {
  kit = new JournalKit();
});
afterEach(() => kit.cleanup());

function fakeClock(wall: number) {
  const c = { wallMs: wall, monoMs: 1000, wall: () => c.wallMs, mono: () => c.monoMs };
  return c;
}

describe('TTL and a wall-clock jump', () => {
  it('ages records by the time they spent in the journal, not by the jumped clock', async () => {
    const clock = fakeClock(86_400_000); // 2 January 1970: no RTC, no NTP yet
    const log = recordingLog();
    let j = await kit.open({ ttlMs: TTL, clock }, log);
    await appendAll(
      j,
      Array.from({ length: 10 }, (_, k) => record(k, clock.wallMs)),
    );

    // NTP's first sync: ten years forward in one step, one second of real time.
    clock.wallMs += YEARS + 1000;
    clock.monoMs += 1000;
    j.checkClockNow();
    expect(j.counters.clockJumps).toBe(1);
    expect(log.lines.some((l) => l.level === 'warn' && /wall clock jumped/.test(l.msg))).toBe(true);
    await appendAll(j, [record(10, clock.wallMs)]);

    expect(await j.sweepExpired()).toBe(0);
    expect(j.records).toBe(11);
    // The dispatcher's view agrees: the first record is not past its TTL.
    expect(j.expiryCutoff(undefined, 1)).toBeLessThan(86_400_000);

    // The journal restarts: the jump is remembered in the ledger.
    await j.close();
    j = await kit.open({ ttlMs: TTL, clock });
    expect(await j.sweepExpired()).toBe(0);

    // A real minute later the records taken before the jump are past their TTL; the one taken
    // after it is too, a second later, and nothing taken later is dropped.
    clock.wallMs += TTL - 500;
    clock.monoMs += TTL - 500;
    j.checkClockNow();
    expect(j.counters.clockJumps).toBe(0);
    expect(await j.sweepExpired()).toBe(10);
    expect(j.firstRetainedSeq).toBe(11);
    expect(j.counters.droppedTtl).toBe(10);
  });

  it('a jump backwards does not keep records past their TTL', async () => {
    const clock = fakeClock(1_800_000_000_000);
    const j = await kit.open({ ttlMs: TTL, clock });
    await appendAll(
      j,
      Array.from({ length: 5 }, (_, k) => record(k, clock.wallMs)),
    );
    clock.wallMs -= 3_600_000; // an hour back
    clock.monoMs += 10;
    j.checkClockNow();
    clock.wallMs += TTL + 1000;
    clock.monoMs += TTL + 1000;
    j.checkClockNow();
    expect(await j.sweepExpired()).toBe(5);
  });

  it('a jump seen while the journal reopens after a write error is kept, in memory and on disk', async () => {
    const clock = fakeClock(86_400_000);
    let j = await kit.open({ ttlMs: TTL, clock });
    // Record 1 in a chunk of its own, so that trimming it deletes that chunk.
    await appendAll(j, [record(0, clock.wallMs)]);
    await appendAll(
      j,
      Array.from({ length: 9 }, (_, k) => record(k + 1, clock.wallMs)),
    );
    // A write fails (injected: a range delete), and the journal starts reopening its database.
    const db = (j as unknown as { db: { clear(...a: unknown[]): Promise<void> } }).db;
    db.clear = () => Promise.reject(new Error('EIO: injected range-delete failure'));
    await j.openCursor('sink/a', 0);
    await j.commitCursor('sink/a', 1).catch(() => {});
    await j.trim().catch(() => {});
    expect(j.writable).toBe(false);
    // NTP steps the clock ten years forward meanwhile.
    clock.wallMs += YEARS + 1000;
    clock.monoMs += 1000;
    j.checkClockNow();
    expect(j.counters.clockJumps).toBe(1);
    await eventually(() => j.writable, 'the journal reopened');

    // Before: the reopened database's (empty) list of jumps replaced the one in memory, and
    // every record taken before the jump was dropped as ten years old, never sent.
    expect(await j.sweepExpired()).toBe(0);
    expect(j.records).toBe(10);
    await j.close();
    j = await kit.open({ ttlMs: TTL, clock });
    expect(await j.sweepExpired()).toBe(0);
    expect(j.records).toBe(10);
  });
});
