// SinkDispatcher.replayDeadLetters through a real HTTP sink and receiver, over a real Journal on
// disk: what comes back, when (between the loop's own batches), and what stays dead-lettered.

import { afterEach, describe, expect, it } from 'vitest';
import { encodeRecord } from '../../src/core/record.ts';
import { HttpSink } from '../../src/sinks/http/http-sink.ts';
import { eventually } from '../helpers/daemon.ts';
import {
  appendRange,
  onCleanup,
  openJournal,
  range,
  runCleanups,
  startDispatcher,
} from '../helpers/dispatch-fixture.ts';
import { HttpReceiver, type ReceivedBatch } from '../helpers/http-receiver.ts';

afterEach(runCleanups);

const has = (b: ReceivedBatch, payload: string) => b.records.some((r) => r.payload === payload);

/** Records 1..30 in batches of 10; the receiver refuses the batches holding one of `poison`. */
async function withDeadLetters(poison: string[]) {
  const rx = new HttpReceiver();
  await rx.start();
  onCleanup(() => rx.stop());
  const refusing = new Set(poison);
  /** First seq of every request, in arrival order, whatever the answer. */
  const requests: number[] = [];
  let hangOn: string | null = null;
  rx.respond = (b) => {
    requests.push(b.records[0].seq);
    if (hangOn !== null && has(b, hangOn)) {
      hangOn = null;
      return null;
    }
    return [...refusing].some((p) => has(b, p)) ? { status: 400 } : { status: 200 };
  };
  const j = await openJournal();
  await appendRange(j, 1, 30);
  const d = await startDispatcher(
    new HttpSink({ name: 'up', url: rx.url, payloadEncoding: 'utf8', timeoutMs: 400 }),
    j,
    { batch: { maxRecords: 10, maxBytes: 1 << 20, lingerMs: 0 }, timeoutMs: 400 },
  );
  await eventually(() => d.position === 30, 'the first 30 done');
  return {
    rx,
    j,
    d,
    requests,
    refusing,
    hangNext: (p: string) => {
      hangOn = p;
    },
  };
}

