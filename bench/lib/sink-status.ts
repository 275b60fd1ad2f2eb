// What the outage scenarios read from a running daemon: the first sink's backlog and state and
// the journal's last seq from GET /v1/status, and per-phase RSS/CPU from a sampler's series.

import type { Daemon } from './daemon.ts';
import { nowMs } from './mqtt-codec.ts';
import type { ProcReading } from './proc.ts';

export interface SinkPoll {
  /** Absolute ms (nowMs) when the request was sent and when the answer was read. */
  sentAt: number;
  at: number;
  /** Newest committed seq. */
  lastSeq: number;
  /** The sink's records between its cursor and lastSeq. */
  backlog: number;
  state: string;
  delivered: number;
}

interface StatusDoc {
  journal: { lastSeq: number; bytes: number };
  sinks: { backlog: number; state: string; delivered: number }[];
}

export async function pollSink(daemon: Daemon): Promise<SinkPoll & { journalBytes: number }> {
  const sentAt = nowMs();
  const res = await daemon.admin('/v1/status');
  if (res.status !== 200) throw new Error(`GET /v1/status: HTTP ${res.status}`);
  const doc = JSON.parse(res.body) as StatusDoc;
  const sink = doc.sinks[0];
  return {
    sentAt,
    at: nowMs(),
    lastSeq: doc.journal.lastSeq,
    backlog: sink.backlog,
    state: sink.state,
    delivered: sink.delivered,
    journalBytes: doc.journal.bytes,
  };
}

/** Absolute ms (nowMs) of a sampler reading (its `at` is performance.now()). */
export function readingAt(r: ProcReading): number {
  return performance.timeOrigin + r.at;
}

/** Peak RSS and CPU % (of one core) of the readings within [from, to] (absolute ms). */
export function seriesWindow(
  series: readonly ProcReading[],
  from: number,
  to: number,
): { peakRssMb: number; endRssMb: number; cpuPct: number } {
  const inside = series.filter((r) => readingAt(r) >= from && readingAt(r) <= to);
  if (inside.length === 0) return { peakRssMb: Number.NaN, endRssMb: Number.NaN, cpuPct: Number.NaN };
  const a = inside[0];
  const b = inside[inside.length - 1];
  const ms = b.at - a.at;
  return {
    peakRssMb: Math.max(...inside.map((r) => r.rssKb)) / 1024,
    endRssMb: b.rssKb / 1024,
    cpuPct: ms > 0 ? ((b.cpuSec - a.cpuSec) * 100_000) / ms : Number.NaN,
  };
}

/**
 * About `n` evenly spaced readings of [from, to] as "+t s: MB" pairs, t from `origin`: RSS over
 * time, compact enough for one line.
 */
export function rssTimeline(
  series: readonly ProcReading[],
  from: number,
  to: number,
  n: number,
  origin = from,
): string {
  const inside = series.filter((r) => readingAt(r) >= from && readingAt(r) <= to);
  if (inside.length === 0) return '-';
  const picked: ProcReading[] = [];
  const step = Math.max(1, (inside.length - 1) / Math.max(1, n - 1));
  for (let i = 0; i < inside.length; i += step)
    picked.push(inside[Math.min(inside.length - 1, Math.round(i))]);
  if (picked[picked.length - 1] !== inside[inside.length - 1]) picked.push(inside[inside.length - 1]);
  return picked
    .map((r) => `${((readingAt(r) - origin) / 1000).toFixed(1)}s ${(r.rssKb / 1024).toFixed(0)}`)
    .join(', ');
}

export interface DaemonMemory {
  heapUsedMb: number;
  heapTotalMb: number;
  externalMb: number;
  rssMb: number;
}

/** V8 heap and external memory from the daemon's /metrics (prom-client default metrics). */
export async function daemonMemory(daemon: Daemon): Promise<DaemonMemory | null> {
  try {
    const res = await daemon.admin('/metrics');
    if (res.status !== 200) return null;
    const read = (name: string) => {
      const m = new RegExp(`^edgeferry_${name}(?:\\{[^}]*\\})? ([0-9.e+]+)`, 'm').exec(res.body);
      return m ? Number(m[1]) / 2 ** 20 : Number.NaN;
    };
    return {
      heapUsedMb: read('nodejs_heap_size_used_bytes'),
      heapTotalMb: read('nodejs_heap_size_total_bytes'),
      externalMb: read('nodejs_external_memory_bytes'),
      rssMb: read('process_resident_memory_bytes'),
    };
  } catch {
    return null;
  }
}

export function describeMemory(m: DaemonMemory | null): string {
  if (!m) return 'n/a';
  return `RSS ${m.rssMb.toFixed(0)} MB = V8 heap ${m.heapUsedMb.toFixed(0)} used / ${m.heapTotalMb.toFixed(0)} total, external ${m.externalMb.toFixed(0)}, rest (native: LevelDB, malloc) ${(m.rssMb - m.heapTotalMb - m.externalMb).toFixed(0)}`;
}
