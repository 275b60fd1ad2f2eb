// One measured MQTT load against one target: warm up, then publish N x M messages from a worker
// thread while sampling the target process, and wait until the target's consumer has every
// message. Shared by every MQTT-in scenario.

import { setTimeout as sleep } from 'node:timers/promises';
import { waitForCount, waitForCountOrQuiet } from './consumer.ts';
import type { BenchEnv } from './env.ts';
import { boundBy, type CpuParts, PART_COLUMNS, PartsCpu } from './harness-cpu.ts';
import { LOAD_DEFAULTS, type LoadResult, prepareLoadInWorker } from './mqtt-load.ts';
import type { Column, ResultRow } from './report.ts';
import type { MqttTarget } from './targets.ts';

export interface MqttRunSpec {
  publishers: number;
  /** Per publisher. */
  messages: number;
  qos: 0 | 1;
  inflight: number;
  payloadBytes: number;
  /** Messages (total) sent and consumed before measuring. */
  warmup: number;
  timeoutMs: number;
  /** Messages per second per publisher; absent or 0: unpaced. */
  rate?: number;
  /**
   * QoS 0: the consumer may get fewer than were sent. The run ends when all arrived or nothing
   * arrived for `QUIET_MS`; the shortfall is reported as `lost`.
   */
  lossAllowed?: boolean;
}

/** The unpaced QoS 1 load the env asks for (BENCH_PUBLISHERS, BENCH_MESSAGES, ...). */
export function qos1Spec(env: BenchEnv): MqttRunSpec {
  return {
    publishers: env.publishers,
    messages: env.messages,
    qos: 1,
    inflight: env.inflight,
    payloadBytes: env.payloadBytes,
    warmup: env.warmup,
    timeoutMs: env.timeoutMs,
  };
}

/** With `lossAllowed`: nothing new at the consumer for this long ends the run. */
export const QUIET_MS = 1500;

export interface MqttRunMetrics extends CpuParts {
  [key: string]: number | null;
  /** Acked msgs/s: all PUBACKs / (last PUBACK - first publish). */
  ingestRate: number;
  /** Mean per-connection acked msgs/s. */
  perConnRate: number;
  /** Consumed msgs/s: all records at the consumer / (last arrival - first publish). */
  deliveredRate: number | null;
  p50: number | null;
  p99: number | null;
  p999: number | null;
  maxLatency: number | null;
  /** Target process, over the window first publish .. last arrival. */
  peakRssMb: number;
  cpuPct: number;
  sent: number;
  acked: number;
  received: number | null;
  duplicates: number | null;
  /** Sent but never at the consumer (QoS 0 loss), never negative. */
  lost: number | null;
  lossPct: number | null;
  /** Paced runs: worst lag of a publisher behind its schedule, ms. */
  maxLagMs: number;
}

/** The columns every MQTT throughput scenario prints. */
export const MQTT_COLUMNS: Column[] = [
  { key: 'ingestRate', label: 'ingest msg/s', digits: 0, ratio: true },
  { key: 'perConnRate', label: 'per-conn msg/s', digits: 0, ratio: true },
  { key: 'deliveredRate', label: 'delivered msg/s', digits: 0, ratio: true },
  { key: 'p50', label: 'p50 ms', digits: 2, ratio: true },
  { key: 'p99', label: 'p99 ms', digits: 2, ratio: true },
  { key: 'p999', label: 'p99.9 ms', digits: 2, ratio: true },
  { key: 'peakRssMb', label: 'peak RSS MB', digits: 1, ratio: true },
  { key: 'cpuPct', label: 'CPU %', digits: 0, ratio: true },
  ...PART_COLUMNS,
];

