// The systems an MQTT load is pointed at: the edgeferry daemon (consumer: the HTTP receiver its
// sink posts to, or the gRPC Ingest receiver its gRPC sink pushes to) and the baselines
// (consumer: an MQTT subscriber): a bare aedes broker, mosquitto when installed, and the null
// broker that only acknowledges (the load generator's ceiling). Every consumer runs in a process
// of its own (remote-consumer.ts), both sides alike, so the bench process holds only the load
// generator; only a receiver that hands records to code in the bench process (`divert`,
// `onRecord`) stays in it.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Consumer } from './consumer.ts';
import { type DaemonOptions, startDaemon } from './daemon.ts';
import type { BenchEnv } from './env.ts';
import { BenchReceiver, type BenchReceiverOptions } from './http-receiver.ts';
import { freePort, makeTempDir, ProcSampler, readProc, removeTempDir, stopChild, track } from './proc.ts';
import { RemoteConsumer } from './remote-consumer.ts';

export const MOSQUITTO_BIN = process.env.BENCH_MOSQUITTO ?? '/usr/sbin/mosquitto';

export interface MqttTarget {
  /** 'edgeferry', 'aedes', 'mosquitto', 'null-broker'. */
  name: string;
  host: string;
  port: number;
  /** The MQTT port speaks TLS: the CA (PEM) the load generator trusts. */
  tls?: { ca: string };
  pid: number;
  /** Where the messages come out; null when nothing consumes them (the null broker). */
  consumer: Consumer | null;
  sampler(): ProcSampler;
  /** Anything the target printed, for error reports. */
  output(): string;
  /** Internal counters worth comparing before and after a run (edgeferry: journal, batches). */
  inspect?(): Promise<Record<string, number>>;
  /** edgeferry: GET an admin path, e.g. '/v1/status'. */
  admin?(path: string): Promise<{ status: number; body: string }>;
  stop(): Promise<void>;
}

/** The subscription the baselines' consumer makes: every publisher's topic. */
export const BASELINE_FILTER = 'bench/#';

export interface EdgeferryTargetOptions {
  /** The HTTP sink's `batch:` section. */
  batch: Record<string, unknown>;
  journal?: Record<string, unknown>;
  daemon?: Partial<DaemonOptions>;
  /** Applies BENCH_CPU_PROF and BENCH_EDGEFERRY_CONFIG. */
  env?: BenchEnv;
  /** `startEdgeferry`: options of its HTTP receiver (e.g. `divert` for another source's records). */
  receiver?: BenchReceiverOptions;
}

/**
 * edgeferry with one HTTP sink posting to a `BenchReceiver` in a process of its own, or in this
 * process when `opts.receiver` hands records to code here (`divert`, `onRecord`).
 */
export async function startEdgeferry(opts: EdgeferryTargetOptions): Promise<MqttTarget> {
  let receiver: Consumer & { url: string };
  let batches: () => number;
  if (opts.receiver?.divert || opts.receiver?.onRecord) {
    const local = new BenchReceiver(opts.receiver);
    await local.start();
    receiver = local;
    batches = () => local.requests;
  } else {
    const remote = await RemoteConsumer.start({ kind: 'http', trackUnique: opts.receiver?.trackUnique });
    receiver = remote;
    batches = () => remote.batches;
  }
  return edgeferryTarget(
    'edgeferry',
    opts,
    receiver,
    { name: 'bench', type: 'http', url: receiver.url, batch: opts.batch },
    () => ({ httpBatches: batches() }),
  );
}

/**
 * edgeferry with one gRPC sink (`type: grpc`) pushing to the reference Ingest receiver
 * (bench/receivers/grpc-ingest-receiver.ts) in a process of its own.
 */
export async function startEdgeferryGrpc(opts: EdgeferryTargetOptions): Promise<MqttTarget> {
  const consumer = await RemoteConsumer.start({ kind: 'grpc' });
  return edgeferryTarget(
    'edgeferry (grpc sink)',
    opts,
    consumer,
    { name: 'bench', type: 'grpc', target: consumer.target, batch: opts.batch },
    () => ({ grpcPushes: consumer.batches }),
  );
}

