// Removing a cursor (a deleted or expired durable consumer, a sink no longer configured) while
// devices keep publishing: a real Journal on disk under a steady stream of appends.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JournalKit, record } from './journal-kit.ts';

let kit: JournalKit;
beforeEach(() => {
  kit = new JournalKit();
});
afterEach(() => kit.cleanup());

describe('removeCursor under steady ingest', () => {
  it('completes while appends keep arriving (it waits for the batch in flight, not for the writer to go idle)', async () => {
    const j = await kit.open();
    await j.openCursor('consumer/a', 0);
    let stop = false;
    let i = 0;
    let committed = 0;
    // A publisher that never pauses: one record every turn of the event loop.
    const pump = (): void => {
      if (stop) return;
      j.append(
        record(i++),
        (err) => {
          if (!err) committed++;
        },
        null,
      );
      setImmediate(pump);
    };
    pump();
    try {
      await new Promise((r) => setTimeout(r, 200));
      const removed = j.removeCursor('consumer/a').then(() => 'removed' as const);
      const outcome = await Promise.race([
        removed,
        new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), 5_000)),
      ]);
      // Before: removeCursor waited for the writer to be idle, which it never is under this
      // load: a DeleteConsumer call (and the consumer expiry sweep) hung as long as devices published.
      expect(outcome).toBe('removed');
      expect(j.cursor('consumer/a')).toBeUndefined();
      expect(committed).toBeGreaterThan(0);
    } finally {
      stop = true;
      await j.sync();
    }
    // And gone from disk: a batch written after the delete did not bring its key back.
    await j.close();
    const again = await kit.open();
    expect(again.cursorNames()).not.toContain('consumer/a');
  });
});