export async function measureMqtt(
  target: MqttTarget,
  spec: MqttRunSpec,
  log: (msg: string) => void,
): Promise<{
  metrics: MqttRunMetrics;
  load: LoadResult;
  window: Record<string, number>;
  /** Change of the target's `inspect()` counters over the measured run. */
  counters: Record<string, number>;
  /** What set the rate (harness-cpu.ts `boundBy`). */
  boundBy: string;
}> {
  const consumer = target.consumer;
  const base = {
    ...LOAD_DEFAULTS,
    host: target.host,
    port: target.port,
    publishers: spec.publishers,
    qos: spec.qos,
    inflight: spec.inflight,
    payloadBytes: spec.payloadBytes,
    timeoutMs: spec.timeoutMs,
    rate: spec.rate ?? 0,
    tls: target.tls,
  };

  if (spec.warmup > 0) {
    const per = Math.ceil(spec.warmup / spec.publishers);
    const warm = await prepareLoadInWorker({ ...base, messages: per, clientIdPrefix: 'bench-warm', rate: 0 });
    await warm.go();
    if (consumer && spec.lossAllowed) {
      const n = per * spec.publishers;
      await waitForCountOrQuiet(consumer, n, QUIET_MS, spec.timeoutMs, `${target.name} warm-up`);
    } else if (consumer) {
      await waitForCount(consumer, per * spec.publishers, spec.timeoutMs, `${target.name} warm-up`);
    }
    await sleep(300);
    consumer?.reset();
  }

  const total = spec.publishers * spec.messages;
  const pace = spec.rate ? `, paced at ${spec.rate} msg/s each` : '';
  log(
    `${target.name}: ${spec.publishers} x ${spec.messages} QoS ${spec.qos}, ${spec.inflight} in flight${pace}`,
  );
  const before = (await target.inspect?.()) ?? {};
  const load = await prepareLoadInWorker({ ...base, messages: spec.messages });
  const sampler = target.sampler();
  const parts = new PartsCpu(consumer);
  sampler.begin();
  parts.begin();
  let result: LoadResult;
  try {
    result = await load.go();
    if (consumer) {
      const left = Math.max(1000, spec.timeoutMs - (result.endedAt - result.startedAt));
      if (spec.lossAllowed)
        await waitForCountOrQuiet(consumer, total, QUIET_MS, left, `${target.name} delivery`);
      else await waitForCount(consumer, total, left, `${target.name} delivery`);
    }
  } catch (err) {
    sampler.end();
    load.abort();
    throw err;
  }
  const win = sampler.end();
  const cpu = parts.end(win.cpuPct, result.cpuSec);
  await consumer?.sync?.();
  const after = (await target.inspect?.()) ?? {};
  const counters: Record<string, number> = {};
  for (const k of Object.keys(after)) counters[k] = after[k] - (before[k] ?? 0);
  const lat = consumer?.latency;
  const metrics: MqttRunMetrics = {
    ingestRate: result.rate,
    perConnRate: result.perConnectionRate,
    deliveredRate: consumer ? consumer.received / ((consumer.lastAt - result.startedAt) / 1000) : null,
    p50: lat ? lat.percentile(50) : null,
    p99: lat ? lat.percentile(99) : null,
    p999: lat ? lat.percentile(99.9) : null,
    maxLatency: lat ? lat.max : null,
    peakRssMb: win.peakRssMb,
    cpuPct: win.cpuPct,
    ...cpu,
    sent: result.sent,
    acked: result.acked,
    received: consumer ? consumer.received : null,
    duplicates: consumer ? consumer.duplicates : null,
    lost: consumer ? Math.max(0, total - consumer.received) : null,
    lossPct: consumer ? (Math.max(0, total - consumer.received) * 100) / total : null,
    maxLagMs: result.maxLagMs,
  };
  if (consumer && consumer.received > total) {
    log(`${target.name}: consumer got ${consumer.received} for ${total} sent (redeliveries)`);
  }
  const offered = spec.rate ? spec.rate * spec.publishers : 0;
  return { metrics, load: result, window: { ...win }, counters, boundBy: boundBy(metrics, offered) };
}

/** A result row from a measured run (or the error that ended it). */
export function mqttRow(
  target: string,
  run: Awaited<ReturnType<typeof measureMqtt>> | Error,
  extra: Record<string, unknown> = {},
): ResultRow {
  if (run instanceof Error) return { target, metrics: {}, error: run.message, detail: extra };
  return {
    target,
    metrics: run.metrics,
    detail: {
      ...extra,
      boundBy: run.boundBy,
      window: run.window,
      counters: run.counters,
      connections: run.load.connections.map((c) => ({
        clientId: c.clientId,
        acked: c.acked,
        ms: Math.round(c.lastAckAt - c.firstSendAt),
        rate: Math.round(c.rate),
      })),
    },
  };
}
