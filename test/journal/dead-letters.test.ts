// Dead letters: their own disk budget (oldest dropped, counted), paged listing, deletion, and a
// ledger that survives a restart. Before the budget, 40 000 dead letters took 26 MB with a
// 1 MiB journal budget and were listed in one 63 MB answer.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StoredRecord } from '../../src/core/record.ts';
import { MAX_DEAD_LETTER_PAGE } from '../../src/journal/journal.ts';
import { JournalKit } from './journal-kit.ts';

let kit: JournalKit;
beforeEach(() => {
  kit = new JournalKit();
});
afterEach(() => kit.cleanup());

function stored(from: number, count: number, bodyBytes = 200): StoredRecord[] {
  return Array.from({ length: count }, (_, k) => ({
    seq: from + k,
    ts: 1_700_000_000_000,
    body: Buffer.from(`body-${from + k}-`.padEnd(bodyBytes, 'x')),
  }));
}

describe('dead letters', () => {
  it('stay within deadLetterMaxBytes: the oldest are dropped and counted, the newest kept', async () => {
    const budget = 64 * 1024;
    let j = await kit.open({ deadLetterMaxBytes: budget });
    // 2000 dead letters of about 250 B each in batches of 100: about 8x the budget.
    for (let b = 0; b < 20; b++) await j.deadLetter('cloud', stored(1 + b * 100, 100), 'HTTP 400: bad');
    const [summary] = j.deadLetterSummary();
    expect(summary.sink).toBe('cloud');
    expect(summary.bytes).toBeLessThanOrEqual(budget);
    expect(summary.count).toBeGreaterThan(0);
    expect(summary.count).toBeLessThan(2000);
    expect(j.counters.deadLettered).toBe(2000);
    expect(j.counters.deadLettersDropped).toBe(2000 - summary.count);
    // Drop-oldest: what is kept is the newest, ending at the last one written.
    const all = [];
    for (let after = 0; ; ) {
      const page = await j.listDeadLetters('cloud', 1000, after);
      if (page.length === 0) break;
      all.push(...page);
      after = page[page.length - 1].n;
    }
    expect(all).toHaveLength(summary.count);
    expect(all[all.length - 1]).toMatchObject({ n: 2000, seq: 2000, reason: 'HTTP 400: bad' });
    expect(all[0].n).toBe(2000 - summary.count + 1);

    // The ledger is on disk: a restart knows the same count and bytes without scanning.
    await j.close();
    j = await kit.open({ deadLetterMaxBytes: budget });
    expect(j.deadLetterSummary()).toEqual([summary]);
    await j.deadLetter('cloud', stored(3000, 1), 'later');
    expect((await j.listDeadLetters('cloud', 1, 2000))[0]).toMatchObject({ n: 2001, seq: 3000 });
  });

  it('drop from the sink that keeps the most, so one noisy sink does not erase another', async () => {
    const j = await kit.open({ deadLetterMaxBytes: 64 * 1024 });
    await j.deadLetter('quiet', stored(1, 5), 'rare');
    for (let b = 0; b < 10; b++) await j.deadLetter('noisy', stored(100 + b * 100, 100), 'always');
    const by = Object.fromEntries(j.deadLetterSummary().map((s) => [s.sink, s]));
    expect(by.quiet.count).toBe(5);
    expect(by.noisy.count).toBeLessThan(1000);
    expect(by.quiet.bytes + by.noisy.bytes).toBeLessThanOrEqual(64 * 1024);
  });

  it('list in pages of at most 1000, whatever limit is asked', async () => {
    const j = await kit.open();
    for (let b = 0; b < 3; b++) await j.deadLetter('s', stored(1 + b * 1000, 1000, 20), 'r');
    expect(await j.listDeadLetters('s', 5000)).toHaveLength(MAX_DEAD_LETTER_PAGE);
    expect(await j.listDeadLetters('s', -1)).toHaveLength(1);
    expect(await j.listDeadLetters('s', 0.5)).toHaveLength(1);
    const page2 = await j.listDeadLetters('s', 10, 1000);
    expect(page2.map((d) => d.n)).toEqual(Array.from({ length: 10 }, (_, k) => 1001 + k));
    expect(await j.listDeadLetters('s', 10, 3000)).toEqual([]);
    expect(await j.listDeadLetters('other', 10)).toEqual([]);
  });

  it('delete by number: gone from the listing, the count and the bytes; unknown numbers ignored', async () => {
    const j = await kit.open();
    await j.deadLetter('s', stored(1, 10), 'r');
    const before = j.deadLetterSummary()[0];
    expect(await j.deleteDeadLetters('s', [2, 4, 4, 99, -1])).toBe(2);
    const after = j.deadLetterSummary()[0];
    expect(after.count).toBe(8);
    expect(after.bytes).toBeLessThan(before.bytes);
    expect((await j.listDeadLetters('s', 100)).map((d) => d.n)).toEqual([1, 3, 5, 6, 7, 8, 9, 10]);
    expect(await j.deleteDeadLetters('nobody', [1])).toBe(0);
    // Numbers are never reused after a delete.
    await j.deadLetter('s', stored(50, 1), 'r');
    expect((await j.listDeadLetters('s', 1, 10))[0].n).toBe(11);
  });
});
