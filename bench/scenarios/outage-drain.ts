// outage-drain: store and forward under live traffic. edgeferry with one HTTP sink; QoS 1
// publishers at a steady pace (BENCH_RATE msg/s in total) for BENCH_OUTAGE_SECONDS +
// BENCH_DRAIN_SECONDS. The HTTP receiver is down for the first BENCH_OUTAGE_SECONDS (not
// listening, or answering 503: BENCH_OUTAGE_MODE), so the journal absorbs the traffic; then it
// comes back and the backlog drains while live traffic continues. The daemon's GET /v1/status
// (sinks[0].backlog, state; journal.lastSeq) is polled every 100 ms to see the backlog and the
// commit rate. Before the outage, an unpaced burst on the same daemon gives its peak ingest
// rate, the yardstick of the drain rate.
//
// The sink retries with `retry: { minMs: 100, maxMs: 1s }` here: with the default maxMs of 30 s
// the first delivery after the receiver's return waits for the backoff sleep in progress (up to
// several seconds after a 5 s outage), which is reported as "recovery delay" either way.

import { setTimeout as sleep } from 'node:timers/promises';
import { LatencyRecorder, waitForCount } from '../lib/consumer.ts';
import { type Daemon, startDaemon } from '../lib/daemon.ts';
import { BenchReceiver } from '../lib/http-receiver.ts';
import { nowMs } from '../lib/mqtt-codec.ts';
import { LOAD_DEFAULTS, type LoadResult, prepareLoadInWorker } from '../lib/mqtt-load.ts';
import { ProcSampler, SelfCpu, SystemCpu } from '../lib/proc.ts';
import { type Column, formatNumber, type ResultRow } from '../lib/report.ts';
import type { Scenario } from '../lib/scenario.ts';
import { pollSink, rssTimeline, type SinkPoll, seriesWindow } from '../lib/sink-status.ts';
import { QOS1_SINK_BATCH } from './mqtt-qos1.ts';

export const OUTAGE_RETRY = { minMs: 100, maxMs: '1s' };
const DRAIN_TARGET = 0.5;
const POLL_MS = 100;
const PACED_INFLIGHT = 1000;
/** Messages per publisher of the unpaced burst that measures the peak ingest rate. */
const PEAK_MESSAGES = 25_000;

type Phase = 'before' | 'outage' | 'draining' | 'caught-up';

const COLUMNS: Column[] = [
  { key: 'secs', label: 'secs', digits: 1 },
  { key: 'ingestRate', label: 'ingest msg/s', digits: 0 },
  { key: 'deliveredRate', label: 'delivered msg/s', digits: 0 },
  { key: 'maxBacklog', label: 'max backlog', digits: 0 },
  { key: 'endBacklog', label: 'backlog at end', digits: 0 },
  { key: 'p50', label: 'live p50 ms', digits: 1 },
  { key: 'p99', label: 'live p99 ms', digits: 1 },
  { key: 'peakRssMb', label: 'peak RSS MB', digits: 1 },
  { key: 'cpuPct', label: 'CPU %', digits: 0 },
];

/** Arrivals at the receiver in one phase: count, first/last time, latency of live records. */
class PhaseStats {
  count = 0;
  firstAt = 0;
  lastAt = 0;
  readonly live = new LatencyRecorder();
}

