// CoAP loads against edgeferry's CoAP server (consumer: the HTTP receiver its sink posts to) and
// against the bare node-coap baseline (no consumer: it only answers), side by side as
// compare.ts does for MQTT: interleaved rounds, a fresh target each run, the best round by
// acked rate, every round in the JSON.

import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  COAP_LOAD_DEFAULTS,
  type CoapLoadResult,
  type CoapType,
  prepareCoapLoadInWorker,
} from './coap-load.ts';
import { waitForCount, waitForCountOrQuiet } from './consumer.ts';
import { boundBy, type CpuParts, describeParts, PART_COLUMNS, PartsCpu } from './harness-cpu.ts';
import { QUIET_MS } from './mqtt-run.ts';
import { freeUdpPort, ProcSampler, stopChild, udpCounters } from './proc.ts';
import { type Column, formatNumber, type ResultRow } from './report.ts';
import type { ScenarioContext } from './scenario.ts';
import {
  BASELINES_DIR,
  type EdgeferryTargetOptions,
  type MqttTarget,
  spawnBroker,
  startEdgeferry,
} from './targets.ts';

/** Where a CoAP load goes: the same shape as an MQTT target, `port` being the UDP port. */
export type CoapTarget = MqttTarget;

export interface CoapRunSpec {
  clients: number;
  /** Per client. */
  messages: number;
  inflight: number;
  payloadBytes: number;
  /** Messages (total, CON) sent and consumed before measuring, after the probe. */
  warmup: number;
  timeoutMs: number;
  ackTimeoutMs: number;
  maxRetransmit: number;
  nonWaitMs: number;
}

/** The daemon's CoAP path prefix (`coap.prefix`); clients post to /t/bench/<i>. */
export const COAP_PREFIX = 't';

/** edgeferry with its CoAP server on a free UDP port and one HTTP sink to a receiver here. */
export async function startEdgeferryCoap(opts: EdgeferryTargetOptions): Promise<CoapTarget> {
  const port = await freeUdpPort();
  const t = await startEdgeferry({
    ...opts,
    daemon: {
      ...opts.daemon,
      extra: { coap: { enabled: true, host: '127.0.0.1', port, prefix: COAP_PREFIX } },
    },
  });
  return { ...t, port };
}

/** The bare node-coap server in its own process: answers 2.04, keeps nothing, no consumer. */
export async function startCoapBaseline(): Promise<CoapTarget> {
  const port = await freeUdpPort();
  const broker = await spawnBroker(
    'coap-server',
    process.execPath,
    [join(BASELINES_DIR, 'coap-server.ts'), String(port)],
    port,
    'json-line',
  );
  return {
    name: 'coap-server',
    host: '127.0.0.1',
    port,
    pid: broker.proc.pid!,
    consumer: null,
    sampler: () => new ProcSampler(broker.proc.pid!),
    output: broker.output,
    async stop() {
      await stopChild(broker.proc, 2000);
    },
  };
}

export interface CoapRunMetrics extends CpuParts {
  [key: string]: number | null;
  /** 2.xx responses / (last 2.xx - first send), all clients. */
  ackRate: number;
  /** 99 % of the messages / time to 99 % answered (NaN if never): without the retransmission tail. */
  rate99: number;
  perClientRate: number;
  /** Records at the sink / (last arrival - first send); null without a consumer. */
  deliveredRate: number | null;
  /** Send (first transmission) -> 2.xx, ms. */
  p50: number;
  p99: number;
  p999: number;
  maxLatency: number;
  /** End to end at the sink (receive time - send time in the payload). */
  sinkP99: number | null;
  sent: number;
  acked: number;
  received: number | null;
  /** CON: sent - acked (must be 0). NON: sent - received at the sink (null without a sink). */
  lost: number | null;
  retransmits: number;
  failed: number;
  unanswered: number;
  /** 5.03 answers (back-pressure), each request sent again after Max-Age. */
  refused: number;
  peakRssMb: number;
  cpuPct: number;
}

