// The cases every sink passes (STYLE.md habit 6, as Telegraf's buffer suite and MQTT.js's store
// suite): a real SinkDispatcher over a real Journal on disk, the sink under test, and a real
// upstream on 127.0.0.1 that the driver can make accept, fail retryably, refuse for good, refuse
// the credentials, hang, or go away. A new sink joins with a driver and a one-line test file
// (see http.sink-suite.test.ts); nothing here knows a transport.

import { afterEach, describe, expect, it } from 'vitest';
import { JournalWriteError } from '../../src/core/errors.ts';
import type { Sink } from '../../src/core/pipeline.ts';
import type { DispatchOptions, SinkDispatcher } from '../../src/dispatch/sink-dispatcher.ts';
import type { Journal } from '../../src/journal/journal.ts';
import { eventually } from '../helpers/daemon.ts';
import {
  appendRange,
  captureLog,
  type LogLine,
  onCleanup,
  openJournal,
  range,
  runCleanups,
  startDispatcher,
} from '../helpers/dispatch-fixture.ts';

/**
 * What the upstream does with one call: take it; fail it so that a retry can succeed (HTTP
 * 503, gRPC UNAVAILABLE); refuse the records for good (HTTP 400, INVALID_ARGUMENT); refuse the
 * credentials (HTTP 401, UNAUTHENTICATED); or never answer.
 */
export type UpstreamAnswer = 'accept' | 'retry' | 'refuse' | 'auth' | 'hang';

export interface AcceptedRecord {
  seq: number;
  id: string;
  /** The record's payload as text (the suite's payloads are ASCII: `m<seq>`). */
  payload: string;
}

/** A real upstream the suite can steer. */
export interface SuiteUpstream {
  /** Decides each call from the payloads of its records; `accept` until set. */
  answer: (payloads: string[]) => UpstreamAnswer;
  /** Calls that reached the upstream's handler, whatever the answer. */
  calls(): number;
  /** Records of the accepted calls in arrival order; a redelivered record may appear again. */
  accepted(): AcceptedRecord[];
  /** Goes away: stops listening and drops its connections. */
  down(): Promise<void>;
  /** Comes back at the same address. */
  up(): Promise<void>;
  close(): Promise<void>;
}

export interface SinkDriver<U extends SuiteUpstream = SuiteUpstream> {
  /** Names the sink type in the test titles. */
  name: string;
  /** Starts an upstream on 127.0.0.1 that accepts everything. */
  startUpstream(): Promise<U>;
  /** The sink under test, pointing at `upstream`. */
  createSink(upstream: U, opts: { name: string; timeoutMs: number }): Sink;
  /**
   * The upstream acknowledges each record on its own (MQTT PUBACK), so a final refusal concerns
   * the one record refused, not the batch it travelled in.
   */
  refusesEachRecord?: boolean;
}

const SINK = 'suite';

