// The gRPC sink's message limit, through a real SinkDispatcher over a real Journal on disk,
// against the reference Ingest receiver (grpc-js, its default 4 MiB receive limit) on 127.0.0.1.
// The cases every sink shares are in sink-suite.ts.

import { afterEach, describe, expect, it } from 'vitest';
import { GrpcIngestReceiver } from '../../bench/receivers/grpc-ingest-receiver.ts';
import { parseConfig } from '../../src/config/load.ts';
import { GrpcSink } from '../../src/sinks/grpc/grpc-sink.ts';
import { eventually } from '../helpers/daemon.ts';
import {
  appendRange,
  captureLog,
  onCleanup,
  openJournal,
  range,
  runCleanups,
  startDispatcher,
} from '../helpers/dispatch-fixture.ts';

afterEach(runCleanups);

const KiB = 1024;
const MiB = 1024 * KiB;

async function receiver(): Promise<GrpcIngestReceiver> {
  const rx = new GrpcIngestReceiver();
  await rx.start();
  onCleanup(() => rx.stop());
  return rx;
}

function sink(rx: GrpcIngestReceiver, maxMessageBytes: number, log = captureLog()): GrpcSink {
  return new GrpcSink({ name: 'up', target: rx.target, node: 'n', timeoutMs: 10_000, maxMessageBytes, log });
}

/** Payload of record i: `i` as text, padded to `bytes` so the receiver can check each one. */
const padded = (bytes: number) => (i: number) => {
  const b = Buffer.alloc(bytes, 0x2e);
  b.write(`m${i};`);
  return b;
};
const indexOf = (payload: Buffer) => Number(payload.toString('latin1', 1, payload.indexOf(';')));

describe('grpc sink: message limit', () => {
  it('a 16 MiB batch of 9.6 MiB goes to a 4 MiB receiver as calls that fit: all in order, none dead-lettered, 3 calls', async () => {
    const rx = await receiver();
    const j = await openJournal();
    const N = 48;
    await appendRange(j, 1, N, { payload: padded(200 * KiB) });
    const d = await startDispatcher(sink(rx, 4 * MiB), j, {
      batch: { maxRecords: 500, maxBytes: 16 * MiB, lingerMs: 0 },
      timeoutMs: 20_000,
    });

    await eventually(() => d.position === N, 'every record acknowledged', 20_000);
    expect(rx.records.map((r) => r.seq)).toEqual(range(1, N));
    expect(rx.records.map((r) => indexOf(r.payload))).toEqual(range(1, N));
    expect(rx.duplicates).toBe(0);
    expect(d.status().counters).toMatchObject({ delivered: N, deadLettered: 0, retries: 0 });
    // 20 records of 200 KiB fit in 4 MiB: 20 + 20 + 8, each call accepted the first time.
    expect(rx.calls).toBe(3);
    expect(rx.pushes).toBe(3);
  });

  it('maxMessageBytes above the receiver limit: one refused call, the limit learned from its answer, then calls that fit', async () => {
    const rx = await receiver();
    const j = await openJournal();
    const N = 48;
    await appendRange(j, 1, N, { payload: padded(200 * KiB) });
    const log = captureLog();
    const s = sink(rx, 64 * MiB, log);
    const d = await startDispatcher(s, j, {
      batch: { maxRecords: 500, maxBytes: 16 * MiB, lingerMs: 0 },
      timeoutMs: 20_000,
    });

    await eventually(() => d.position === N, 'every record acknowledged', 20_000);
    expect(rx.records.map((r) => r.seq)).toEqual(range(1, N));
    expect(d.status().counters).toMatchObject({ delivered: N, deadLettered: 0 });
    // grpc-js names its limit ("larger than max (X vs 4194304)"): the sink takes it as is.
    expect(s.messageLimit).toBe(4 * MiB);
    expect(rx.calls).toBe(4);
    expect(rx.pushes).toBe(3);
    expect(log.lines.filter((l) => l.msg.includes('too large'))).toHaveLength(1);

    // Later batches are cut to the learned limit at once: no refused call again.
    await appendRange(j, N + 1, 2 * N, { payload: padded(200 * KiB) });
    await eventually(() => d.position === 2 * N, 'the second lot acknowledged', 20_000);
    expect(rx.records.map((r) => r.seq)).toEqual(range(1, 2 * N));
    expect(rx.calls - 4).toBe(rx.pushes - 3);
  });

  it('a record that cannot fit the limit alone is dead-lettered by itself, with the reason; its neighbours are delivered', async () => {
    const rx = await receiver();
    const j = await openJournal();
    // Record 5 is 100 KiB, the others 1 KiB, the limit 64 KiB.
    await appendRange(j, 1, 10, { payload: (i) => padded(i === 5 ? 100 * KiB : KiB)(i) });
    const d = await startDispatcher(sink(rx, 64 * KiB), j, {
      batch: { maxRecords: 500, maxBytes: 16 * MiB, lingerMs: 0 },
    });

    await eventually(() => d.position === 10, 'the batch done', 10_000);
    expect(rx.records.map((r) => r.seq)).toEqual([1, 2, 3, 4, 6, 7, 8, 9, 10]);
    expect(d.status().counters).toMatchObject({ delivered: 9, deadLettered: 1 });
    const dl = await j.listDeadLetters('up', 10);
    expect(dl.map((l) => l.seq)).toEqual([5]);
    expect(dl[0].reason).toMatch(
      /record 5 makes a \d+-byte request, over the upstream's message limit of 65536 bytes/,
    );
    // 1-4 in one call; then 6-10: the refused record was never sent.
    expect(rx.calls).toBe(2);
  });
});

