// The memory budget: sizes derived from a limit, explicit settings winning, settings that cannot
// fit reported as config errors naming the field, and the guard that pauses intake near the limit.

import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import type { AppendCallback, RecordAppender } from '../../src/core/pipeline.ts';
import type { RecordInput } from '../../src/core/record.ts';
import { BASE_RSS, deriveBudget, MIN_LIMIT, PARTS } from '../../src/memory/budget.ts';
import { MemoryGuard } from '../../src/memory/guard.ts';
import { explicitSettings, planMemory } from '../../src/memory/plan.ts';
import { configError } from '../config/config-error.ts';
import { quiet } from '../helpers/dispatch-fixture.ts';

const MiB = 1024 ** 2;
const none = { sinkBatchBytes: [undefined, undefined] };

const sink = (extra: Record<string, unknown> = {}) => ({
  name: `s${Math.random().toString(36).slice(2, 8)}`,
  type: 'http',
  url: 'http://127.0.0.1:9/x',
  ...extra,
});

describe('deriveBudget', () => {
  it('without a limit: the fixed defaults, no marks', () => {
    const { budget, problems } = deriveBudget(null, 'none', none);
    expect(problems).toEqual([]);
    expect(budget).toMatchObject({
      limit: null,
      source: 'none',
      pendingBytes: 16 * MiB,
      tailBytes: 4 * MiB,
      sinkBatchBytes: [MiB, MiB],
      subscriberReadBytes: MiB,
      mqttQueuedBytes: MiB,
      mqttQueuedBytesTotal: 64 * MiB,
      mqttQueuedMessagesTotal: 100_000,
      pauseAtBytes: null,
    });
  });

  it('under 160 MiB every part shrinks below its default, none below its minimum, and the marks are 90/80 %', () => {
    const { budget, problems } = deriveBudget(160 * MiB, 'cgroup', none);
    expect(problems).toEqual([]);
    expect(budget.pendingBytes).toBeLessThan(16 * MiB);
    expect(budget.pendingBytes).toBeGreaterThanOrEqual(PARTS.pendingBytes.min);
    expect(budget.tailBytes).toBeLessThan(4 * MiB);
    expect(budget.mqttQueuedBytesTotal).toBeLessThan(64 * MiB);
    expect(budget.mqttQueuedMessagesTotal).toBeLessThan(100_000);
    expect(budget.pauseAtBytes).toBe(Math.floor(160 * MiB * 0.9));
    expect(budget.resumeAtBytes).toBe(Math.floor(160 * MiB * 0.8));
    // What the derived parts cost stays inside the headroom above the base.
    const b = budget;
    const cost =
      b.pendingBytes * PARTS.pendingBytes.cost +
      b.tailBytes * PARTS.tailBytes.cost +
      b.sinkBatchBytes.reduce((s, x) => s + x * PARTS.sinkBatchBytes.cost, 0) +
      b.subscriberReadBytes * PARTS.subscriberReadBytes.cost +
      b.mqttQueuedBytes * PARTS.mqttQueuedBytes.cost +
      b.mqttQueuedBytesTotal * PARTS.mqttQueuedBytesTotal.cost;
    expect(cost).toBeLessThanOrEqual(160 * MiB - BASE_RSS);
  });

  it('a large limit never makes a buffer larger than its default', () => {
    const { budget } = deriveBudget(64 * 1024 * MiB, 'config', none);
    expect(budget.pendingBytes).toBe(16 * MiB);
    expect(budget.sinkBatchBytes).toEqual([MiB, MiB]);
    expect(budget.mqttQueuedBytesTotal).toBe(64 * MiB);
  });

  it('an explicit setting wins, and the others share what it leaves', () => {
    const plain = deriveBudget(256 * MiB, 'config', none).budget;
    const { budget, problems } = deriveBudget(256 * MiB, 'config', {
      pendingBytes: 40 * MiB,
      sinkBatchBytes: [4 * MiB, undefined],
    });
    expect(problems).toEqual([]);
    expect(budget.pendingBytes).toBe(40 * MiB);
    expect(budget.sinkBatchBytes[0]).toBe(4 * MiB);
    expect(budget.tailBytes).toBeLessThan(plain.tailBytes);
  });

  it('more sinks get a smaller batch each', () => {
    const two = deriveBudget(128 * MiB, 'config', none).budget.sinkBatchBytes[0];
    const eight = deriveBudget(128 * MiB, 'config', { sinkBatchBytes: Array(8).fill(undefined) }).budget
      .sinkBatchBytes[0];
    expect(eight).toBeLessThan(two);
  });

  it('explicit settings that together exceed the headroom are each a problem naming the field', () => {
    const { problems } = deriveBudget(160 * MiB, 'cgroup', {
      pendingBytes: 64 * MiB,
      sinkBatchBytes: [undefined, 8 * MiB],
    });
    expect(problems.map((p) => p.path.join('.'))).toEqual([
      'journal.maxPendingBytes',
      'sinks.1.batch.maxBytes',
    ]);
    expect(problems[0].message).toMatch(/does not fit memory.limit 160 MiB \(cgroup\)/);
  });

  it('a limit below the minimum is a problem on memory.limit', () => {
    const { problems } = deriveBudget(64 * MiB, 'config', none);
    expect(problems).toHaveLength(1);
    expect(problems[0].path).toEqual(['memory', 'limit']);
    expect(problems[0].message).toContain(`below the ${MIN_LIMIT / MiB} MiB the daemon needs`);
  });
});