describe('SinkDispatcher.replayDeadLetters', () => {
  it('sends the dead letters again with their original ids, between two of the loop batches, and deletes them once accepted', async () => {
    const t = await withDeadLetters(['m15']);
    expect(await t.j.deadLetterCount('up')).toBe(10);
    expect(t.rx.records.map((r) => r.seq)).toEqual([...range(1, 10), ...range(21, 30)]);
    t.refusing.clear();

    // The loop's next batch hangs at the upstream; a replay asked for meanwhile must wait for
    // that batch to be done (abandoned at its deadline, sent again, accepted).
    t.hangNext('m31');
    await appendRange(t.j, 31, 40);
    await eventually(() => t.requests.includes(31), 'the loop batch in flight');
    const result = await t.d.replayDeadLetters(100);

    expect(result).toEqual({ replayed: 10, remaining: false });
    const from31 = t.requests.slice(t.requests.indexOf(31));
    // The resend after the deadline carries half the batch (the dispatcher's answer to a link
    // too slow for a full one), then the other half.
    expect(from31).toEqual([31, 31, 36, 11]);
    const replayed = t.rx.records.filter((r) => r.seq >= 11 && r.seq <= 20);
    expect(replayed.map((r) => r.seq)).toEqual(range(11, 20));
    expect(replayed.map((r) => r.id)).toEqual(range(11, 20).map((s) => `${t.j.epoch}-${s}`));
    expect(replayed.map((r) => r.payload)).toEqual(range(11, 20).map((s) => `m${s}`));
    expect(await t.j.deadLetterCount('up')).toBe(0);
    await eventually(() => t.d.position === 40, 'the loop went on');
    expect(t.d.status().counters).toMatchObject({ replayed: 10, deadLettered: 10, delivered: 30 });
  });

  it('a batch still refused stays dead-lettered once; others are replayed; limit and remaining hold', async () => {
    const t = await withDeadLetters(['m5', 'm25']);
    const before = await t.j.listDeadLetters('up', 100);
    expect(before.map((l) => l.seq)).toEqual([...range(1, 10), ...range(21, 30)]);
    t.refusing.delete('m25');

    // The loop is idle: the request wakes it. Only 1-10 come first (still refused: kept as they were).
    expect(await t.d.replayDeadLetters(10)).toEqual({ replayed: 0, remaining: true });
    expect(await t.j.listDeadLetters('up', 100)).toEqual(before);

    // All of them: 1-10 refused again and kept, 21-30 accepted and deleted.
    expect(await t.d.replayDeadLetters(100)).toEqual({ replayed: 10, remaining: true });
    const after = await t.j.listDeadLetters('up', 100);
    expect(after).toEqual(before.slice(0, 10));
    expect(t.rx.records.filter((r) => r.seq >= 21).map((r) => r.seq)).toEqual(range(21, 30));
    expect(t.d.status().counters).toMatchObject({ replayed: 10, deadLettered: 20 });

    t.refusing.clear();
    expect(await t.d.replayDeadLetters(4)).toEqual({ replayed: 4, remaining: true });
    expect(await t.d.replayDeadLetters(1000)).toEqual({ replayed: 6, remaining: false });
    expect(t.rx.records.filter((r) => r.seq <= 10).map((r) => r.seq)).toEqual(range(1, 10));
    await expect(t.d.replayDeadLetters(0)).rejects.toThrow('limit must be an integer >= 1');
  });

  it('is refused at once while the sink backs off on a failing upstream, instead of waiting with it', async () => {
    const t = await withDeadLetters(['m15']);
    t.rx.respond = () => ({ status: 503 });
    await appendRange(t.j, 31, 35);
    await eventually(() => t.d.status().state === 'backoff', 'the sink backing off');
    await expect(t.d.replayDeadLetters(10)).rejects.toThrow(/backoff.*replay once it is up/);
    expect(await t.j.deadLetterCount('up')).toBe(10);
    t.rx.respond = () => ({ status: 200 });
    await eventually(() => t.d.position === 35, 'delivered once the upstream is back');
    expect(await t.d.replayDeadLetters(10)).toEqual({ replayed: 10, remaining: false });
  });

  it('asked for while a loop batch is in flight, and that batch then fails: refused, not held while the sink backs off', async () => {
    const t = await withDeadLetters(['m15']);
    // The next loop batch hangs (abandoned at its deadline), then the upstream answers 503 for ever.
    let first = true;
    t.rx.respond = () => {
      if (first) {
        first = false;
        return null;
      }
      return { status: 503 };
    };
    await appendRange(t.j, 31, 35);
    await eventually(() => !first, 'the loop batch in flight');
    expect(t.d.status().state).toBe('up');
    const replay = t.d.replayDeadLetters(10).then(
      () => 'replayed',
      (err: Error) => err.message,
    );
    const outcome = await Promise.race([
      replay,
      new Promise<string>((r) => setTimeout(() => r('still waiting'), 5_000)),
    ]);
    // Before: accepted while the sink was up, then held as long as the upstream failed.
    expect(outcome).toMatch(/backoff.*replay once it is up/);
    expect(await t.j.deadLetterCount('up')).toBe(10);
    t.rx.respond = () => ({ status: 200 });
    await eventually(() => t.d.position === 35, 'delivered once the upstream is back');
    expect(await t.d.replayDeadLetters(10)).toEqual({ replayed: 10, remaining: false });
  });

  it('reads the dead letters a few MiB at a time, not a whole page of 1000 big ones', async () => {
    const rx = new HttpReceiver();
    await rx.start();
    onCleanup(() => rx.stop());
    const j = await openJournal();
    // 40 records of 256 KiB refused for their size (HTTP 413) earlier: 10 MiB of dead letters.
    const body = (s: number) =>
      encodeRecord(
        {
          ts: 1,
          source: 'mqtt',
          device: 'd',
          topic: 't',
          payload: Buffer.alloc(256 * 1024, 0x30 + (s % 10)),
        },
        0,
      );
    for (let s = 1; s <= 40; s++) await j.deadLetter('up', [{ seq: s, ts: 1, body: body(s) }], 'HTTP 413');
    let maxPage = 0;
    const list = j.listDeadLetters.bind(j);
    j.listDeadLetters = async (...args: Parameters<typeof j.listDeadLetters>) => {
      const page = await list(...args);
      maxPage = Math.max(
        maxPage,
        page.reduce((n, d) => n + d.body.length, 0),
      );
      return page;
    };
    const d = await startDispatcher(
      new HttpSink({ name: 'up', url: rx.url, payloadEncoding: 'base64', timeoutMs: 5_000 }),
      j,
    );
    expect(await d.replayDeadLetters(1000)).toEqual({ replayed: 40, remaining: false });
    expect(rx.records.map((r) => r.seq)).toEqual(range(1, 40));
    // Before: one read of all 40 (up to the whole dead-letter budget, 100 MiB by default). Now
    // 4 MiB, and the one dead letter that crosses it.
    expect(maxPage).toBeLessThanOrEqual(4 * 1024 * 1024 + body(1).length);
  });
});