describe('grpc sink: a split batch refused in one call', () => {
  it('dead-letters only the records of the refused call; the calls after it are still sent', async () => {
    const rx = await receiver();
    // The upstream refuses (INVALID_ARGUMENT) the call that carries record 25, and only that one.
    rx.respond = (req) => (req.records.some((r) => r.seq === 25) ? 3 : 0);
    const j = await openJournal();
    const N = 48;
    await appendRange(j, 1, N, { payload: padded(200 * KiB) });
    const d = await startDispatcher(sink(rx, 4 * MiB), j, {
      batch: { maxRecords: 500, maxBytes: 16 * MiB, lingerMs: 0 },
      timeoutMs: 20_000,
    });

    await eventually(() => d.position === N, 'the batch done', 20_000);
    // Calls of 20 + 20 + 8: the second (21-40) refused, the third (41-48) sent and accepted.
    // Before: 21-48 were all dead-lettered, 41-48 without ever being sent.
    expect(rx.records.map((r) => r.seq)).toEqual([...range(1, 20), ...range(41, 48)]);
    expect(d.status().counters).toMatchObject({ delivered: 28, deadLettered: 20 });
    const dl = await j.listDeadLetters('up', 100);
    expect(dl.map((l) => l.seq)).toEqual(range(21, 40));
    expect(rx.calls).toBe(3);
  });
});

describe('grpc sink config: maxMessageBytes', () => {
  const grpcSink = (extra: Record<string, unknown> = {}) => ({
    sinks: [{ name: 'up', type: 'grpc', target: 'ingest:443', ...extra }],
  });

  it('defaults to 4 MiB, takes units, and a bad value names the field', () => {
    expect(parseConfig(grpcSink(), {}).sinks[0]).toMatchObject({ maxMessageBytes: 4 * MiB });
    expect(parseConfig(grpcSink({ maxMessageBytes: '16MiB' }), {}).sinks[0]).toMatchObject({
      maxMessageBytes: 16 * MiB,
    });
    expect(() => parseConfig(grpcSink({ maxMessageBytes: 100 }), {})).toThrow(
      /sinks\[0\]\.maxMessageBytes: must be at least 1024 bytes \(got 100\)/,
    );
  });
});
