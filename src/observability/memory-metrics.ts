// The memory budget's metrics (README: Memory limit): the limit, the sizes derived from it and
// the guard's pauses. Without a limit only the budgets are reported (their fixed defaults).

import type { MemoryBudget } from '../memory/budget.ts';
import type { GatewayView } from './gateway-view.ts';
import { type Sample, SampledMetric } from './sampled-metric.ts';

/** The budgets as `/v1/status` and the metrics name them. */
export function budgetSizes(b: MemoryBudget): Record<string, number> {
  return {
    journalPendingBytes: b.pendingBytes,
    journalTailBytes: b.tailBytes,
    sinkBatchBytes: b.sinkBatchBytes.reduce((s, x) => s + x, 0),
    subscriberReadBytes: b.subscriberReadBytes,
    mqttQueuedBytes: b.mqttQueuedBytes,
    mqttQueuedBytesTotal: b.mqttQueuedBytesTotal,
  };
}

export function memoryMetrics(view: GatewayView): SampledMetric[] {
  const one = (value: number | null | undefined): Sample[] =>
    value === null || value === undefined ? [] : [{ labels: {}, value }];
  return [
    new SampledMetric(
      'edgeferry_memory_limit_bytes',
      'The memory limit the daemon keeps to (memory.limit, or the container cgroup limit), by source; absent without one.',
      'gauge',
      () => {
        const b = view.memory?.budget;
        return b && b.limit !== null ? [{ labels: { source: b.source }, value: b.limit }] : [];
      },
    ),
    new SampledMetric(
      'edgeferry_memory_budget_bytes',
      'Buffer sizes derived from the memory limit (their defaults without one), by part.',
      'gauge',
      () => {
        const b = view.memory?.budget;
        if (!b) return [];
        return Object.entries(budgetSizes(b)).map(([part, value]) => ({ labels: { part }, value }));
      },
    ),
    new SampledMetric(
      'edgeferry_memory_intake_paused',
      '1 while intake is paused because RSS passed 90 % of the memory limit.',
      'gauge',
      () => one(view.memory?.guard ? (view.memory.guard.paused ? 1 : 0) : null),
    ),
    new SampledMetric(
      'edgeferry_memory_pauses_total',
      'Times intake paused because RSS passed 90 % of the memory limit.',
      'counter',
      () => one(view.memory?.guard?.counters.pauses),
    ),
    new SampledMetric(
      'edgeferry_memory_paused_seconds_total',
      'Seconds intake spent paused for memory.',
      'counter',
      () => one(view.memory?.guard ? view.memory.guard.pausedMs() / 1000 : null),
    ),
  ];
}