export const outageDrain: Scenario = {
  name: 'outage-drain',
  description:
    'QoS 1 at BENCH_RATE msg/s; the HTTP receiver is down for BENCH_OUTAGE_SECONDS (5), then back while traffic goes on for BENCH_DRAIN_SECONDS (10): ingest during the outage, drain rate vs peak ingest (target >= 0.5), time to drain, live latency while draining, every record delivered',
  default: true,
  async run(ctx) {
    const env = ctx.env;
    const perPublisher = env.rate / env.publishers;
    const messages = Math.round(perPublisher * (env.outageSeconds + env.drainSeconds));
    const threshold = Math.max(2 * QOS1_SINK_BATCH.maxRecords, Math.ceil(env.rate / 10));
    const params = {
      publishers: env.publishers,
      messagesPerPublisher: messages,
      rate: env.rate,
      inflight: PACED_INFLIGHT,
      payloadBytes: env.payloadBytes,
      outageSeconds: env.outageSeconds,
      drainSeconds: env.drainSeconds,
      outageMode: env.outageMode,
      caughtUpBacklog: threshold,
      peakBurst: { publishers: env.publishers, messages: PEAK_MESSAGES, inflight: env.inflight },
      sink: { batch: QOS1_SINK_BATCH, retry: OUTAGE_RETRY },
      journal: { fsync: false },
      edgeferryOverrides: env.edgeferryOverrides,
    };

    let phase: Phase = 'before';
    let upAt = Number.POSITIVE_INFINITY;
    const stats: Record<Phase, PhaseStats> = {
      before: new PhaseStats(),
      outage: new PhaseStats(),
      draining: new PhaseStats(),
      'caught-up': new PhaseStats(),
    };
    const receiver = new BenchReceiver({
      trackUnique: true,
      onRecord: (sentAt, at) => {
        const s = stats[phase];
        if (s.count === 0) s.firstAt = at;
        s.count++;
        s.lastAt = at;
        if (sentAt >= upAt) s.live.record(at - sentAt);
      },
    });
    await receiver.start();
    let daemon: Daemon | null = null;
    let polling = false;
    let pollLoop: Promise<void> = Promise.resolve();
    try {
      daemon = await startDaemon({
        nodeArgs: env.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${env.cpuProfDir}`] : undefined,
        overrides: env.edgeferryOverrides ?? undefined,
        journal: { fsync: false },
        sinks: [
          { name: 'bench', type: 'http', url: receiver.url, batch: QOS1_SINK_BATCH, retry: OUTAGE_RETRY },
        ],
      });
      const d = daemon;
      const base = {
        ...LOAD_DEFAULTS,
        host: '127.0.0.1',
        port: d.mqttPort,
        publishers: env.publishers,
        qos: 1 as const,
        payloadBytes: env.payloadBytes,
        timeoutMs: env.timeoutMs,
      };

      // Warm-up, then the peak ingest rate: an unpaced closed-loop burst, receiver up.
      if (env.warmup > 0) {
        const per = Math.ceil(env.warmup / env.publishers);
        await (
          await prepareLoadInWorker({
            ...base,
            messages: per,
            inflight: env.inflight,
            clientIdPrefix: 'bench-warm',
          })
        ).go();
        await waitForCount(receiver, per * env.publishers, env.timeoutMs, 'warm-up');
      }
      receiver.reset();
      const sampler = new ProcSampler(d.pid, 250, true);
      sampler.begin();
      const peakMessages = Math.min(PEAK_MESSAGES, env.messages);
      ctx.log(`peak ingest: ${env.publishers} x ${peakMessages} QoS 1 unpaced, ${env.inflight} in flight`);
      const burst = await prepareLoadInWorker({
        ...base,
        messages: peakMessages,
        inflight: env.inflight,
        clientIdPrefix: 'bench-peak',
      });
      const peak = await burst.go();
      await waitForCount(receiver, peak.acked, env.timeoutMs, 'peak burst delivery');
      sampler.now();
      const peakW = seriesWindow(sampler.series, peak.startedAt, nowMs());
      const peakRow: ResultRow = {
        target: 'peak (unpaced burst, receiver up)',
        metrics: {
          secs: (peak.endedAt - peak.startedAt) / 1000,
          ingestRate: peak.rate,
          deliveredRate: receiver.received / ((receiver.lastAt - peak.startedAt) / 1000),
          maxBacklog: null,
          endBacklog: null,
          p50: receiver.latency.percentile(50),
          p99: receiver.latency.percentile(99),
          p999: receiver.latency.percentile(99.9),
          peakRssMb: peakW.peakRssMb,
          cpuPct: peakW.cpuPct,
        },
      };
      ctx.log(`peak ingest ${formatNumber(peak.rate, 0)} msg/s`);
      await sleep(500);
      receiver.reset();

      // The outage and the drain.
      const polls: SinkPoll[] = [];
      polling = true;
      pollLoop = (async () => {
        while (polling) {
          try {
            polls.push(await pollSink(d));
          } catch (err) {
            ctx.log(`status poll failed: ${(err as Error).message}`);
          }
          await sleep(POLL_MS);
        }
      })();
      const load = await prepareLoadInWorker({
        ...base,
        messages,
        inflight: PACED_INFLIGHT,
        rate: perPublisher,
        timeoutMs: (env.outageSeconds + env.drainSeconds) * 1000 + env.timeoutMs,
      });
      const self = new SelfCpu();
      const machine = new SystemCpu();
      await receiver.goDown(env.outageMode);
      const before = await pollSink(d);
      ctx.log(
        `receiver down (${env.outageMode}); ${env.publishers} x ${messages} QoS 1 at ${formatNumber(env.rate, 0)} msg/s in total`,
      );
      self.begin();
      machine.begin();
      phase = 'outage';
      const goAt = nowMs();
      sampler.now();
      let loadResult: LoadResult | null = null;
      let loadError: Error | null = null;
      const loadDone = load.go().then(
        (r) => {
          loadResult = r;
        },
        (err: Error) => {
          loadError = err;
        },
      );
      await Promise.race([sleep(env.outageSeconds * 1000), loadDone]);
      if (loadError) throw loadError;
      const atUp = await pollSink(d);
      await receiver.comeUp();
      upAt = nowMs();
      sampler.now();
      phase = 'draining';
      ctx.log(`receiver back; backlog ${formatNumber(atUp.backlog, 0)}, sink ${atUp.state}`);

      // Drained: the first poll sent after the return that sees the backlog at live level.
      const deadline = upAt + env.timeoutMs;
      let caught: SinkPoll | null = null;
      while (!caught) {
        if (loadError) throw loadError;
        if (nowMs() > deadline) throw new Error(`backlog not drained within ${env.timeoutMs} ms`);
        caught = polls.find((p) => p.sentAt > upAt && p.backlog <= threshold) ?? null;
        if (!caught) await sleep(20);
      }
      const caughtAt = caught.at;
      phase = 'caught-up';
      sampler.now();
      ctx.log(`caught up after ${((caughtAt - upAt) / 1000).toFixed(1)} s`);
      await loadDone;
      if (loadError) throw loadError;
      const result = loadResult as unknown as LoadResult;
      // Every acked record, counted by distinct seq (redeliveries do not count twice).
      if (!(await receiver.waitForUnique(result.acked, env.timeoutMs))) {
        ctx.log(`delivery: ${receiver.unique} distinct of ${result.acked} within ${env.timeoutMs} ms`);
      }
      sampler.end();
      const endAt = nowMs();
      const harnessCpuPct = self.end();
      const machinePct = machine.end();
      polling = false;
      await pollLoop;
      const after = await pollSink(d);

      // ---- figures ------------------------------------------------------------------------
      const nearest = (t: number): SinkPoll =>
        polls.reduce((a, b) => (Math.abs(b.at - t) < Math.abs(a.at - t) ? b : a), polls[0]);
      const ingestBetween = (a: SinkPoll, b: SinkPoll) => ((b.lastSeq - a.lastSeq) * 1000) / (b.at - a.at);
      const maxBacklog = (from: number, to: number) =>
        Math.max(0, ...polls.filter((p) => p.at >= from && p.at <= to).map((p) => p.backlog));
      const loadEnd = Math.max(result.endedAt, caughtAt);
      const series = sampler.series;
      const phaseRow = (
        target: string,
        from: number,
        to: number,
        a: SinkPoll,
        b: SinkPoll,
        s: PhaseStats,
        deliveredRate: number | null,
      ): ResultRow => {
        const w = seriesWindow(series, from, to);
        return {
          target,
          metrics: {
            secs: (to - from) / 1000,
            ingestRate: ingestBetween(a, b),
            deliveredRate,
            maxBacklog: maxBacklog(from, to),
            endBacklog: b.backlog,
            p50: s.live.count > 0 ? s.live.percentile(50) : null,
            p99: s.live.count > 0 ? s.live.percentile(99) : null,
            p999: s.live.count > 0 ? s.live.percentile(99.9) : null,
            liveRecords: s.live.count,
            arrivals: s.count,
            peakRssMb: w.peakRssMb,
            cpuPct: w.cpuPct,
          },
        };
      };
      const drain = stats.draining;
      // Records delivered per second while the backlog was above the live level, from the first
      // delivery after the return to the poll that saw it caught up.
      const drainRate = drain.count > 0 ? (drain.count * 1000) / (caughtAt - drain.firstAt) : 0;
      const caughtUp = stats['caught-up'];
      const rows: ResultRow[] = [
        peakRow,
        phaseRow(
          'outage (receiver down)',
          goAt,
          upAt,
          before,
          atUp,
          stats.outage,
          (stats.outage.count * 1000) / (upAt - goAt),
        ),
        phaseRow('draining (receiver back)', upAt, caughtAt, atUp, caught, drain, drainRate),
        phaseRow(
          'caught up (live)',
          caughtAt,
          loadEnd,
          caught,
          nearest(loadEnd),
          caughtUp,
          caughtUp.count > 1 ? (caughtUp.count * 1000) / (caughtUp.lastAt - caughtUp.firstAt) : null,
        ),
      ];

      const recoveryDelay = drain.count > 0 ? drain.firstAt - upAt : Number.NaN;
      const ratio = drainRate / peak.rate;
      const committed = after.lastSeq - before.lastSeq;
      const missing = result.acked - receiver.unique;
      const notes: string[] = [
        `drain rate ${formatNumber(drainRate, 0)} msg/s (records delivered per second while the backlog was above ` +
          `${formatNumber(threshold, 0)}) / peak ingest ${formatNumber(peak.rate, 0)} msg/s = ${ratio.toFixed(2)} ` +
          `(target >= ${DRAIN_TARGET}: ${ratio >= DRAIN_TARGET ? 'met' : 'NOT met'}); net backlog reduction ` +
          `${formatNumber(drainRate - env.rate, 0)} msg/s`,
        `time to drain ${((caughtAt - upAt) / 1000).toFixed(1)} s from the receiver's return to backlog <= ` +
          `${formatNumber(threshold, 0)} (backlog then ${formatNumber(atUp.backlog, 0)}, peak ` +
          `${formatNumber(maxBacklog(goAt, endAt), 0)}); recovery delay ${(recoveryDelay / 1000).toFixed(2)} s to the first delivery`,
        `delivered ${formatNumber(receiver.unique, 0)} distinct records of ${formatNumber(result.acked, 0)} acked ` +
          `(${formatNumber(committed, 0)} committed): ${missing <= 0 ? 'all arrived' : `${formatNumber(missing, 0)} MISSING`}; ` +
          `${formatNumber(receiver.redelivered, 0)} duplicates (redelivered seqs)`,
        `live p50/p99 = end-to-end latency of records sent after the receiver's return, by the phase they arrived in ` +
          `(in order behind the backlog while draining); worst generator lag ${formatNumber(result.maxLagMs, 1)} ms`,
        `RSS MB over time (from the outage start): ${rssTimeline(series, goAt, endAt, 10, goAt)}`,
        `whole run: harness CPU ${formatNumber(harnessCpuPct, 0)} %, other CPU ` +
          `${formatNumber(Math.max(0, machinePct - seriesWindow(series, goAt, endAt).cpuPct - harnessCpuPct), 0)} %; ` +
          `sink retry ${JSON.stringify(OUTAGE_RETRY)}`,
      ];
      if (result.endedAt < caughtAt) notes.push('live traffic ended before the backlog drained');
      return {
        params: {
          ...params,
          measured: {
            peakIngestRate: peak.rate,
            drainRate,
            drainToPeakRatio: ratio,
            timeToDrainMs: caughtAt - upAt,
            recoveryDelayMs: recoveryDelay,
            backlogAtReturn: atUp.backlog,
            acked: result.acked,
            committed,
            distinctDelivered: receiver.unique,
            missing,
            duplicates: receiver.redelivered,
            polls: polls.map((p) => ({ t: Math.round(p.at - goAt), backlog: p.backlog, state: p.state })),
            rss: series.map((r) => ({
              t: Math.round(r.at + performance.timeOrigin - goAt),
              mb: r.rssKb / 1024,
            })),
          },
        },
        columns: COLUMNS,
        rows,
        rowLabel: 'phase',
        notes,
      };
    } finally {
      polling = false;
      await pollLoop.catch(() => {});
      await daemon?.stop().catch((err: Error) => ctx.log(`edgeferry stop failed: ${err.message}`));
      await receiver.close();
    }
  },
};
