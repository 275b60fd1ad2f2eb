import type { ConsumerDirectory } from '../core/consumers.ts';
import type { TlsReloadCounters } from '../core/tls-files.ts';
import type { SinkDispatcher } from '../dispatch/sink-dispatcher.ts';
import type { Journal } from '../journal/journal.ts';
import type { MemoryBudget } from '../memory/budget.ts';
import type { MemoryGuard } from '../memory/guard.ts';

/** What the operations surface (metrics, status, readiness) reads from a running gateway. */
export interface GatewayView {
  nodeId: string;
  startedAt: number;
  journal: Journal | null;
  sources: { name: string; counters: object; addresses(): Record<string, string | number> }[];
  dispatchers: SinkDispatcher[];
  /** The gRPC API's durable consumers; null or absent when the API is disabled. */
  consumers?: ConsumerDirectory | null;
  /** Journal open and every listener bound. */
  ready(): boolean;
  /** Components that follow rotated TLS files (`grpc`, `sink/<name>`). */
  tls?: { component: string; counters: TlsReloadCounters }[];
  /** The memory budget in force, and its guard when there is a limit; null until the journal opens. */
  memory?: { budget: MemoryBudget; guard: MemoryGuard | null; idle: { runs: number } | null } | null;
}

export interface SinkReport {
  name: string;
  type: string;
  state: string;
  cursor: number;
  backlog: number;
  oldestUndeliveredAgeSeconds: number | null;
  secondsSinceLastSuccess: number | null;
  drainRate: number;
  lastError: string | null;
  delivered: number;
  retries: number;
  deadLettered: number;
  expired: number;
}

export async function sinkReports(view: GatewayView, now = Date.now()): Promise<SinkReport[]> {
  const out: SinkReport[] = [];
  for (const d of view.dispatchers) {
    const s = d.status(now);
    const oldestTs =
      s.backlog > 0 && view.journal
        ? await view.journal.tsAt(Math.max(s.cursor + 1, view.journal.firstRetainedSeq))
        : undefined;
    out.push({
      name: s.name,
      type: s.type,
      state: s.state,
      cursor: s.cursor,
      backlog: s.backlog,
      oldestUndeliveredAgeSeconds: oldestTs === undefined ? null : Math.max(0, (now - oldestTs) / 1000),
      secondsSinceLastSuccess: s.lastSuccessAt === null ? null : (now - s.lastSuccessAt) / 1000,
      drainRate: s.drainRate,
      lastError: s.lastError,
      delivered: s.counters.delivered,
      retries: s.counters.retries,
      deadLettered: s.counters.deadLettered,
      expired: s.counters.expired,
    });
  }
  return out;
}