async function edgeferryTarget(
  name: string,
  opts: EdgeferryTargetOptions,
  consumer: Consumer,
  sink: Record<string, unknown>,
  sinkCounters: () => Record<string, number>,
): Promise<MqttTarget> {
  try {
    const env = opts.env;
    const daemon = await startDaemon({
      nodeArgs: env?.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${env.cpuProfDir}`] : undefined,
      overrides: env?.edgeferryOverrides ?? undefined,
      ...opts.daemon,
      journal: opts.journal,
      sinks: [sink],
    });
    return {
      name,
      host: '127.0.0.1',
      port: daemon.mqttPort,
      pid: daemon.pid,
      consumer,
      sampler: daemon.sampler,
      output: daemon.output,
      admin: daemon.admin,
      async inspect() {
        const status = JSON.parse((await daemon.admin('/v1/status')).body) as {
          journal: { lastSeq: number; counters: { appended: number; committedBatches: number } };
        };
        return {
          journalAppended: status.journal.counters.appended,
          // Must move by as much as journalAppended: seqs are assigned one per committed record.
          journalLastSeq: status.journal.lastSeq,
          groupCommits: status.journal.counters.committedBatches,
          ...sinkCounters(),
        };
      },
      async stop() {
        await daemon.stop();
        await consumer.close();
      },
    };
  } catch (err) {
    await consumer.close();
    throw err;
  }
}

/** Spawns a broker process and waits for its 'listening' JSON line (or a TCP accept). */
export async function spawnBroker(
  name: string,
  command: string,
  args: string[],
  port: number,
  ready: 'json-line' | 'tcp',
): Promise<{ proc: ChildProcess; output: () => string }> {
  const proc = track(spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] }));
  let out = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (c: string) => {
    out = (out + c).slice(-8192);
  });
  const exited = new Promise<never>((_, reject) =>
    proc.once('exit', (code) => reject(new Error(`${name} exited (${code}) before listening: ${out}`))),
  );
  exited.catch(() => {});
  const listening =
    ready === 'json-line'
      ? new Promise<void>((resolve) => {
          const rl = createInterface({ input: proc.stdout! });
          rl.on('line', (line) => {
            if (line.includes('"listening"')) resolve();
          });
        })
      : waitForTcp(port, 10_000);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name} not listening within 10 s: ${out}`)), 10_000);
  });
  try {
    await Promise.race([listening, exited, timeout]);
  } catch (err) {
    await stopChild(proc, 1000);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  if (ready === 'tcp') proc.stdout!.resume();
  return { proc, output: () => out };
}

async function waitForTcp(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} not accepting within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function withSubscriber(
  name: string,
  port: number,
  broker: { proc: ChildProcess; output: () => string },
  cleanup: () => void = () => {},
): Promise<MqttTarget> {
  let sub: RemoteConsumer;
  try {
    sub = await RemoteConsumer.start({
      kind: 'mqtt',
      host: '127.0.0.1',
      port,
      filter: BASELINE_FILTER,
      qos: 1,
    });
  } catch (err) {
    await stopChild(broker.proc, 1000);
    cleanup();
    throw err;
  }
  return {
    name,
    host: '127.0.0.1',
    port,
    pid: broker.proc.pid!,
    consumer: sub,
    sampler: () => new ProcSampler(broker.proc.pid!),
    output: broker.output,
    async stop() {
      await sub.close();
      await stopChild(broker.proc, 5000);
      cleanup();
    },
  };
}

export const BASELINES_DIR = new URL('../baselines/', import.meta.url).pathname;

/** A bare aedes broker in its own process, one QoS 1 subscriber on `bench/#`. */
export async function startAedes(): Promise<MqttTarget> {
  const port = await freePort();
  const broker = await spawnBroker(
    'aedes',
    process.execPath,
    [join(BASELINES_DIR, 'aedes-broker.ts'), String(port)],
    port,
    'json-line',
  );
  return withSubscriber('aedes', port, broker);
}

