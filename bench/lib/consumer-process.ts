// The consuming end of a benchmark run in a process of its own (issue 15): the HTTP receiver an
// edgeferry HTTP sink posts to, the gRPC Ingest receiver, or the raw MQTT subscriber of the
// broker baselines. In the bench process it would share a core's worth of scheduling with the
// load generator, and the busier of the two could set the rate instead of the target; here it
// has its own process, measured on its own. The parent (remote-consumer.ts) talks to it over the
// IPC channel of `fork`:
//
//   parent -> child  { op: 'start', spec }  { op: 'reset', gen }  { op: 'sync', id }  { op: 'close' }
//   child -> parent  { t: 'started', port?, target? }  { t: 'state', ... } (pushed every few ms
//                    while counts move)  { t: 'synced', id, state, latency }  { t: 'error', message }
//
// Counts travel as pushed state (the parent polls them while it waits), the latency histogram
// only as a snapshot on `sync`, at the end of a run. Timestamps stay absolute ms (nowMs): the
// performance.timeOrigin of two processes on one machine agree within a few µs (checked here:
// timeOrigin + now() - CLOCK_MONOTONIC differed by under 3 µs between processes).

import type { Consumer } from './consumer.ts';

export type ConsumerSpec =
  | { kind: 'http'; trackUnique?: boolean }
  | { kind: 'grpc' }
  | { kind: 'mqtt'; host: string; port: number; filter: string; qos: 0 | 1; clientId?: string };

export interface ConsumerState {
  gen: number;
  received: number;
  firstAt: number;
  lastAt: number;
  duplicates: number;
  /** Upstream calls since the reset: HTTP requests, gRPC Pushes (0 for MQTT). */
  batches: number;
}

/** The percentiles a `sync` carries (every one the bench prints). */
export const SNAPSHOT_PERCENTILES = [50, 90, 99, 99.9, 99.99];

export interface LatencySnapshotData {
  count: number;
  max: number;
  /** [percentile, ms] for each of SNAPSHOT_PERCENTILES. */
  percentiles: [number, number][];
}

export type ParentMessage =
  | { op: 'start'; spec: ConsumerSpec }
  | { op: 'reset'; gen: number }
  | { op: 'sync'; id: number }
  | { op: 'close' };

export type ChildMessage =
  | { t: 'started'; port?: number; target?: string }
  | { t: 'state'; state: ConsumerState }
  | { t: 'synced'; id: number; state: ConsumerState; latency: LatencySnapshotData }
  | { t: 'error'; message: string };

/** How often moving counts are pushed to the parent (it polls every 10 ms). */
const PUSH_EVERY_MS = 5;

interface Hosted {
  consumer: Consumer;
  batches(): number;
  started: Extract<ChildMessage, { t: 'started' }>;
}

async function host(spec: ConsumerSpec): Promise<Hosted> {
  // Imported by kind, so an HTTP receiver's process does not load gRPC.
  if (spec.kind === 'http') {
    const { BenchReceiver } = await import('./http-receiver.ts');
    const r = new BenchReceiver({ trackUnique: spec.trackUnique });
    await r.start();
    return { consumer: r, batches: () => r.requests, started: { t: 'started', port: r.port } };
  }
  if (spec.kind === 'grpc') {
    const { GrpcConsumer } = await import('./grpc-consumer.ts');
    const g = new GrpcConsumer();
    await g.start();
    return { consumer: g, batches: () => g.pushes, started: { t: 'started', target: g.target } };
  }
  const { MqttSubscriber } = await import('./mqtt-sub.ts');
  const s = new MqttSubscriber();
  await s.start(spec.host, spec.port, spec.filter, spec.qos, spec.clientId);
  return { consumer: s, batches: () => 0, started: { t: 'started' } };
}

function main(): void {
  const send = (m: ChildMessage) => process.send?.(m);
  let hosted: Hosted | null = null;
  let gen = 0;
  let pushed = -1;
  const state = (): ConsumerState => {
    const c = hosted!.consumer;
    return {
      gen,
      received: c.received,
      firstAt: c.firstAt,
      lastAt: c.lastAt,
      duplicates: c.duplicates,
      batches: hosted!.batches(),
    };
  };
  const pusher = setInterval(() => {
    if (!hosted || hosted.consumer.received === pushed) return;
    pushed = hosted.consumer.received;
    send({ t: 'state', state: state() });
  }, PUSH_EVERY_MS);
  const close = async () => {
    clearInterval(pusher);
    await hosted?.consumer.close().catch(() => {});
    process.exit(0);
  };
  process.on('disconnect', () => void close());
  process.on('message', (m: ParentMessage) => {
    switch (m.op) {
      case 'start':
        host(m.spec).then(
          (h) => {
            hosted = h;
            send(h.started);
          },
          (err: Error) => send({ t: 'error', message: err.message }),
        );
        return;
      case 'reset':
        gen = m.gen;
        hosted?.consumer.reset();
        pushed = -1;
        return;
      case 'sync': {
        if (!hosted) return;
        const lat = hosted.consumer.latency;
        send({
          t: 'synced',
          id: m.id,
          state: state(),
          latency: {
            count: lat.count,
            max: lat.max,
            percentiles: SNAPSHOT_PERCENTILES.map((p) => [p, lat.percentile(p)]),
          },
        });
        return;
      }
      case 'close':
        void close();
        return;
    }
  });
}

if (process.send) main();
