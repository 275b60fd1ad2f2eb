// What the operator sees of the memory budget on a real daemon: the /v1/status `memory` section
// and the edgeferry_memory_* metrics, with a limit from the config and without any.

import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';

const MiB = 1024 ** 2;
const daemons: DaemonHandle[] = [];
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.kill()));
});

async function daemon(memory: Record<string, unknown> | undefined) {
  const dir = tempDir();
  const d = await startDaemon(dir, writeConfig(dir, baseConfig(dir, memory ? { memory } : {})));
  daemons.push(d);
  const status = (await d.status()) as unknown as { memory: Record<string, unknown> };
  return { d, memory: status.memory, metrics: await d.metrics() };
}

describe('memory report', () => {
  it('memory.limit in the config: status names it, the marks and the budgets; metrics carry them', async () => {
    const { memory, metrics } = await daemon({ limit: '200MiB' });
    expect(memory).toMatchObject({
      limit: 200 * MiB,
      source: 'config',
      pauseAt: Math.floor(200 * MiB * 0.9),
      resumeAt: Math.floor(200 * MiB * 0.8),
      pausedForMemory: false,
      pauses: 0,
    });
    expect(memory.rss).toBeGreaterThan(0);
    const budgets = memory.budgets as Record<string, number>;
    expect(budgets.journalPendingBytes).toBeLessThan(16 * MiB);
    expect(metrics).toContain(`edgeferry_memory_limit_bytes{source="config"} ${200 * MiB}`);
    expect(metrics).toContain(
      `edgeferry_memory_budget_bytes{part="journalPendingBytes"} ${budgets.journalPendingBytes}`,
    );
    expect(metrics).toMatch(/edgeferry_memory_pauses_total 0/);
    expect(metrics).toMatch(/edgeferry_memory_intake_paused 0/);
  });

  it("no limit anywhere (this machine's cgroup has none, or the test skips it): the fixed defaults, no limit metric", async (ctx) => {
    const { d, memory, metrics } = await daemon(undefined);
    if (memory.source === 'cgroup') ctx.skip(`this test runs under a cgroup memory limit (${memory.limit})`);
    expect(memory).toMatchObject({ limit: null, source: 'none', pausedForMemory: false });
    expect((memory.budgets as Record<string, number>).journalPendingBytes).toBe(16 * MiB);
    expect(metrics).not.toContain('edgeferry_memory_limit_bytes{');
    expect(metrics).toContain(`edgeferry_memory_budget_bytes{part="journalPendingBytes"} ${16 * MiB}`);
    expect(d.logs.some((l) => String(l.msg).startsWith('memory: no limit set'))).toBe(true);
  });

  it('a burst that has ended is followed by one memory-reducing collection, counted in status', async () => {
    const { d, memory } = await daemon(undefined);
    expect(memory.idleCollections).toBe(0);
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, { clientId: 'burst' });
    try {
      await Promise.all(
        Array.from({ length: 200 }, (_, i) => client.publishAsync(`t/${i}`, Buffer.alloc(200), { qos: 1 })),
      );
    } finally {
      await client.endAsync();
    }
    const runs = async () =>
      ((await d.status()) as unknown as { memory: { idleCollections: number } }).memory.idleCollections;
    await eventually(async () => (await runs()) > 0, 'a collection once the burst is over');
    // Once per quiet spell: it does not repeat while nothing comes in.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await runs()).toBe(1);
  });
});
