// Durable consumers against a real journal in this process: an abandoned one expires and stops
// holding the journal, and one whose records the journal dropped is told of the gap.

import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/daemon.ts';
import {
  type InProcessGateway,
  inProcessGateway,
  type RawSub,
  rawSubscribe,
  type StreamMessage,
  subscribe,
  unary,
} from './in-process.ts';

let gw: InProcessGateway | null = null;
const raws: RawSub[] = [];
afterEach(async () => {
  for (const r of raws.splice(0)) r.close();
  await gw?.close();
  gw = null;
});

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Appends until one is refused (journal full under reject); returns how many were accepted. */
async function fill(g: InProcessGateway, limit = 10_000): Promise<number> {
  for (let i = 0; i < limit; i++) {
    const ok = await g.append(`t/${i}`, 'x'.repeat(200)).then(
      () => true,
      () => false,
    );
    if (!ok) return i;
  }
  throw new Error(`the journal took ${limit} appends without refusing one`);
}

describe('consumer expiry', () => {
  it('an abandoned consumer expires after expireAfter, its cursor is removed, and a journal full under reject takes appends again', async () => {
    gw = await inProcessGateway(
      { maxBytes: 32 * 1024, onFull: 'reject' },
      { consumers: { expireAfter: 300 } },
    );
    const g = gw;
    // A sink that delivers everything at once: without the consumer nothing would pin the journal.
    await g.journal.openCursor('sink/up');
    await g.append('t/first');
    // The consumer reads a record and never acks. While its stream is open it cannot expire.
    const abandoned = subscribe(g.client, { consumer: 'abandoned', start: 'START_EARLIEST' });
    await eventually(() => abandoned.records().length >= 1, 'the consumer got a record');
    const accepted = await fill(g);
    expect(accepted).toBeGreaterThan(10);
    await g.journal.commitCursor('sink/up', g.journal.lastCommittedSeq);
    await g.journal.trim();
    // Pinned: the sink is done with everything, the consumer with nothing.
    expect(g.journal.firstRetainedSeq).toBe(1);
    await expect(g.append('t/refused', 'x'.repeat(200))).rejects.toThrow(/full/);
    const listed = await unary<{ consumers: object[] }>(g.client, 'ListConsumers', {});
    expect(listed.consumers).toEqual([
      expect.objectContaining({ name: 'abandoned', position: 0, openStreams: 1, expiresAtMs: 0 }),
    ]);

    // The app goes away without an Ack.
    abandoned.stream.cancel();
    await eventually(() => g.journal.cursor('consumer/abandoned') === undefined, 'the consumer expired');
    expect(g.journal.cursorNames()).toEqual(['sink/up']);
    expect(g.server.consumers.removed).toEqual({ expired: 1, deleted: 0 });
    const expired = g.log.lines.filter((l) => l.msg.startsWith('consumer expired'));
    expect(expired).toEqual([
      expect.objectContaining({ level: 'warn', consumer: 'abandoned', position: 0, expireAfterMs: 300 }),
    ]);
    expect(await unary(g.client, 'ListConsumers', {})).toEqual({ consumers: [] });
    expect(await unary(g.client, 'Ack', { consumer: 'abandoned', seq: 1 }).catch((e) => e.code)).toBe(
      status.NOT_FOUND,
    );

    // Released: the sink's cursor alone decides, and appends are taken again.
    await g.journal.trim();
    expect(g.journal.firstRetainedSeq).toBeGreaterThan(accepted);
    for (let i = 0; i < 20; i++) await g.append(`t/after/${i}`, 'x'.repeat(200));
  });

  it('a consumer with an open stream or recent Acks does not expire; one streaming again resumes where it was', async () => {
    gw = await inProcessGateway({}, { consumers: { expireAfter: 1000 } });
    const g = gw;
    for (let i = 1; i <= 5; i++) await g.append(`t/${i}`);
    const reader = subscribe(g.client, { consumer: 'reader', start: 'START_EARLIEST' });
    const acker = subscribe(g.client, { consumer: 'acker', start: 'START_EARLIEST' });
    await eventually(() => reader.records().length === 5 && acker.records().length === 5, 'both read 5');
    await unary(g.client, 'Ack', { consumer: 'acker', seq: 2 });
    acker.stream.cancel();
    // Ack every 150 ms for over twice expireAfter; `reader` keeps its stream open all along.
    for (let i = 3; i <= 17; i++) {
      await new Promise((r) => setTimeout(r, 150));
      await unary(g.client, 'Ack', { consumer: 'acker', seq: Math.min(i, 5) });
    }
    expect(g.journal.cursor('consumer/acker')).toBe(5);
    expect(g.journal.cursor('consumer/reader')).toBe(0);
    expect(g.server.consumers.removed.expired).toBe(0);
    await g.append('t/6');
    const again = subscribe(g.client, { consumer: 'acker', start: 'START_EARLIEST' });
    await eventually(() => again.records().length >= 1, 'acker resumed');
    expect(again.records().map((r) => r.seq)).toEqual([6]);
    expect(reader.error).toBeNull();
  });
});

describe('consumer removal when the journal cannot write', () => {
  it('a delete while the journal refuses writes (closed here) still removes the consumer, with a warning, not an error', async () => {
    gw = await inProcessGateway();
    const g = gw;
    await g.append('t/1');
    const s = subscribe(g.client, { consumer: 'c', start: 'START_EARLIEST' });
    await eventually(() => s.records().length === 1, 'the consumer read seq 1');
    s.stream.cancel();
    await eventually(() => g.server.subscriptions.size === 0, 'the stream ended');
    await g.journal.close();
    expect(await g.server.consumers.delete('c')).toEqual({ endedStreams: 0 });
    expect(g.journal.cursor('consumer/c')).toBeUndefined();
    expect(g.server.consumers.list()).toEqual([]);
    expect(g.log.lines.filter((l) => l.msg.startsWith('consumer removed, but'))).toEqual([
      expect.objectContaining({ level: 'warn', consumer: 'c' }),
    ]);
  });
});