export function mosquittoInstalled(): boolean {
  return existsSync(MOSQUITTO_BIN);
}

export interface MosquittoProcess {
  port: number;
  proc: ChildProcess;
  output: () => string;
  /** Removes its temp dir (after the process stopped). */
  cleanup: () => void;
}

/**
 * mosquitto on loopback, anonymous, no persistence. The per-client outgoing limits (20 in flight,
 * 1000 queued by default; beyond that QoS 1 messages are dropped) are lifted unless `extraConfig`
 * sets them again (later lines win). `noDelay`: `set_tcp_nodelay true`, every PUBACK and
 * delivery its own segment: lower latency, but QoS 1 throughput about 1.7x lower than mosquitto's
 * default (Nagle on), so a throughput baseline runs without it (issue 15).
 */
export async function spawnMosquitto(extraConfig: string[] = [], noDelay = true): Promise<MosquittoProcess> {
  const port = await freePort();
  const dir = makeTempDir('mosquitto-bench-');
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      'log_dest none',
      ...(noDelay ? ['set_tcp_nodelay true'] : []),
      'max_inflight_messages 0',
      'max_queued_messages 0',
      ...extraConfig,
      '',
    ].join('\n'),
  );
  try {
    const broker = await spawnBroker('mosquitto', MOSQUITTO_BIN, ['-c', conf], port, 'tcp');
    return { port, ...broker, cleanup: () => removeTempDir(dir) };
  } catch (err) {
    removeTempDir(dir);
    throw err;
  }
}

/**
 * mosquitto (`spawnMosquitto`) with one QoS 1 subscriber on `bench/#`, as it does with aedes;
 * `noDelay` for a latency figure, off for a throughput one (each the faster way for its figure).
 */
export async function startMosquitto(noDelay = true): Promise<MqttTarget> {
  const m = await spawnMosquitto([], noDelay);
  return withSubscriber('mosquitto', m.port, m, m.cleanup);
}

/**
 * edgeferry with one MQTT bridge sink (`type: mqtt`, MQTT 5, QoS 1) publishing to a mosquitto
 * started here (the "cloud" broker), where one QoS 1 subscriber on `edge/#` measures arrival.
 */
export async function startEdgeferryMqtt(opts: EdgeferryTargetOptions): Promise<MqttTarget> {
  const cloud = await spawnMosquitto();
  const stopCloud = async () => {
    await stopChild(cloud.proc, 5000);
    cloud.cleanup();
  };
  // Closing the subscriber stops the cloud broker too.
  let consumer: RemoteConsumer;
  try {
    consumer = await RemoteConsumer.start(
      {
        kind: 'mqtt',
        host: '127.0.0.1',
        port: cloud.port,
        filter: 'edge/#',
        qos: 1,
        clientId: 'bench-cloud-sub',
      },
      stopCloud,
    );
  } catch (err) {
    await stopCloud();
    throw err;
  }
  return edgeferryTarget(
    'edgeferry (mqtt sink)',
    opts,
    consumer,
    {
      name: 'bench',
      type: 'mqtt',
      url: `mqtt://127.0.0.1:${cloud.port}`,
      batch: opts.batch,
      window: opts.env?.mqttWindow ?? 100,
    },
    // The cloud broker's CPU is not the target's; kept apart so the notes can show it.
    () => ({ cloudBrokerCpuMs: (readProc(cloud.proc.pid!)?.cpuSec ?? 0) * 1000 }),
  );
}

/** The null broker: acknowledges everything, forwards nothing (`ackEach`: one write per PUBACK). */
export async function startNullBroker(ackEach = false): Promise<MqttTarget> {
  const port = await freePort();
  const broker = await spawnBroker(
    'null-broker',
    process.execPath,
    [join(BASELINES_DIR, 'null-broker.ts'), String(port), ...(ackEach ? ['--ack-each'] : [])],
    port,
    'json-line',
  );
  return {
    name: 'null-broker',
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