describe('memory config', () => {
  it('memory.limit takes a byte size; absent, the budget comes from the cgroup or nowhere', () => {
    expect(parseConfig({ memory: { limit: '160MiB' } }, {}).memory.limit).toBe(160 * MiB);
    expect(parseConfig({}, {}).memory).toEqual({});
    const noCgroup = planMemory(parseConfig({}, {}), '/nonexistent');
    expect(noCgroup.budget.source).toBe('none');
    const fromConfig = planMemory(parseConfig({ memory: { limit: '200MiB' } }, {}), '/nonexistent');
    expect(fromConfig.budget).toMatchObject({ source: 'config', limit: 200 * MiB });
  });

  it('a limit found in the cgroup is checked the same way (cli.ts exits 2 on it) and wins only when the file has none', () => {
    const root = mkdtempSync(join(tmpdir(), 'edgeferry-cgroup-'));
    mkdirSync(join(root, 'proc/self'), { recursive: true });
    mkdirSync(join(root, 'sys/fs/cgroup/memory/pod'), { recursive: true });
    writeFileSync(join(root, 'proc/self/cgroup'), '4:memory:/pod\n');
    writeFileSync(join(root, 'sys/fs/cgroup/memory/pod/memory.limit_in_bytes'), String(128 * MiB));
    const tooBig = planMemory(parseConfig({ journal: { maxPendingBytes: '64MiB' } }, {}), root);
    expect(tooBig.budget).toMatchObject({ source: 'cgroup', limit: 128 * MiB });
    expect(tooBig.cgroupFile).toBe(join(root, 'sys/fs/cgroup/memory/pod/memory.limit_in_bytes'));
    expect(tooBig.problems.map((p) => p.path.join('.'))).toEqual(['journal.maxPendingBytes']);
    const own = planMemory(parseConfig({ memory: { limit: '1GiB' } }, {}), root);
    expect(own.budget).toMatchObject({ source: 'config', limit: 1024 * MiB });
  });

  it('names the field of a setting that cannot fit the limit', () => {
    const msg = configError({
      memory: { limit: '160MiB' },
      journal: { maxPendingBytes: '64MiB' },
      sinks: [sink({ batch: { maxBytes: '16MiB' } })],
    });
    expect(msg).toContain('journal.maxPendingBytes: does not fit memory.limit 160 MiB (config)');
    expect(msg).toContain('sinks[0].batch.maxBytes: does not fit memory.limit 160 MiB (config)');
  });

  it('names memory.limit when it is too small, or not a size', () => {
    expect(configError({ memory: { limit: '64MiB' } })).toContain('memory.limit: 64 MiB is below the');
    expect(configError({ memory: { limit: 'plenty' } })).toContain(
      'memory.limit: invalid byte size "plenty"',
    );
    expect(configError({ memory: { limits: '1GiB' } })).toContain('memory.limits: unknown field');
  });

  it('the same settings fit a larger limit, and without a limit nothing is checked', () => {
    const raw = { journal: { maxPendingBytes: '64MiB' }, mqtt: { maxQueuedBytesTotal: '32MiB' } };
    expect(() => parseConfig({ ...raw, memory: { limit: '1GiB' } }, {})).not.toThrow();
    const c = parseConfig(raw, {});
    expect(explicitSettings(c)).toMatchObject({ pendingBytes: 64 * MiB, mqttQueuedBytesTotal: 32 * MiB });
  });
});