const gapOf = (m: StreamMessage) => m.gap;

describe('a durable Subscribe while the journal cannot write', () => {
  it('fails with UNAVAILABLE (worth a retry), not INTERNAL, and works once the journal has recovered', async () => {
    gw = await inProcessGateway();
    await gw.append('t/1');
    // The cursor registration is a journal write; a failing put is injected on the journal's
    // LevelDB handle (a full disk would fail the group commits first). Recovery reopens the
    // database, which drops the injected handle.
    const db = (gw.journal as unknown as { db: { put: (...a: unknown[]) => Promise<void> } }).db;
    db.put = () => Promise.reject(new Error('EIO: injected cursor write failure'));
    const sub = subscribe(gw.client, { consumer: 'app', start: 'START_EARLIEST' });
    await eventually(() => sub.error !== null, 'the stream failed');
    expect(sub.error?.code).toBe(status.UNAVAILABLE);
    expect(gw.log.lines.some((l) => l.msg === 'subscribe stream failed')).toBe(false);
    const j = gw.journal;
    await eventually(() => j.writable, 'the journal reopened');
    const again = subscribe(gw.client, { consumer: 'app', start: 'START_EARLIEST' });
    await eventually(() => again.records().length === 1, 'the record streamed');
    again.stream.cancel();
  });
});

describe('gaps: the disk budget wins, and the subscriber is told', () => {
  it('a consumer whose records were dropped (drop-oldest) gets a gap notice, then the oldest retained record onwards', async () => {
    gw = await inProcessGateway({ maxBytes: 32 * 1024, onFull: 'drop-oldest' });
    const g = gw;
    await g.append('t/0');
    const first = subscribe(g.client, { consumer: 'late', start: 'START_EARLIEST' });
    await eventually(() => first.records().length >= 1, 'the consumer got seq 1');
    first.stream.cancel();
    await eventually(() => g.server.subscriptions.size === 0, 'the first stream ended');
    // Well past the budget: the oldest records go.
    for (let i = 1; i <= 600; i++) await g.append(`t/${i}`, 'x'.repeat(200));
    const oldest = g.journal.firstRetainedSeq;
    const last = g.journal.lastCommittedSeq;
    expect(oldest).toBeGreaterThan(2);
    expect(g.journal.counters.droppedFull).toBeGreaterThan(0);

    const again = subscribe(g.client, { consumer: 'late', start: 'START_EARLIEST' });
    await eventually(() => again.messages.at(-1)?.seq === last, 'caught up to the newest record');
    expect(again.messages[0].gap).toEqual({ fromSeq: 1, toSeq: oldest - 1, reason: 'not retained' });
    expect(again.messages[0]).toMatchObject({ seq: 0, id: '', topic: '' });
    expect(again.messages.slice(1).map(gapOf)).toEqual(again.messages.slice(1).map(() => null));
    expect(again.records().map((r) => r.seq)).toEqual(range(oldest, last));
    // A plain Subscribe from a seq no longer retained is told the same way.
    const atSeq = subscribe(g.client, { start: 'START_AT_SEQ', seq: 2 });
    await eventually(() => atSeq.messages.at(-1)?.seq === last, 'START_AT_SEQ caught up');
    expect(atSeq.messages[0].gap).toEqual({ fromSeq: 2, toSeq: oldest - 1, reason: 'not retained' });
    expect(atSeq.records().map((r) => r.seq)).toEqual(range(oldest, last));
    // START_EARLIEST starts at the oldest retained: nothing missed, no notice.
    const earliest = subscribe(g.client, { start: 'START_EARLIEST' });
    await eventually(() => earliest.messages.at(-1)?.seq === last, 'START_EARLIEST caught up');
    expect(earliest.messages.map((m) => m.seq)).toEqual(range(oldest, last));
  });

  it('a stream held by flow control while the journal drops under it gets a gap notice in the middle, then goes on', async () => {
    gw = await inProcessGateway({ maxBytes: 256 * 1024, onFull: 'drop-oldest' });
    const g = gw;
    const body = 'x'.repeat(500);
    for (let i = 1; i <= 200; i++) await g.append(`t/${i}`, body);
    const held = rawSubscribe(Number(g.server.addresses().port), { start: 'START_EARLIEST' });
    raws.push(held);
    await eventually(() => held.buffered() > 0, 'the held stream got its first window');
    // The server is stuck at flow control somewhere in the first ~130 records; drop far past it.
    for (let i = 201; i <= 2000; i++) await g.append(`t/${i}`, body);
    const oldest = g.journal.firstRetainedSeq;
    const last = g.journal.lastCommittedSeq;
    expect(oldest).toBeGreaterThan(200);
    held.read();
    await eventually(() => held.messages.at(-1)?.seq === last, 'the held stream caught up');
    const gaps = held.messages.filter((m) => m.gap);
    expect(gaps).toHaveLength(1);
    const at = held.messages.findIndex((m) => m.gap);
    const gap = held.messages[at].gap!;
    // Everything before the notice, the notice's range, and everything after: each seq once.
    const before = held.messages.slice(0, at).map((m) => m.seq);
    const after = held.messages.slice(at + 1).map((m) => m.seq);
    expect(before).toEqual(range(1, gap.fromSeq - 1));
    expect(gap.reason).toBe('not retained');
    expect(gap.toSeq).toBeGreaterThanOrEqual(oldest - 1);
    expect(after).toEqual(range(gap.toSeq + 1, last));
  });
});