export function sinkSuite<U extends SuiteUpstream>(driver: SinkDriver<U>): void {
  describe(`${driver.name} sink: the shared sink suite`, () => {
    afterEach(runCleanups);

    interface Rig {
      upstream: U;
      journal: Journal;
      d: SinkDispatcher;
      log: { lines: LogLine[] };
    }

    /** A journal with `preload` records committed, an upstream, and the dispatcher started. */
    async function rig(
      opts: { preload?: number; timeoutMs?: number; dispatch?: Partial<DispatchOptions> } = {},
    ): Promise<Rig> {
      const upstream = await driver.startUpstream();
      onCleanup(() => upstream.close());
      const journal = await openJournal();
      if (opts.preload) await appendRange(journal, 1, opts.preload);
      const timeoutMs = opts.timeoutMs ?? 5_000;
      const log = captureLog();
      const d = await startDispatcher(
        driver.createSink(upstream, { name: SINK, timeoutMs }),
        journal,
        {
          batch: { maxRecords: 10, maxBytes: 1 << 20, lingerMs: 0 },
          retry: { minMs: 10, maxMs: 100 },
          timeoutMs,
          ...opts.dispatch,
        },
        log,
      );
      return { upstream, journal, d, log };
    }

    /** Each record once (by id, first arrival), and those in journal order with their ids. */
    function expectDelivered(r: Rig, seqs: number[]): void {
      const seen = new Set<string>();
      const first = r.upstream.accepted().filter((x) => !seen.has(x.id) && seen.add(x.id));
      expect(first.map((x) => x.seq)).toEqual(seqs);
      expect(first.map((x) => x.id)).toEqual(seqs.map((s) => `${r.journal.epoch}-${s}`));
      expect(first.map((x) => x.payload)).toEqual(seqs.map((s) => `m${s}`));
    }

    async function caughtUp(r: Rig, seq: number): Promise<void> {
      await eventually(() => r.d.position === seq, `the sink's cursor at ${seq}`);
    }

    it('delivers in journal order, each record carrying its id', async () => {
      const r = await rig({ preload: 300 });
      await appendRange(r.journal, 301, 500);
      await caughtUp(r, 500);
      expectDelivered(r, range(1, 500));
      expect(r.upstream.calls()).toBeGreaterThanOrEqual(50);
      expect(r.d.status()).toMatchObject({ state: 'up', backlog: 0, lastError: null });
      expect(r.d.status().counters).toMatchObject({ delivered: 500, deadLettered: 0, retries: 0 });
      await eventually(() => r.journal.cursor(`sink/${SINK}`) === 500, 'the cursor persisted');
    });

    it('retries the retryable class with the same records, then delivers them: none lost, none dead-lettered', async () => {
      const r = await rig();
      let failed = 0;
      r.upstream.answer = () => (failed++ < 3 ? 'retry' : 'accept');
      await appendRange(r.journal, 1, 100);
      await caughtUp(r, 100);
      expectDelivered(r, range(1, 100));
      expect(failed).toBeGreaterThanOrEqual(4);
      expect(r.d.status().counters).toMatchObject({ delivered: 100, deadLettered: 0, retries: 3 });
      expect(r.d.status()).toMatchObject({ state: 'up', lastError: null });
      expect(await r.journal.deadLetterCount(SINK)).toBe(0);
    });

    it('dead-letters a batch of the final class once, then delivers the records after it', async () => {
      // Committed before the loop starts, so batches are 1-10, 11-20, ...: 21-30 holds the poison.
      const r = await rig({ preload: 60 });
      let poisonCalls = 0;
      r.upstream.answer = (p) => {
        if (!p.includes('m25')) return 'accept';
        poisonCalls++;
        return 'refuse';
      };
      await caughtUp(r, 60);
      const poison = driver.refusesEachRecord ? [25] : range(21, 30);
      expectDelivered(
        r,
        range(1, 60).filter((s) => !poison.includes(s)),
      );
      expect(poisonCalls).toBe(1);
      const dl = await r.journal.listDeadLetters(SINK, 100);
      expect(dl.map((l) => l.seq)).toEqual(poison);
      expect(r.d.status().counters).toMatchObject({
        delivered: 60 - poison.length,
        deadLettered: poison.length,
        retries: 0,
      });
      expect(r.d.status().state).toBe('up');
    });

    it('rides out an outage: the upstream goes away, records keep coming, all arrive in order once it is back', async () => {
      const r = await rig({ preload: 50 });
      await caughtUp(r, 50);
      await r.upstream.down();
      await appendRange(r.journal, 51, 200);
      await eventually(
        () => r.d.status().state === 'backoff' && r.d.status().counters.retries >= 2,
        'the sink backing off',
      );
      expect(r.d.position).toBe(50);
      expect(r.d.status().backlog).toBe(150);
      await r.upstream.up();
      await appendRange(r.journal, 201, 250);
      await caughtUp(r, 250);
      expectDelivered(r, range(1, 250));
      expect(r.d.status()).toMatchObject({ state: 'up', backlog: 0 });
      expect(r.d.status().counters.deadLettered).toBe(0);
    });

    it('abandons a call the upstream leaves unanswered after timeoutMs, and delivers on the retry', async () => {
      const r = await rig({ timeoutMs: 300 });
      let hung = 0;
      r.upstream.answer = () => (hung++ === 0 ? 'hang' : 'accept');
      await appendRange(r.journal, 1, 30);
      await caughtUp(r, 30);
      expectDelivered(r, range(1, 30));
      expect(r.upstream.calls()).toBeGreaterThanOrEqual(4);
      expect(r.d.status().counters).toMatchObject({ delivered: 30, deadLettered: 0, retries: 1 });
    });

    it('stop() returns while the upstream hangs; the undelivered records stay behind the cursor', async () => {
      const r = await rig({ timeoutMs: 60_000 });
      r.upstream.answer = () => 'hang';
      await appendRange(r.journal, 1, 20);
      await eventually(() => r.upstream.calls() >= 1, 'a call in flight');
      // The guard only bounds a failure: stop(200) is what must end the call.
      const stopped = await Promise.race([
        r.d.stop(200).then(() => true),
        new Promise<false>((resolve) => setTimeout(resolve, 15_000, false).unref()),
      ]);
      expect(stopped).toBe(true);
      expect(r.d.status()).toMatchObject({ state: 'stopped', cursor: 0, backlog: 20 });
      expect(r.journal.cursor(`sink/${SINK}`)).toBe(0);
      expect(r.upstream.accepted()).toEqual([]);
      const left = await r.journal.readBatch(1, 100, 1 << 20);
      expect(left.records.map((x) => x.seq)).toEqual(range(1, 20));
    });

    it('a failing dead-letter or cursor write does not stop the loop: the refused batch is dead-lettered once, later records delivered', async () => {
      const r = await rig({ preload: 40 });
      // Injected on the real Journal instance, at the two writes the loop makes: making LevelDB
      // itself fail needs a full filesystem (a tmpfs mount, root only). The error is the one a
      // failed journal write rejects with.
      let failing = true;
      let deadLetterFailures = 0;
      let cursorFailures = 0;
      const j = r.journal;
      const deadLetter = j.deadLetter.bind(j);
      const commitCursor = j.commitCursor.bind(j);
      j.deadLetter = (...args) => {
        if (!failing) return deadLetter(...args);
        deadLetterFailures++;
        return Promise.reject(new JournalWriteError(new Error('injected: No space left on device')));
      };
      j.commitCursor = (...args) => {
        if (!failing) return commitCursor(...args);
        cursorFailures++;
        return Promise.reject(new JournalWriteError(new Error('injected: No space left on device')));
      };
      let poisonCalls = 0;
      r.upstream.answer = (p) => {
        if (!p.includes('m15')) return 'accept';
        poisonCalls++;
        return 'refuse';
      };

      await eventually(() => deadLetterFailures >= 3, 'the dead-letter write failing');
      expect(r.d.status()).toMatchObject({ state: 'backoff', cursor: 10 });
      expect(r.d.status().lastError).toContain('dead-letter write failed');
      expect(cursorFailures).toBeGreaterThanOrEqual(1);

      failing = false;
      await caughtUp(r, 40);
      const poison = driver.refusesEachRecord ? [15] : range(11, 20);
      expectDelivered(
        r,
        range(1, 40).filter((s) => !poison.includes(s)),
      );
      expect(poisonCalls).toBe(1);
      expect((await j.listDeadLetters(SINK, 100)).map((l) => l.seq)).toEqual(poison);
      expect(r.d.status()).toMatchObject({ state: 'up' });
      expect(r.d.status().counters).toMatchObject({
        delivered: 40 - poison.length,
        deadLettered: poison.length,
      });
      await eventually(() => j.cursor(`sink/${SINK}`) === 40, 'the cursor persisted after the failures');
    });

    it('refused credentials are retried as auth-failing with one log line, never dead-lettered, then delivered', async () => {
      const r = await rig();
      let authOk = false;
      r.upstream.answer = () => (authOk ? 'accept' : 'auth');
      await appendRange(r.journal, 1, 30);
      await eventually(() => r.upstream.calls() >= 5, 'several refused calls');
      expect(r.d.status()).toMatchObject({ state: 'auth-failing', cursor: 0 });
      expect(r.d.status().counters.deadLettered).toBe(0);
      const authLines = r.log.lines.filter((l) => l.obj.code === 'EF_SINK_AUTH');
      expect(authLines).toHaveLength(1);

      authOk = true;
      await caughtUp(r, 30);
      expectDelivered(r, range(1, 30));
      expect(r.d.status()).toMatchObject({ state: 'up', lastError: null });
      expect(await r.journal.deadLetterCount(SINK)).toBe(0);
    });
  });
}