/** A journal stand-in: saturated when told, whenUnsaturated waiters kept. */
class FakeAppender implements RecordAppender {
  saturated = false;
  appended = 0;
  waiters: (() => void)[] = [];
  append<S>(_rec: RecordInput, _cb: AppendCallback<S> | null, _state: S): void {
    this.appended++;
  }
  whenUnsaturated(cb: () => void): void {
    if (this.saturated) this.waiters.push(cb);
    else cb();
  }
}

describe('MemoryGuard', () => {
  // In MiB: the guard's settle step is in bytes.
  const marks = { limit: 100 * MiB, pauseAtBytes: 90 * MiB, resumeAtBytes: 80 * MiB };

  function guard(readings: number[]) {
    const inner = new FakeAppender();
    const clock = { t: 1_000_000 };
    let collections = 0;
    let i = 0;
    const g = new MemoryGuard(
      inner,
      {
        ...marks,
        now: () => clock.t,
        rss: () => readings[Math.min(i++, readings.length - 1)] * MiB,
        collect: () => {
          collections++;
        },
      },
      quiet,
    );
    return { g, inner, clock, collections: () => collections };
  }

  it('pauses above the pause mark, collects, and resumes below the resume mark; waiters go on then', () => {
    const { g, inner, collections } = guard([50, 95, 88, 79]);
    g.check();
    expect(g.saturated).toBe(false);
    g.check();
    expect(g.saturated).toBe(true);
    expect(g.counters.pauses).toBe(1);
    expect(collections()).toBe(1);
    let resumed = 0;
    g.whenUnsaturated(() => resumed++);
    g.check(); // 88: above the resume mark, within a second of the collection
    expect(g.saturated).toBe(true);
    expect(resumed).toBe(0);
    g.check(); // 79
    expect(g.saturated).toBe(false);
    expect(resumed).toBe(1);
    expect(g.counters.peakRss).toBe(95 * MiB);
    // Appends always go through, paused or not: the pause is for sources to stop reading.
    g.append({} as RecordInput, null, null);
    expect(inner.appended).toBe(1);
  });

  it('a pause that collections cannot end ends anyway, and the pause mark rises a step', () => {
    const { g, clock } = guard([95, 94.5, 94.5, 96, 98]);
    g.check(); // 95: paused, collected
    expect(g.paused).toBe(true);
    clock.t += 1000;
    g.check(); // 94.5, after a collection that gave back less than 1 MiB
    expect(g.paused).toBe(false);
    expect(g.counters.settles).toBe(1);
    g.check(); // 94.5: under the raised mark (94.5 + 2)
    g.check(); // 96: still under it
    expect(g.paused).toBe(false);
    g.check(); // 98: over the raised mark
    expect(g.paused).toBe(true);
  });

  it('a collection that gives memory back keeps the pause going, with another collection a second later', () => {
    const { g, clock, collections } = guard([95, 85, 79]);
    g.check();
    clock.t += 1000;
    g.check(); // 85: 10 MiB given back, still above the resume mark
    expect(g.paused).toBe(true);
    expect(g.counters.settles).toBe(0);
    expect(collections()).toBe(2);
    g.check();
    expect(g.paused).toBe(false);
  });

  it('stays paused while RSS stays high, and the journal saturated keeps the source waiting after the guard resumes', () => {
    const { g, inner } = guard([95, 89, 89, 70]);
    g.check();
    g.check();
    g.check();
    expect(g.paused).toBe(true);
    inner.saturated = true;
    let resumed = 0;
    g.whenUnsaturated(() => resumed++);
    g.check();
    expect(g.paused).toBe(false);
    // The guard handed the waiter to the journal, still saturated.
    expect(g.saturated).toBe(true);
    expect(resumed).toBe(0);
    inner.saturated = false;
    for (const w of inner.waiters.splice(0)) w();
    expect(resumed).toBe(1);
  });

  it('stop() lets paused sources go', () => {
    const { g } = guard([95]);
    g.start();
    expect(g.paused).toBe(true);
    let resumed = 0;
    g.whenUnsaturated(() => resumed++);
    g.stop();
    expect(resumed).toBe(1);
    expect(g.pausedMs()).toBeGreaterThanOrEqual(0);
  });
});
