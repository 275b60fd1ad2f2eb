// The fuzz run against a real daemon (issue #14 item 5). In order:
//  1. With the HTTP upstream refusing (503), a client publishes `preload` QoS 1 records: all
//     acknowledged, so all journaled, none delivered yet.
//  2. The upstream accepts again; while the backlog drains, `concurrency` connections at a time
//     throw hostile cases (plugins' generators, each case seeded from the run seed and its index)
//     at the daemon until `packets` frames were sent or `maxDurationMs` passed, and a
//     well-behaved mqtt.js client publishes QoS 1 messages one after another the whole time.
//  3. Every preloaded and every acknowledged well-behaved record must reach the upstream, in
//     order; the daemon must still run; its RSS is sampled from /proc/<pid>/status throughout.
// The caller owns the daemon and the receiver; the run stops by itself.

import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { baseConfig, type DaemonHandle, eventually } from '../helpers/daemon.ts';
import type { HttpReceiver } from '../helpers/http-receiver.ts';
import type { FuzzPlugin } from './plugin.ts';
import { caseRng } from './rng.ts';

export interface FuzzOptions {
  seed: number;
  daemon: DaemonHandle;
  /** The daemon's HTTP sink upstream (routes must include `fuzz-good/#` and `fuzz-pre/#`). */
  receiver: HttpReceiver;
  plugins: FuzzPlugin[];
  /** Frames to send in all (the run stops at this or at maxDurationMs, whichever comes first). */
  packets: number;
  maxDurationMs: number;
  concurrency: number;
  preload: number;
  /** Pause between two well-behaved publishes. */
  goodIntervalMs: number;
  /** How long to wait for every record at the upstream once the fuzzing stopped. */
  settleMs?: number;
  /** Progress lines (the long run prints them). */
  progress?: (line: string) => void;
}

export interface FuzzReport {
  seed: number;
  cases: number;
  packets: number;
  byKind: Record<string, number>;
  outcomes: Record<string, number>;
  /** Cases whose transport threw (a connection refused: the daemon not listening). */
  deliveryErrors: number;
  durationMs: number;
  preload: { acked: number; delivered: number };
  good: { acked: number; failed: number; disconnects: number; delivered: number; inOrder: boolean };
  rssKb: { start: number; max: number; end: number; samples: number[] };
  daemonAlive: boolean;
  /** Records at the upstream whose topic has U+FFFD (decoded from ill-formed UTF-8) or U+0000. */
  illFormedTopics: number;
  /** The daemon's `/metrics` lines for protocol errors at the end. */
  protocolErrors: string[];
  /** Its V8 heap and external memory at the end (where RSS beyond the start went). */
  memory: string[];
}

