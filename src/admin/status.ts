import { type GatewayView, sinkReports } from '../observability/gateway-view.ts';
import { budgetSizes } from '../observability/memory-metrics.ts';

/**
 * The `/v1/status` document: what an operator looks at first. Built from memory only (the
 * journal's tsAt included): it must answer while the journal's disk is full or being reopened.
 */
export async function buildStatus(view: GatewayView) {
  const j = view.journal;
  // Dead letters kept per sink, from the journal's in-memory ledger.
  const deadLetters = new Map(
    (j?.deadLetterSummary() ?? []).map((s) => [s.sink, { count: s.count, bytes: s.bytes }]),
  );
  return {
    node: view.nodeId,
    ready: view.ready(),
    uptimeSeconds: Math.round((Date.now() - view.startedAt) / 1000),
    journal: j
      ? {
          path: j.path,
          epoch: j.epoch,
          writable: j.writable,
          records: j.records,
          bytes: j.bytes(),
          maxBytes: j.maxBytes,
          firstSeq: j.firstRetainedSeq,
          lastSeq: j.lastCommittedSeq,
          cursors: Object.fromEntries(j.cursorNames().map((n) => [n, j.cursor(n)])),
          counters: { ...j.counters },
          // Every sink's, including sinks no longer configured whose dead letters remain.
          deadLetters: Object.fromEntries(deadLetters),
        }
      : null,
    memory: memoryStatus(view),
    sources: view.sources.map((s) => ({ name: s.name, addresses: s.addresses(), counters: s.counters })),
    sinks: (await sinkReports(view)).map((r) => ({
      ...r,
      deadLetters: deadLetters.get(r.name) ?? { count: 0, bytes: 0 },
    })),
  };
}

/** The limit, where it came from, RSS now, the derived budgets and the guard's state. */
function memoryStatus(view: GatewayView) {
  const m = view.memory;
  if (!m) return null;
  const b = m.budget;
  const g = m.guard;
  return {
    limit: b.limit,
    source: b.source,
    rss: process.memoryUsage.rss(),
    pauseAt: b.pauseAtBytes,
    resumeAt: b.resumeAtBytes,
    pausedForMemory: g?.paused ?? false,
    pauses: g?.counters.pauses ?? 0,
    pausedSeconds: g ? g.pausedMs() / 1000 : 0,
    collections: g?.counters.collections ?? 0,
    earlyCollections: g?.counters.earlyCollections ?? 0,
    settles: g?.counters.settles ?? 0,
    idleCollections: m.idle?.runs ?? 0,
    peakRss: g?.counters.peakRss ?? null,
    budgets: {
      ...budgetSizes(b),
      sinkBatchBytesPerSink: b.sinkBatchBytes,
      mqttQueuedMessagesTotal: b.mqttQueuedMessagesTotal,
    },
  };
}