export const COAP_COLUMNS: Column[] = [
  { key: 'ackRate', label: 'acked msg/s', digits: 0, ratio: true },
  { key: 'rate99', label: '99% msg/s', digits: 0, ratio: true },
  { key: 'perClientRate', label: 'per-client msg/s', digits: 0, ratio: true },
  { key: 'deliveredRate', label: 'delivered msg/s', digits: 0 },
  { key: 'p50', label: 'p50 ms', digits: 2, ratio: true },
  { key: 'p99', label: 'p99 ms', digits: 2, ratio: true },
  { key: 'p999', label: 'p99.9 ms', digits: 2, ratio: true },
  { key: 'sinkP99', label: 'sink p99 ms', digits: 2 },
  { key: 'lost', label: 'lost', digits: 0 },
  { key: 'retransmits', label: 'retrans', digits: 0 },
  { key: 'peakRssMb', label: 'peak RSS MB', digits: 1, ratio: true },
  { key: 'cpuPct', label: 'CPU %', digits: 0, ratio: true },
  ...PART_COLUMNS,
];

function loadOptions(target: CoapTarget, spec: CoapRunSpec) {
  return {
    ...COAP_LOAD_DEFAULTS,
    host: target.host,
    port: target.port,
    clients: spec.clients,
    inflight: spec.inflight,
    payloadBytes: spec.payloadBytes,
    pathPrefix: `/${COAP_PREFIX}/bench`,
    timeoutMs: spec.timeoutMs,
    ackTimeoutMs: spec.ackTimeoutMs,
    maxRetransmit: spec.maxRetransmit,
    nonWaitMs: spec.nonWaitMs,
  };
}

function loadSummary(r: CoapLoadResult): string {
  const codes = Object.keys(r.errorCodes).length ? `, error codes ${JSON.stringify(r.errorCodes)}` : '';
  return (
    `acked ${r.acked} of ${r.sent} sent, ${r.retransmits} retransmissions, ${r.failed} given up, ` +
    `${r.unanswered} NON unanswered, ${r.refused} answered 5.03 (sent again after Max-Age)${codes}`
  );
}

export async function measureCoap(
  target: CoapTarget,
  type: CoapType,
  spec: CoapRunSpec,
  log: (msg: string) => void,
): Promise<{
  metrics: CoapRunMetrics;
  load: CoapLoadResult;
  window: Record<string, number>;
  counters: Record<string, number>;
}> {
  const consumer = target.consumer;
  const base = loadOptions(target, spec);
  // The warm-up's prepare probes every client's path with one CON POST (a target that does not
  // answer fails here, in seconds); then `warmup` CON messages go through the whole path.
  const per = Math.ceil(spec.warmup / spec.clients);
  const warm = await prepareCoapLoadInWorker({ ...base, type: 'con', messages: per, probe: true });
  const w = await warm.go();
  if (w.timedOut || w.acked < w.sent)
    throw new Error(`${target.name} warm-up: ${loadSummary(w)}${w.timedOut ? ' (timed out)' : ''}`);
  if (consumer) {
    await waitForCount(consumer, spec.clients + w.acked, spec.timeoutMs, `${target.name} warm-up`);
    await sleep(300);
    consumer.reset();
  }

  const total = spec.clients * spec.messages;
  log(
    `${target.name}: ${spec.clients} x ${spec.messages} ${type.toUpperCase()} POST, ${spec.inflight} in flight`,
  );
  const before = (await target.inspect?.()) ?? {};
  const load = await prepareCoapLoadInWorker({ ...base, type, messages: spec.messages, probe: false });
  const udp0 = udpCounters();
  const sampler = target.sampler();
  const parts = new PartsCpu(consumer);
  sampler.begin();
  parts.begin();
  let result: CoapLoadResult;
  try {
    result = await load.go();
    if (result.timedOut)
      throw new Error(
        `${target.name} ${type.toUpperCase()}: timed out after ${spec.timeoutMs} ms: ${loadSummary(result)}`,
      );
    if (consumer) {
      const left = Math.max(1000, spec.timeoutMs - (result.endedAt - result.startedAt));
      // Every acknowledged CON must reach the sink; NON (and CON given up, which the server may
      // still have taken) may not: the wait ends when nothing new arrives.
      if (type === 'con' && result.acked === result.sent)
        await waitForCount(consumer, result.acked, left, `${target.name} delivery`);
      else await waitForCountOrQuiet(consumer, result.sent, QUIET_MS, left, `${target.name} delivery`);
    }
  } catch (err) {
    sampler.end();
    load.abort();
    throw err;
  }
  const win = sampler.end();
  const cpu = parts.end(win.cpuPct, result.cpuSec);
  await consumer?.sync?.();
  const udp1 = udpCounters();
  const after = (await target.inspect?.()) ?? {};
  const counters: Record<string, number> = {};
  for (const k of Object.keys(after)) counters[k] = after[k] - (before[k] ?? 0);
  // Machine-wide: drops in any socket's receive buffer (the target's, the clients', others').
  if (udp0 && udp1) counters.udpRcvbufErrors = udp1.RcvbufErrors - udp0.RcvbufErrors;
  const lost =
    type === 'con' ? result.sent - result.acked : consumer ? Math.max(0, total - consumer.received) : null;
  const metrics: CoapRunMetrics = {
    ackRate: result.rate,
    rate99: result.rate99,
    perClientRate: result.perClientRate,
    deliveredRate: consumer ? consumer.received / ((consumer.lastAt - result.startedAt) / 1000) : null,
    p50: result.latency.p50,
    p99: result.latency.p99,
    p999: result.latency.p999,
    maxLatency: result.latency.max,
    sinkP99: consumer ? consumer.latency.percentile(99) : null,
    sent: result.sent,
    acked: result.acked,
    received: consumer ? consumer.received : null,
    lost,
    retransmits: result.retransmits,
    failed: result.failed,
    unanswered: result.unanswered,
    refused: result.refused,
    peakRssMb: win.peakRssMb,
    cpuPct: win.cpuPct,
    ...cpu,
  };
  return { metrics, load: result, window: { ...win }, counters };
}

