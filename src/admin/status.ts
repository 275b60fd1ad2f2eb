import { type GatewayView, sinkReports } from '../observability/gateway-view.ts';

/** The `/v1/status` document: what an operator looks at first. */
export async function buildStatus(view: GatewayView) {
  const j = view.journal;
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
        }
      : null,
    sources: view.sources.map((s) => ({ name: s.name, addresses: s.addresses(), counters: s.counters })),
    sinks: await sinkReports(view),
  };
}
