import { describe, expect, it } from 'vitest';
import { IdleCompaction } from '../../src/memory/idle-compaction.ts';

describe('IdleCompaction', () => {
  it('collects once after intake has been quiet for quietMs, and again only after new appends', () => {
    let appended = 0;
    let collections = 0;
    const idle = new IdleCompaction(() => appended, {
      quietMs: 500,
      collect: () => {
        collections++;
        return true;
      },
    });
    idle.tick(0);
    // A daemon that never took anything in has nothing to give back.
    idle.tick(10_000);
    expect(collections).toBe(0);
    appended = 100;
    idle.tick(10_100);
    appended = 250;
    idle.tick(10_200);
    idle.tick(10_600); // quiet for 400 ms: not yet
    expect(collections).toBe(0);
    idle.tick(10_700);
    expect(collections).toBe(1);
    idle.tick(20_000); // still quiet: no second collection
    expect(collections).toBe(1);
    expect(idle.runs).toBe(1);
    appended = 251;
    idle.tick(20_100);
    idle.tick(20_700);
    expect(collections).toBe(2);
  });

  it('a collection V8 refuses is not counted', () => {
    let appended = 0;
    const idle = new IdleCompaction(() => appended, { quietMs: 100, collect: () => false });
    idle.tick(0);
    appended = 1;
    idle.tick(10);
    idle.tick(200);
    expect(idle.runs).toBe(0);
  });
});