export type CoapStarter = [name: string, start: () => Promise<CoapTarget>];

/** Row name of a target under a message type: 'edgeferry CON'. */
export function coapRowName(target: string, type: CoapType): string {
  return `${target} ${type.toUpperCase()}`;
}

/**
 * Every type x target, interleaved round by round (edgeferry CON, coap-server CON, edgeferry NON,
 * coap-server NON, edgeferry CON, ...); a row per type and target, its best round by acked rate.
 * The first starter is the reference: the other rows of a type carry ratios against its row.
 */
export async function compareCoap(
  ctx: ScenarioContext,
  spec: CoapRunSpec,
  types: CoapType[],
  starters: CoapStarter[],
): Promise<{ rows: ResultRow[]; notes: string[] }> {
  const notes: string[] = [];
  const rounds = new Map<string, ResultRow[]>();
  const refName = starters[0][0];
  for (let round = 1; round <= ctx.env.rounds; round++) {
    for (const type of types) {
      for (const [name, start] of starters) {
        const rowName = coapRowName(name, type);
        if (!rounds.has(rowName)) rounds.set(rowName, []);
        const tag = ctx.env.rounds > 1 ? `${rowName} (round ${round}/${ctx.env.rounds})` : rowName;
        // The reference target's own rows carry no ratio (its NON row is not compared with its CON row).
        const reference = coapRowName(refName, type);
        let target: CoapTarget | null = null;
        try {
          target = await start();
          const run = await measureCoap(target, type, spec, (m) =>
            ctx.log(ctx.env.rounds > 1 ? `[round ${round}] ${m}` : m),
          );
          const m = run.metrics;
          const c = run.counters;
          const journal =
            c.groupCommits > 0
              ? `; ${formatNumber(c.groupCommits, 0)} group commits (avg ${formatNumber(c.journalAppended / c.groupCommits, 1)} records), ` +
                `${formatNumber(c.httpBatches, 0)} HTTP batches`
              : '';
          ctx.log(
            `${tag}: ${formatNumber(m.ackRate, 0)} msg/s acked, p99 ${formatNumber(m.p99, 2)} ms, ` +
              `${loadSummary(run.load)}${journal}`,
          );
          rounds.get(rowName)!.push({
            target: rowName,
            reference,
            metrics: m,
            detail: {
              round,
              type,
              boundBy: boundBy(m),
              window: run.window,
              counters: run.counters,
              errorCodes: run.load.errorCodes,
              stray: run.load.stray,
              resets: run.load.resets,
              clients: run.load.clients.map((cl) => ({
                path: cl.path,
                acked: cl.acked,
                ms: Math.round(cl.lastAckAt - cl.firstSendAt),
                rate: Math.round(cl.rate),
              })),
            },
          });
        } catch (err) {
          const e = err as Error;
          const out = target?.output().slice(-2000).trim();
          ctx.log(`${tag} failed: ${e.message}${out ? `\n${out}` : ''}`);
          rounds
            .get(rowName)!
            .push({ target: rowName, reference, metrics: {}, error: e.message, detail: { round, type } });
        } finally {
          await target?.stop().catch((err: Error) => ctx.log(`${name} stop failed: ${err.message}`));
        }
      }
    }
  }

  const rows: ResultRow[] = [];
  for (const [name, runs] of rounds) {
    const ok = runs.filter((r) => !r.error);
    if (ok.length === 0) {
      rows.push(runs[runs.length - 1]);
      continue;
    }
    const chosen = ok.reduce((a, b) => ((b.metrics.ackRate ?? 0) > (a.metrics.ackRate ?? 0) ? b : a));
    const m = chosen.metrics;
    // As compare.ts does: a harness part busier than the target may have set the row (issue 15).
    const harnessBound = (m.harnessCpuPct ?? 0) > (m.cpuPct ?? Number.POSITIVE_INFINITY);
    if (harnessBound)
      notes.push(
        `${name}: INVALID as a comparison: the harness was busier than the target (${describeParts(m)})`,
      );
    rows.push({
      ...chosen,
      target: harnessBound && !name.startsWith(`${refName} `) ? `${name} (invalid)` : name,
      detail: {
        ...chosen.detail,
        harnessBound,
        rounds: runs.map((r) => ({ metrics: r.metrics, error: r.error })),
      },
    });
    const c = (chosen.detail?.counters ?? {}) as Record<string, number>;
    if (c.groupCommits > 0)
      notes.push(
        `${name}: ${formatNumber(c.groupCommits, 0)} group commits (avg ${formatNumber(c.journalAppended / c.groupCommits, 1)} records), ` +
          `${formatNumber(c.httpBatches, 0)} HTTP batches (avg ${formatNumber((m.received ?? 0) / c.httpBatches, 1)} records)`,
      );
    for (const r of runs) {
      const rc = (r.detail?.counters ?? {}) as Record<string, number>;
      if (rc.journalLastSeq !== undefined && rc.journalLastSeq !== rc.journalAppended)
        notes.push(
          `${name} (round ${r.detail?.round}): the journal counted ${formatNumber(rc.journalAppended, 0)} records appended ` +
            `but its last seq moved by ${formatNumber(rc.journalLastSeq, 0)}`,
        );
    }
    if (m.received != null && m.received > m.sent!)
      notes.push(
        `${name}: the sink got ${formatNumber(m.received, 0)} records for ${formatNumber(m.sent, 0)} sent (duplicates: retransmitted CONs journaled twice?)`,
      );
    if (m.received != null && m.acked != null && m.received < m.acked && name.endsWith('CON'))
      notes.push(
        `${name}: only ${formatNumber(m.received, 0)} of ${formatNumber(m.acked, 0)} acknowledged records reached the sink`,
      );
    if (c.udpRcvbufErrors > 0)
      notes.push(
        `${name}: ${formatNumber(c.udpRcvbufErrors, 0)} datagrams dropped by full UDP receive buffers (machine-wide RcvbufErrors), ` +
          `${formatNumber(m.retransmits, 0)} retransmissions`,
      );
    if (m.failed)
      notes.push(
        `${name}: ${formatNumber(m.failed, 0)} CON given up after ${spec.maxRetransmit} retransmissions`,
      );
    if (m.unanswered)
      notes.push(
        `${name}: ${formatNumber(m.unanswered, 0)} NON without a response within ${spec.nonWaitMs} ms`,
      );
    if (m.refused)
      notes.push(
        `${name}: ${formatNumber(m.refused, 0)} answers 5.03 (back-pressure), each request sent again after its Max-Age`,
      );
    const codes = chosen.detail?.errorCodes as Record<string, number> | undefined;
    if (codes && Object.keys(codes).length > 0)
      notes.push(`${name}: non-2.xx responses ${JSON.stringify(codes)}`);
    if ((m.otherCpuPct ?? 0) > 25)
      notes.push(
        `${name}: noisy run: ${(m.otherCpuPct ?? 0).toFixed(0)}% CPU used outside the target and the harness`,
      );
  }
  if (ctx.env.rounds > 1) notes.push(`best of ${ctx.env.rounds} interleaved rounds by acked msg/s`);
  return { rows, notes };
}
