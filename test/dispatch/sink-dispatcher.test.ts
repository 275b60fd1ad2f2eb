// The delivery loop against a real journal on disk. The sink is an in-process collector, not an
// upstream: the HTTP and gRPC sinks are tested against real servers elsewhere; what is checked
// here is which seqs the loop hands over, and that its cursor never passes one it did not.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Logger } from '../../src/core/logger.ts';
import type { OutboundBatch, Sink } from '../../src/core/pipeline.ts';
import type { RecordInput } from '../../src/core/record.ts';
import { SinkDispatcher } from '../../src/dispatch/sink-dispatcher.ts';
import { Journal } from '../../src/journal/journal.ts';
import { HttpSink } from '../../src/sinks/http/http-sink.ts';
import { eventually } from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';

const noop = (): void => {};
const quiet: Logger = { debug: noop, info: noop, warn: noop, error: noop };
const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, k) => from + k);

class CollectingSink implements Sink {
  readonly name = 'collect';
  readonly type = 'test';
  readonly seqs: number[] = [];
  async send(batch: OutboundBatch): Promise<void> {
    for (const r of batch.records) this.seqs.push(r.seq);
  }
  async close(): Promise<void> {}
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

async function journal(): Promise<Journal> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeferry-dispatch-'));
  const j = await Journal.open(
    {
      path: path.join(dir, 'journal'),
      maxBytes: 1 << 30,
      onFull: 'reject',
      fsync: false,
      groupCommit: { maxRecords: 64, maxDelayMs: 1 },
      lockWaitMs: 0,
      // Four records in memory: the loop reads from disk, through the journal's kept iterators.
      tailRecords: 4,
    },
    quiet,
  );
  cleanups.push(async () => {
    await j.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return j;
}

function append(j: Journal, from: number, to: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = to - from + 1;
    for (const i of range(from, to)) {
      const r: RecordInput = {
        ts: Date.now(),
        source: 'test',
        device: 'd',
        topic: 't',
        payload: Buffer.from(`m${i}`),
      };
      j.append(
        r,
        (err) => {
          if (err) reject(err);
          else if (--left === 0) resolve();
        },
        null,
      );
    }
  });
}

describe('SinkDispatcher', () => {
  it('a batch that ended exactly where its disk read ended does not step over the records committed next', async () => {
    const j = await journal();
    const sink = new CollectingSink();
    const d = new SinkDispatcher(
      sink,
      j,
      {
        routes: ['#'],
        batch: { maxRecords: 50, maxBytes: 1 << 20, lingerMs: 0 },
        retry: { minMs: 10, maxMs: 100 },
        timeoutMs: 5_000,
      },
      quiet,
    );
    // Each round commits exactly one batch's worth while the loop is idle: its read takes the
    // last record of the iterator's snapshot, and the next read must see the newer ones.
    await append(j, 1, 50);
    await d.start();
    cleanups.push(() => d.stop(1_000));
    for (let round = 1; round < 6; round++) {
      await eventually(() => d.position === round * 50, `cursor at ${round * 50}`, 10_000, 5);
      await append(j, round * 50 + 1, (round + 1) * 50);
    }
    await eventually(() => d.position === 300, 'cursor at 300', 10_000, 5);
    expect(sink.seqs).toEqual(range(1, 300));
    expect(d.status().counters).toMatchObject({ delivered: 300, deadLettered: 0, filtered: 0 });
  });
});

describe('SinkDispatcher routes', () => {
  it('a $SYS/x record goes to the sink routed $SYS/#, not to the one routed # [MQTT-4.7.2-1]', async () => {
    const j = await journal();
    const topics = ['a/1', '$SYS/x', 'a/2', '$SYS/y/z', 'a/3'];
    const received: Record<string, string[]> = {};
    const dispatchers: SinkDispatcher[] = [];
    for (const [name, routes] of [
      ['all', ['#']],
      ['sys', ['$SYS/#']],
    ] as const) {
      const rx = new HttpReceiver();
      await rx.start();
      cleanups.push(() => rx.stop());
      received[name] = [];
      rx.respond = (b) => {
        for (const r of b.records) received[name].push(r.topic);
        return { status: 200 };
      };
      const sink = new HttpSink({ name, url: rx.url, payloadEncoding: 'utf8', timeoutMs: 5_000 });
      const d = new SinkDispatcher(
        sink,
        j,
        {
          routes,
          batch: { maxRecords: 50, maxBytes: 1 << 20, lingerMs: 0 },
          retry: { minMs: 10, maxMs: 100 },
          timeoutMs: 5_000,
        },
        quiet,
      );
      await d.start();
      cleanups.push(() => d.stop(1_000));
      dispatchers.push(d);
    }
    await new Promise<void>((resolve, reject) => {
      let left = topics.length;
      for (const topic of topics) {
        j.append(
          { ts: Date.now(), source: 'test', device: 'd', topic, payload: Buffer.from(topic) },
          (err) => (err ? reject(err) : --left === 0 && resolve()),
          null,
        );
      }
    });
    await eventually(
      () => dispatchers.every((d) => d.position === topics.length),
      'both sinks past every record',
    );
    expect(received.all).toEqual(['a/1', 'a/2', 'a/3']);
    expect(received.sys).toEqual(['$SYS/x', '$SYS/y/z']);
    expect(dispatchers[0].status().counters).toMatchObject({ delivered: 3, filtered: 2 });
    expect(dispatchers[1].status().counters).toMatchObject({ delivered: 2, filtered: 3 });
  });
});

describe('SinkDispatcher failures', () => {
  it('an unexpected error in the loop is logged once, waited out in backoff, and the loop resumes from its cursor', async () => {
    const j = await journal();
    const rx = new HttpReceiver();
    await rx.start();
    cleanups.push(() => rx.stop());
    const errors: string[] = [];
    const log: Logger = { ...quiet, error: (_o, msg) => errors.push(msg) };
    const d = new SinkDispatcher(
      new HttpSink({ name: 'up', url: rx.url, payloadEncoding: 'utf8', timeoutMs: 5_000 }),
      j,
      {
        routes: ['#'],
        batch: { maxRecords: 10, maxBytes: 1 << 20, lingerMs: 0 },
        retry: { minMs: 10, maxMs: 100 },
        timeoutMs: 5_000,
      },
      log,
    );
    await d.start();
    cleanups.push(() => d.stop(1_000));
    await append(j, 1, 10);
    await eventually(() => d.position === 10, 'the first batch delivered');

    // Injected on the real journal instance: a call the loop makes throwing, as a bug would
    // (the journal's own failures are covered by the shared sink suite).
    let broken = true;
    let thrown = 0;
    const expiryCutoff = j.expiryCutoff.bind(j);
    j.expiryCutoff = (...args) => {
      if (!broken) return expiryCutoff(...args);
      thrown++;
      throw new TypeError('injected: not a function');
    };
    await append(j, 11, 30);
    await eventually(() => thrown >= 3, 'the loop failing again after its backoff');
    expect(d.status()).toMatchObject({ state: 'backoff', cursor: 10 });
    expect(d.status().lastError).toBe('delivery loop failed: injected: not a function');
    expect(errors).toEqual(['sink delivery loop failed; resuming from its cursor after a backoff']);

    broken = false;
    await eventually(() => d.position === 30, 'the loop resumed');
    expect(rx.records.map((r) => r.seq)).toEqual(range(1, 30));
    expect(d.status()).toMatchObject({ state: 'up', lastError: null });
  });
});
