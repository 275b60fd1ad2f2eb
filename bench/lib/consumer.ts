// What every receiving end of a benchmark (the HTTP sink receiver, an MQTT subscriber) offers:
// a count, arrival times and an end-to-end latency histogram.

import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** What a run reads of a latency histogram: the recorder itself, or a snapshot of one elsewhere. */
export interface LatencyView {
  readonly count: number;
  /** ms at percentile `p` (0..100); NaN without samples. */
  percentile(p: number): number;
  readonly max: number;
}

/** Latencies in ms, kept as integer microseconds in an HDR histogram (3 significant figures). */
export class LatencyRecorder implements LatencyView {
  private h: RecordableHistogram = createHistogram({ lowest: 1, highest: 3_600_000_000, figures: 3 });

  record(ms: number): void {
    // Clamped to 1 µs: clocks of two threads can disagree by a few µs.
    this.h.record(ms > 0.001 ? Math.round(ms * 1000) : 1);
  }

  get count(): number {
    return this.h.count;
  }

  /** ms at percentile `p` (0..100); NaN without samples. */
  percentile(p: number): number {
    return this.h.count === 0 ? Number.NaN : this.h.percentile(p) / 1000;
  }

  get max(): number {
    return this.h.count === 0 ? Number.NaN : this.h.max / 1000;
  }

  reset(): void {
    this.h.reset();
  }
}

/**
 * A histogram's percentiles as a consumer in another process reported them (`sync`): only the
 * percentiles it sent can be read.
 */
export class LatencySnapshot implements LatencyView {
  readonly count: number;
  readonly max: number;
  private readonly at: Map<number, number>;

  constructor(count: number, max: number, percentiles: [number, number][]) {
    this.count = count;
    this.max = count === 0 ? Number.NaN : max;
    this.at = new Map(percentiles);
  }

  percentile(p: number): number {
    const v = this.at.get(p);
    if (v === undefined)
      throw new Error(`latency snapshot: percentile ${p} not taken (have ${[...this.at.keys()].join(', ')})`);
    return this.count === 0 ? Number.NaN : v;
  }
}

export interface Consumer {
  /** Messages received since the last reset. */
  readonly received: number;
  /** Absolute ms (performance.timeOrigin based) of the first and last arrival since the reset. */
  readonly firstAt: number;
  readonly lastAt: number;
  readonly latency: LatencyView;
  /** Received out of order or twice (at-least-once redeliveries), where the consumer can tell. */
  readonly duplicates: number;
  /**
   * The consumer's own process (remote-consumer.ts), whose CPU is counted apart from the load
   * generator's; absent when it runs in the bench process.
   */
  readonly pid?: number;
  /**
   * Out of process: fetches the exact counts and the latency histogram (during a run the counts
   * are a few ms behind, and the histogram is not sent at all). Call before reading `latency`.
   */
  sync?(): Promise<void>;
  reset(): void;
  close(): Promise<void>;
}

/** Polls until `c` has received `count` messages; rejects after `timeoutMs`. */
export async function waitForCount(
  c: Consumer,
  count: number,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (c.received < count) {
    if (Date.now() > deadline) {
      throw new Error(`${what}: received ${c.received} of ${count} within ${timeoutMs} ms`);
    }
    await sleep(10);
  }
}

/**
 * Polls until `c` has received `count` messages or has received nothing new for `quietMs`
 * (QoS 0: what was lost never comes); rejects after `timeoutMs`. Returns the count reached.
 */
export async function waitForCountOrQuiet(
  c: Consumer,
  count: number,
  quietMs: number,
  timeoutMs: number,
  what: string,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = c.received;
  let lastChange = Date.now();
  while (c.received < count) {
    const now = Date.now();
    if (c.received !== last) {
      last = c.received;
      lastChange = now;
    } else if (now - lastChange >= quietMs) {
      return c.received;
    }
    if (now > deadline) {
      throw new Error(`${what}: received ${c.received} of ${count} within ${timeoutMs} ms`);
    }
    await sleep(10);
  }
  return c.received;
}
