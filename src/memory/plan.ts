// Where the memory limit comes from (the config, else the container's cgroup, else none) and the
// budget derived from it for a parsed configuration.

import { type BudgetProblem, deriveBudget, type ExplicitSettings, type MemoryBudget } from './budget.ts';
import { readCgroupLimit } from './cgroup.ts';

/** The settings of a parsed config the budget reads (structural: no dependency on the schema). */
export interface BudgetedConfig {
  memory: { limit?: number };
  journal: { maxPendingBytes?: number };
  mqtt: { maxQueuedBytes?: number; maxQueuedBytesTotal?: number; maxQueuedMessagesTotal?: number };
  sinks: readonly { batch: { maxBytes?: number } }[];
}

export function explicitSettings(c: BudgetedConfig): ExplicitSettings {
  return {
    pendingBytes: c.journal.maxPendingBytes,
    mqttQueuedBytes: c.mqtt.maxQueuedBytes,
    mqttQueuedBytesTotal: c.mqtt.maxQueuedBytesTotal,
    mqttQueuedMessagesTotal: c.mqtt.maxQueuedMessagesTotal,
    sinkBatchBytes: c.sinks.map((s) => s.batch.maxBytes),
  };
}

export interface MemoryPlan {
  budget: MemoryBudget;
  problems: BudgetProblem[];
  /** The cgroup file the limit was read from, when it came from there. */
  cgroupFile: string | null;
}

/** `memory.limit` when set; otherwise the cgroup's (`cgroupRoot` prefixes its paths, for tests). */
export function planMemory(c: BudgetedConfig, cgroupRoot = '/'): MemoryPlan {
  const explicit = explicitSettings(c);
  if (c.memory.limit !== undefined) {
    return { ...deriveBudget(c.memory.limit, 'config', explicit), cgroupFile: null };
  }
  const cg = readCgroupLimit(cgroupRoot);
  if (cg) return { ...deriveBudget(cg.bytes, 'cgroup', explicit), cgroupFile: cg.file };
  return { ...deriveBudget(null, 'none', explicit), cgroupFile: null };
}
