// A link too slow to carry a full batch within the sink's deadline (a 4G upload under a large
// batch). Resending the same batch would time out forever; the loop must send fewer records
// after a deadline and grow back once calls succeed. test/integration/link-faults.test.ts does
// the same over a real token-bucket link in a network namespace; this one runs everywhere.

import { afterEach, describe, expect, it } from 'vitest';
import { SinkSendError } from '../../src/core/errors.ts';
import type { OutboundBatch, Sink } from '../../src/core/pipeline.ts';
import { eventually } from '../helpers/daemon.ts';
import {
  appendRange,
  openJournal,
  range,
  runCleanups,
  startDispatcher,
} from '../helpers/dispatch-fixture.ts';

afterEach(runCleanups);

/** Takes `msPerRecord` per record of a call, as a link of fixed throughput does; aborts on the signal. */
class ThroughputSink implements Sink {
  readonly name = 'slow';
  readonly type = 'test';
  readonly seqs: number[] = [];
  /** Size of every call, and whether it was acknowledged. */
  readonly calls: { size: number; ok: boolean }[] = [];
  msPerRecord: number;
  /** Calls whose seqs this returns true for are refused for good once they got through. */
  refuse: (seqs: number[]) => boolean = () => false;

  constructor(msPerRecord: number) {
    this.msPerRecord = msPerRecord;
  }

  send(batch: OutboundBatch, signal: AbortSignal): Promise<void> {
    const call = { size: batch.records.length, ok: false };
    this.calls.push(call);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const seqs = batch.records.map((r) => r.seq);
        if (this.refuse(seqs)) {
          reject(new SinkSendError('refused by the test upstream', false));
          return;
        }
        call.ok = true;
        for (const r of batch.records) this.seqs.push(r.seq);
        resolve();
      }, batch.records.length * this.msPerRecord);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(signal.reason as Error);
      });
    });
  }

  async close(): Promise<void> {}
}

/** Batches of 40 against a 200 ms deadline. */
const SLOW = {
  batch: { maxRecords: 40, maxBytes: 1 << 20, lingerMs: 0 },
  retry: { minMs: 5, maxMs: 20 },
  timeoutMs: 200,
};

describe('SinkDispatcher over a link slower than one batch per deadline', () => {
  it('halves the batch after each deadline until calls get through, then grows back to maxRecords', async () => {
    // 25 ms a record against a 200 ms deadline: at most 7 records a call get through.
    const sink = new ThroughputSink(25);
    const j = await openJournal();
    await appendRange(j, 1, 60);
    const d = await startDispatcher(sink, j, SLOW);
    await eventually(() => d.position === 60, 'the backlog delivered over the slow link');
    expect(sink.seqs).toEqual(range(1, 60));
    const failed = sink.calls.filter((c) => !c.ok).map((c) => c.size);
    // 5 records take 125 ms, over half the deadline: the size stays there, no call fails again.
    expect(failed).toEqual([40, 20, 10]);
    expect(Math.max(...sink.calls.filter((c) => c.ok).map((c) => c.size))).toBe(5);

    // The link gets fast again: calls double back up to the configured batch.
    sink.msPerRecord = 0;
    const before = sink.calls.length;
    await appendRange(j, 61, 400);
    await eventually(() => d.position === 400, 'the next records delivered');
    expect(sink.seqs).toEqual(range(1, 400));
    expect(sink.calls.slice(before).some((c) => c.ok && c.size === 40)).toBe(true);
  });

  it('a call refused for good after a shrink dead-letters only the records it carried', async () => {
    const sink = new ThroughputSink(25);
    // Any call holding seq 5 is refused (a 4xx): only the call that gets through the link says so.
    sink.refuse = (seqs) => seqs.includes(5);
    const j = await openJournal();
    await appendRange(j, 1, 40);
    const d = await startDispatcher(sink, j, SLOW);
    await eventually(() => d.position === 40, 'all 40 done');
    expect(sink.calls.slice(0, 4)).toEqual([
      { size: 40, ok: false },
      { size: 20, ok: false },
      { size: 10, ok: false },
      { size: 5, ok: false },
    ]);
    expect(d.status().counters.deadLettered).toBe(5);
    expect((await j.listDeadLetters('slow', 100)).map((l) => l.seq)).toEqual(range(1, 5));
    expect(sink.seqs).toEqual(range(6, 40));
  });
});