export function readRssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const { daemon, receiver } = o;
  const pid = daemon.proc.pid!;
  const url = `mqtt://127.0.0.1:${daemon.mqttPort}`;
  const say = o.progress ?? (() => {});

  // 1. A backlog journaled before the fuzzing.
  receiver.respond = () => ({ status: 503 });
  const pre = await mqtt.connectAsync(url, { clientId: 'fuzz-pre', reconnectPeriod: 0 });
  for (let i = 0; i < o.preload; i++) await pre.publishAsync('fuzz-pre/seq', `pre-${i}`, { qos: 1 });
  await pre.endAsync();
  receiver.respond = () => ({ status: 200 });

  // 2. The well-behaved client, the RSS sampler and the hostile connections, together.
  const good = await mqtt.connectAsync(url, { clientId: 'fuzz-good', reconnectPeriod: 0, keepalive: 10 });
  const goodState = { acked: 0, failed: 0, disconnects: 0, stop: false };
  good.on('error', () => {});
  good.on('close', () => goodState.disconnects++);
  const goodLoop = (async () => {
    while (!goodState.stop && good.connected) {
      try {
        await good.publishAsync('fuzz-good/seq', `good-${goodState.acked}`, { qos: 1 });
        goodState.acked++;
      } catch {
        goodState.failed++;
        return;
      }
      await sleep(o.goodIntervalMs);
    }
  })();

  const samples: number[] = [readRssKb(pid)];
  const sampler = setInterval(() => {
    try {
      samples.push(readRssKb(pid));
    } catch {
      // The daemon is gone; daemonAlive says so.
    }
  }, 250);

  const byKind: Record<string, number> = {};
  const outcomes: Record<string, number> = {};
  let cases = 0;
  let packets = 0;
  let deliveryErrors = 0;
  const started = Date.now();
  const transports = o.plugins.map((p) => p.open(daemon));
  const worker = async (): Promise<void> => {
    while (packets < o.packets && Date.now() - started < o.maxDurationMs && daemon.proc.exitCode === null) {
      const index = cases++;
      const rng = caseRng(o.seed, index);
      const which = rng.int(o.plugins.length);
      const c = o.plugins[which].make(rng);
      packets += c.frames.length;
      byKind[c.kind] = (byKind[c.kind] ?? 0) + 1;
      try {
        const outcome = await transports[which].deliver(c, index);
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      } catch {
        deliveryErrors++;
      }
      if (index % 5000 === 0 && index > 0)
        say(`${index} cases, ${packets} packets, rss ${samples.at(-1)} kB, good acked ${goodState.acked}`);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  const durationMs = Date.now() - started;
  await Promise.all(transports.map((t) => t.close()));
  goodState.stop = true;
  await goodLoop;

  // 3. Everything acknowledged arrives.
  const payloads = (prefix: string) =>
    receiver.records.filter((r) => r.payload.startsWith(prefix)).map((r) => r.payload);
  const distinct = (prefix: string) => new Set(payloads(prefix)).size;
  await eventually(
    () => distinct('pre-') >= o.preload && distinct('good-') >= goodState.acked,
    'every preloaded and every acknowledged well-behaved record at the upstream',
    o.settleMs ?? 60_000,
  ).catch(() => {});
  clearInterval(sampler);
  samples.push(readRssKb(pid));
  const goodSeen = payloads('good-').map((p) => Number(p.slice(5)));
  let inOrder = true;
  // At-least-once: a redelivered batch may repeat records, never step back past new ones.
  for (let i = 1, hi = goodSeen[0] ?? 0; i < goodSeen.length; i++) {
    if (goodSeen[i] > hi + 1) inOrder = false;
    hi = Math.max(hi, goodSeen[i]);
  }
  const daemonAlive = daemon.proc.exitCode === null && daemon.proc.signalCode === null;
  const metrics = daemonAlive ? await daemon.metrics() : '';
  const report: FuzzReport = {
    seed: o.seed,
    cases,
    packets,
    byKind,
    outcomes,
    deliveryErrors,
    durationMs,
    preload: { acked: o.preload, delivered: distinct('pre-') },
    good: {
      acked: goodState.acked,
      failed: goodState.failed,
      disconnects: goodState.disconnects,
      delivered: distinct('good-'),
      inOrder,
    },
    rssKb: { start: samples[0], max: Math.max(...samples), end: samples.at(-1)!, samples },
    daemonAlive,
    illFormedTopics: receiver.records.filter((r) => r.topic.includes('\ufffd') || r.topic.includes('\u0000'))
      .length,
    protocolErrors: metrics
      .split('\n')
      .filter((l) => /^edgeferry_(mqtt|ingress)_protocol_errors_total/.test(l)),
    memory: metrics
      .split('\n')
      .filter((l) => /^edgeferry_nodejs_(heap_size_(used|total)_bytes|external_memory_bytes) /.test(l)),
  };
  await good.endAsync().catch(() => {});
  return report;
}

/** The daemon config a fuzz run uses: loopback, an HTTP sink to `receiverUrl` that retries fast. */
export function fuzzConfig(
  dir: string,
  receiverUrl: string,
  maxPacketBytes: number,
): Record<string, unknown> {
  return baseConfig(dir, {
    mqtt: { host: '127.0.0.1', port: 0, maxPacketBytes },
    sinks: [
      {
        name: 'upstream',
        type: 'http',
        url: receiverUrl,
        payloadEncoding: 'utf8',
        retry: { minMs: 50, maxMs: 500 },
      },
    ],
  });
}
