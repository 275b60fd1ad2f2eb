// The Gateway API (edgeferry.v1.Gateway and grpc.health.v1.Health) against the real daemon: a
// child process, real @grpc/grpc-js clients built from the published .proto files, real mqtt.js
// devices, everything on 127.0.0.1.

import { readFileSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ChannelCredentials, credentials, type ServiceError, status } from '@grpc/grpc-js';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GrpcIngestReceiver } from '../../bench/receivers/grpc-ingest-receiver.ts';
import type { Logger } from '../../src/core/logger.ts';
import { Journal } from '../../src/journal/journal.ts';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { FaultProxy } from '../helpers/fault-proxy.ts';
import { generatePki, type TestPki } from './certs.ts';
import { type GatewayClient, gatewayClient, healthClient, type StreamedRecord } from './grpc-client.ts';
import { type RawSub, rawSubscribe as rawSubscribeStream } from './in-process.ts';

const daemons: DaemonHandle[] = [];
const grpcClients: GatewayClient[] = [];
const devices: MqttClient[] = [];
const streams: GatewayClient[] = [];
const cleanups: (() => Promise<unknown> | unknown)[] = [];

afterEach(async () => {
  for (const s of streams.splice(0)) s.cancel();
  for (const c of grpcClients.splice(0)) c.close();
  for (const d of devices.splice(0)) d.end(true);
  await Promise.all(daemons.splice(0).map((d) => d.kill()));
  for (const f of cleanups.splice(0).reverse()) await f();
});

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function gateway(overrides: Record<string, unknown> = {}, dir = tempDir()): Promise<DaemonHandle> {
  const d = await startDaemon(dir, writeConfig(dir, baseConfig(dir, overrides)));
  daemons.push(d);
  return d;
}

async function restart(d: DaemonHandle): Promise<DaemonHandle> {
  const again = await startDaemon(d.dir, d.configPath);
  daemons.push(again);
  return again;
}

function client(d: DaemonHandle, creds?: ChannelCredentials, host = '127.0.0.1'): GatewayClient {
  const c = gatewayClient(`${host}:${d.grpcPort}`, creds);
  grpcClients.push(c);
  return c;
}

function health(target: string, creds?: ChannelCredentials): GatewayClient {
  const h = healthClient(target, creds);
  grpcClients.push(h);
  return h;
}

async function device(d: DaemonHandle, clientId: string): Promise<MqttClient> {
  const dev = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, { clientId });
  devices.push(dev);
  return dev;
}

/** Publishes `${prefix}${i}` for i in from..to, QoS 1, pipelined; resolves when all are acked (committed). */
async function publishRange(dev: MqttClient, topic: string, from: number, to: number, prefix = 'm') {
  await Promise.all(range(from, to).map((i) => dev.publishAsync(topic, `${prefix}${i}`, { qos: 1 })));
}

/** A unary call as a promise; rejects with the ServiceError. */
function unary<T>(c: GatewayClient, method: string, req: object, deadlineMs = 10_000): Promise<T> {
  return new Promise<T>((resolve, reject) =>
    c[method](req, { deadline: Date.now() + deadlineMs }, (err: ServiceError | null, res: T) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

/** The error a call fails with (the test fails if it succeeds). */
async function failure(p: Promise<unknown>): Promise<ServiceError> {
  const outcome = await p.then(
    (res) => ({ ok: true as const, res }),
    (err: ServiceError) => ({ ok: false as const, err }),
  );
  if (outcome.ok) throw new Error(`expected the call to fail, it returned ${JSON.stringify(outcome.res)}`);
  return outcome.err;
}

const check = (h: GatewayClient, service = '', deadlineMs = 10_000) =>
  unary<{ status: string }>(h, 'Check', { service }, deadlineMs).then((r) => r.status);

interface Sub {
  stream: GatewayClient;
  records: StreamedRecord[];
  error: ServiceError | null;
  /** The server ended the stream with OK. */
  ended: boolean;
  seqs(): number[];
}

/** Opens a Subscribe stream and collects what it delivers. */
function subscribe(c: GatewayClient, req: object): Sub {
  const stream = c.Subscribe(req);
  streams.push(stream);
  const sub: Sub = {
    stream,
    records: [],
    error: null,
    ended: false,
    seqs: () => sub.records.map((r) => r.seq),
  };
  stream.on('error', (e: ServiceError) => {
    sub.error = e;
  });
  stream.on('status', (st: { code: number }) => {
    if (st.code === status.OK) sub.ended = true;
  });
  stream.on('data', (r: StreamedRecord) => sub.records.push(r));
  return sub;
}

/** Waits until the daemon has logged `n` subscriptions in total (the stream is registered server-side). */
async function subscribers(d: DaemonHandle, n: number): Promise<void> {
  await eventually(
    () => d.logs.filter((l) => l.msg === 'subscriber connected').length >= n,
    `${n} subscriptions registered`,
  );
}

async function lastSeq(d: DaemonHandle): Promise<number> {
  return (await d.status()).journal.lastSeq;
}

/** A bare HTTP/2 Subscribe stream (in-process.ts), closed after the test. */
function rawSubscribe(port: number, req: object): RawSub {
  const raw = rawSubscribeStream(port, req);
  cleanups.push(() => raw.close());
  return raw;
}

describe('Subscribe', () => {
  it('START_EARLIEST replays every record in order, then live ones: no gap, no duplicate at the seam', async () => {
    const d = await gateway();
    const dev = await device(d, 'dev-seam');
    // Big enough payloads that the replay cannot all sit in the stream's buffers at once.
    const body = 'x'.repeat(200);
    const publish = (from: number, to: number) =>
      Promise.all(range(from, to).map((i) => dev.publishAsync('seam/t', `${i}:${body}`, { qos: 1 })));
    await publish(1, 2000);
    expect(await lastSeq(d)).toBe(2000);

    // Two subscribers: a grpc-js client reading as fast as it can, and one that reads nothing
    // yet, so flow control holds the server in the middle of its replay.
    const c = client(d);
    const fast = subscribe(c, { start: 'START_EARLIEST' });
    const held = rawSubscribe(d.grpcPort, { start: 'START_EARLIEST' });
    await subscribers(d, 2);
    await eventually(() => held.buffered() > 0, 'the held stream got its first window');
    await publish(2001, 2200);
    // The held client has less than half the replay's bytes (>= 2 000 x 205 B): the server could
    // not have written the rest, so these 200 commits landed while its replay was running.
    expect(held.buffered()).toBeLessThan(200_000);
    expect(held.messages).toHaveLength(0);
    held.read();
    // Keep publishing while the held stream replays and then goes live.
    for (let from = 2201; from <= 4000; from += 200) await publish(from, from + 199);
    // A sentinel: whatever a stream holds before it is everything it delivered up to 4000.
    await publish(4001, 4001);
    const reached = (records: StreamedRecord[]) => (records.at(-1)?.seq ?? 0) >= 4001;
    await eventually(() => reached(held.messages) && reached(fast.records), 'sentinel streamed');

    for (const [name, records] of [
      ['held', held.messages],
      ['fast', fast.records],
    ] as const) {
      const seqs = records.map((r) => r.seq);
      expect(new Set(seqs).size, name).toBe(seqs.length);
      expect(seqs, name).toEqual(range(1, 4001));
      expect(
        records.map((r) => Number(r.payload.toString().split(':')[0])),
        name,
      ).toEqual(range(1, 4001));
    }
    expect(fast.error).toBeNull();
    const epoch = (await d.status()).journal.epoch;
    expect(held.messages[0]).toEqual(fast.records[0]);
    expect(fast.records[0]).toMatchObject({
      id: `${epoch}-1`,
      topic: 'seam/t',
      device: 'dev-seam',
      source: 'mqtt',
    });
  });

  it('START_LATEST, START_AT_SEQ, + and # filters; an invalid filter is INVALID_ARGUMENT', async () => {
    const d = await gateway();
    const dev = await device(d, 'dev-filters');
    const topics = ['site/1/temp', 'site/2/temp', 'site/1/hum', 'other/x', 'site/1/temp/raw'];
    for (const t of topics) await dev.publishAsync(t, t, { qos: 1 });
    const c = client(d);

    // START_LATEST: nothing committed before the subscription.
    const latest = subscribe(c, { start: 'START_LATEST' });
    await subscribers(d, 1);
    await dev.publishAsync('late/1', 'late/1', { qos: 1 });
    await dev.publishAsync('late/2', 'late/2', { qos: 1 });
    await eventually(() => latest.records.length >= 2, 'latest: two live records');
    expect(latest.seqs()).toEqual([6, 7]);
    expect(latest.records.map((r) => r.topic)).toEqual(['late/1', 'late/2']);

    // START_AT_SEQ: from the given seq on; the unspecified start behaves as latest.
    const atSeq = subscribe(c, { start: 'START_AT_SEQ', seq: 4 });
    await eventually(() => atSeq.records.length >= 4, 'at seq 4: 4..7');
    expect(atSeq.seqs()).toEqual([4, 5, 6, 7]);
    const unspecified = subscribe(c, {});
    await subscribers(d, 3);

    // Filters: only matching records, in journal order. A marker record matching each filter set
    // closes the window, so "nothing else was delivered" is checked without waiting on a clock.
    const cases: { filters: string[]; marker: string; want: string[] }[] = [
      { filters: ['site/+/temp'], marker: 'site/9/temp', want: ['site/1/temp', 'site/2/temp'] },
      {
        filters: ['site/#'],
        marker: 'site/9/end',
        want: ['site/1/temp', 'site/2/temp', 'site/1/hum', 'site/1/temp/raw', 'site/9/temp'],
      },
      {
        filters: ['other/#', 'site/2/+', 'late/+'],
        marker: 'other/end',
        want: ['site/2/temp', 'other/x', 'late/1', 'late/2'],
      },
    ];
    const subs = cases.map((k) => subscribe(c, { start: 'START_EARLIEST', filters: k.filters }));
    await subscribers(d, 3 + cases.length);
    for (const k of cases) {
      await dev.publishAsync(k.marker, k.marker, { qos: 1 });
    }
    for (const [i, k] of cases.entries()) {
      const s = subs[i];
      await eventually(() => s.records.some((r) => r.topic === k.marker), `marker ${k.marker}`);
      const before = s.records.slice(
        0,
        s.records.findIndex((r) => r.topic === k.marker),
      );
      expect(before.map((r) => r.topic)).toEqual(k.want);
      expect(before.map((r) => r.payload.toString())).toEqual(k.want);
      const seqs = s.seqs();
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    }
    await eventually(() => unspecified.records.length >= cases.length, 'unspecified start: live only');
    expect(unspecified.records.map((r) => r.topic)).toEqual(cases.map((k) => k.marker));

    // An invalid filter fails the call.
    for (const bad of ['a/#/b', 'a/b+', '']) {
      const s = subscribe(c, { start: 'START_EARLIEST', filters: ['ok/#', bad] });
      await eventually(() => s.error !== null, `error for ${JSON.stringify(bad)}`);
      expect(s.error!.code).toBe(status.INVALID_ARGUMENT);
      expect(s.records).toEqual([]);
    }
    expect(latest.error).toBeNull();
  });
});

describe('durable consumers', () => {
  it('resume after the last Ack, across a reconnect and a daemon restart; Ack errors', async () => {
    const d = await gateway();
    const dev = await device(d, 'dev-dc');
    await publishRange(dev, 'dc/t', 1, 10);
    const c = client(d);

    const s1 = subscribe(c, { consumer: 'app1', start: 'START_EARLIEST' });
    await eventually(() => s1.records.length >= 6, 'first session read 6');
    // The app processed 1..4, then goes away.
    expect(await unary(c, 'Ack', { consumer: 'app1', seq: 4 })).toEqual({ seq: 4 });
    // Acks never move the position backwards.
    expect(await unary(c, 'Ack', { consumer: 'app1', seq: 2 })).toEqual({ seq: 4 });
    s1.stream.cancel();
    await eventually(() => s1.error !== null, 'first session cancelled');
    expect(s1.error!.code).toBe(status.CANCELLED);
    await publishRange(dev, 'dc/t', 11, 15);

    // `start` is ignored for a known consumer: it resumes right after its Ack.
    const s2 = subscribe(c, { consumer: 'app1', start: 'START_LATEST' });
    await eventually(() => s2.records.length >= 11, 'second session: 5..15');
    expect(s2.seqs()).toEqual(range(5, 15));
    expect(s2.records.map((r) => r.payload.toString())).toEqual(range(5, 15).map((i) => `m${i}`));

    // Ack errors.
    const unknown = await failure(unary(c, 'Ack', { consumer: 'nobody', seq: 1 }));
    expect(unknown.code).toBe(status.NOT_FOUND);
    const beyond = await failure(unary(c, 'Ack', { consumer: 'app1', seq: 16 }));
    expect(beyond.code).toBe(status.INVALID_ARGUMENT);
    const badName = subscribe(c, { consumer: 'no spaces!', start: 'START_EARLIEST' });
    await eventually(() => badName.error !== null, 'bad consumer name refused');
    expect(badName.error!.code).toBe(status.INVALID_ARGUMENT);
    // The newest record is a valid Ack, and the position is persisted.
    expect(await unary(c, 'Ack', { consumer: 'app1', seq: 12 })).toEqual({ seq: 12 });
    expect((await d.status()).journal).toMatchObject({ cursors: { 'consumer/app1': 12 } });
    s2.stream.cancel();
    await dev.endAsync();

    // The cursor survives a restart (SIGTERM, same config).
    expect(await d.stop()).toBe(0);
    const d2 = await restart(d);
    expect(await lastSeq(d2)).toBe(15);
    const c2 = client(d2);
    const s3 = subscribe(c2, { consumer: 'app1', start: 'START_EARLIEST' });
    await eventually(() => s3.records.length >= 3, 'after restart: 13..15');
    const dev2 = await device(d2, 'dev-dc');
    await publishRange(dev2, 'dc/t', 16, 16);
    await eventually(() => s3.records.length >= 4, 'after restart: live 16');
    expect(s3.seqs()).toEqual([13, 14, 15, 16]);
    expect(await unary(c2, 'Ack', { consumer: 'app1', seq: 16 })).toEqual({ seq: 16 });
    // An unknown consumer is still unknown after a restart.
    expect((await failure(unary(c2, 'Ack', { consumer: 'app2', seq: 1 }))).code).toBe(status.NOT_FOUND);
  });
});

function vmKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`${field} not in /proc/${pid}/status`);
  return Number(m[1]);
}

describe('slow consumers', () => {
  it('a subscriber that never reads holds neither memory nor ingest nor other sinks back', async () => {
    const N = 100_000;
    const PUBLISHERS = 4;
    const WINDOW = 500;
    const rx = new GrpcIngestReceiver({ keep: false });
    await rx.start();
    cleanups.push(() => rx.stop());
    const d = await gateway({ sinks: [{ name: 'up', type: 'grpc', target: rx.target }] });
    const pid = d.proc.pid!;
    const rssAtStart = vmKb(pid, 'VmRSS');

    // Three subscribers that never read: 3 x 100 000 records would be ~100 MB of stream
    // buffers (plus per-message overhead) if the server did not stop at flow control.
    const stuck = [1, 2, 3].map(() => rawSubscribe(d.grpcPort, { start: 'START_LATEST' }));
    await subscribers(d, stuck.length);

    let maxRss = 0;
    const sampler = setInterval(() => {
      // A daemon that has exited (a failed test's cleanup) has no VmRSS left to sample.
      if (d.proc.exitCode === null && d.proc.signalCode === null)
        maxRss = Math.max(maxRss, vmKb(pid, 'VmRSS'));
    }, 50);
    cleanups.push(() => clearInterval(sampler));

    // QoS 1, pipelined WINDOW deep per device: every ack means committed.
    const payload = Buffer.alloc(256, 'p');
    const pubs = await Promise.all(range(1, PUBLISHERS).map((i) => device(d, `bulk-${i}`)));
    await Promise.all(
      pubs.map(async (dev) => {
        for (let sent = 0; sent < N / PUBLISHERS; sent += WINDOW) {
          await Promise.all(range(1, WINDOW).map(() => dev.publishAsync('bulk/t', payload, { qos: 1 })));
        }
      }),
    );
    // Ingest unaffected: every message committed.
    expect(await lastSeq(d)).toBe(N);
    // The sink alongside gets everything, in order.
    await eventually(() => rx.received - rx.duplicates >= N, `${N} records at the grpc sink`, 60_000, 100);
    clearInterval(sampler);
    maxRss = Math.max(maxRss, vmKb(pid, 'VmRSS'));
    const hwm = vmKb(pid, 'VmHWM');
    expect(rx.received - rx.duplicates).toBe(N);
    expect(rx.outOfOrder).toBe(0);
    const st = await d.status();
    expect(st.sinks[0]).toMatchObject({ name: 'up', state: 'up', backlog: 0, deadLettered: 0 });

    // The server stopped writing to the stuck streams at flow control: it did not buffer for them.
    for (const s of stuck) s.close();
    await eventually(
      () => d.logs.filter((l) => l.msg === 'subscriber gone').length >= stuck.length,
      'stuck subscriptions ended',
    );
    const sent = d.logs.filter((l) => l.msg === 'subscriber gone').map((l) => Number(l.sent));
    console.log(
      `slow consumer: daemon RSS at start ${Math.round(rssAtStart / 1024)} MiB, max sampled ${Math.round(maxRss / 1024)} MiB, VmHWM ${Math.round(hwm / 1024)} MiB; records written to each stuck stream: ${sent.join(', ')}`,
    );
    // A 64 KiB window holds a few hundred of these records; 5 000 is far below "everything".
    for (const n of sent) expect(n).toBeLessThan(5_000);
    // A coarse backstop to the count above: 100 000 QoS 1 messages, 2 000 in flight, grow the
    // daemon (run from src/) by 140-250 MiB here; three streams buffering every record would add
    // at least their 3 x 100 000 x 300 B of messages, with grpc-js's objects for each write.
    expect(hwm - rssAtStart).toBeLessThan(300 * 1024);
  });
});

describe('vanished consumers', () => {
  it('server keepalive ends the stream of an app whose link went silent without a FIN; a live one stays', async () => {
    const d = await gateway({
      grpc: { host: '127.0.0.1', port: 0, keepalive: { timeMs: 500, timeoutMs: 500 } },
    });
    const proxy = new FaultProxy(d.grpcPort);
    await proxy.start();
    cleanups.push(() => proxy.stop());
    const live = subscribe(client(d), { filters: ['k/#'], start: 'START_LATEST' });
    const viaProxy = gatewayClient(`127.0.0.1:${proxy.port}`);
    grpcClients.push(viaProxy);
    const doomed = subscribe(viaProxy, { filters: ['k/#'], start: 'START_LATEST' });
    await subscribers(d, 2);
    const dev = await device(d, 'k-dev');
    await publishRange(dev, 'k/t', 1, 10);
    await eventually(() => doomed.records.length === 10 && live.records.length === 10, 'both streams live');

    // The app's end goes silent: no FIN, no RST, nothing comes back (a frozen process, a dead
    // NAT). Only the server's unanswered PING can tell.
    proxy.freeze();
    const gone = await d.waitForLog((l) => l.msg === 'subscriber gone', 15_000);
    expect(Number(gone.sent)).toBe(10);
    // The live app, pinged on the same schedule, answers and keeps its stream: it gets what is
    // published after several keepalive rounds, in order.
    await sleep(2_000);
    await publishRange(dev, 'k/t', 11, 20);
    await eventually(() => live.records.length === 20, 'the live stream goes on');
    expect(live.seqs()).toEqual(range(1, 20));
    expect(live.error).toBeNull();
    expect(d.logs.filter((l) => l.msg === 'subscriber gone')).toHaveLength(1);
    expect(doomed.records).toHaveLength(10);
  });
});

describe('Publish (downlink)', () => {
  it('reaches a subscribed device, refuses wildcards, and is not journaled', async () => {
    const d = await gateway();
    const dev = await device(d, 'dev1');
    const got: { topic: string; payload: string; qos: number }[] = [];
    dev.on('message', (topic, payload, packet) =>
      got.push({ topic, payload: payload.toString(), qos: packet.qos }),
    );
    await dev.subscribeAsync('cmd/dev1', { qos: 1 });
    await dev.publishAsync('up/dev1', 'before', { qos: 1 });
    expect(await lastSeq(d)).toBe(1);

    const c = client(d);
    expect(await unary(c, 'Publish', { topic: 'cmd/dev1', payload: Buffer.from('reboot'), qos: 1 })).toEqual(
      {},
    );
    await eventually(() => got.length >= 1, 'the device got the command');
    expect(got).toEqual([{ topic: 'cmd/dev1', payload: 'reboot', qos: 1 }]);

    for (const topic of ['cmd/+', 'cmd/#', '#', '']) {
      const err = await failure(unary(c, 'Publish', { topic, payload: Buffer.from('x'), qos: 1 }));
      expect(err.code).toBe(status.INVALID_ARGUMENT);
    }
    const badQos = await failure(
      unary(c, 'Publish', { topic: 'cmd/dev1', payload: Buffer.from('x'), qos: 3 }),
    );
    expect(badQos.code).toBe(status.INVALID_ARGUMENT);

    // Not journaled: the next uplink takes seq 2, and a full replay holds only uplinks.
    expect(await lastSeq(d)).toBe(1);
    await dev.publishAsync('up/dev1', 'after', { qos: 1 });
    expect(await lastSeq(d)).toBe(2);
    const all = subscribe(c, { start: 'START_EARLIEST' });
    await eventually(() => all.records.length >= 2, 'replay of the uplinks');
    expect(all.records.map((r) => [r.seq, r.topic, r.payload.toString()])).toEqual([
      [1, 'up/dev1', 'before'],
      [2, 'up/dev1', 'after'],
    ]);
    expect(got).toHaveLength(1);
  });
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const silentLog: Logger = { debug() {}, info() {}, warn() {}, error() {} };

describe('health', () => {
  it('SERVING once ready, for the server and for edgeferry.v1.Gateway; unknown service NOT_FOUND', async () => {
    const d = await gateway();
    const h = health(`127.0.0.1:${d.grpcPort}`);
    expect(await check(h)).toBe('SERVING');
    expect(await check(h, 'edgeferry.v1.Gateway')).toBe('SERVING');
    expect((await failure(check(h, 'no.such.Service'))).code).toBe(status.NOT_FOUND);
  });

  it('NOT_SERVING (and the Gateway UNAVAILABLE) while the journal lock is held, SERVING once ready', async () => {
    const dir = tempDir();
    const journalPath = join(dir, 'journal');
    // Another process holds the journal (a rolling update on one hostPath): this one.
    const holder = await Journal.open(
      {
        path: journalPath,
        maxBytes: 1 << 30,
        onFull: 'drop-oldest',
        fsync: false,
        groupCommit: { maxRecords: 64, maxDelayMs: 1 },
        lockWaitMs: 0,
      },
      silentLog,
    );
    let holderOpen = true;
    const port = await freePort();
    const cfgPath = writeConfig(
      dir,
      baseConfig(dir, {
        journal: { path: journalPath, lockWaitMs: '20s' },
        grpc: { host: '127.0.0.1', port },
      }),
    );
    const starting = startDaemon(dir, cfgPath);
    // Whatever happens, the daemon is killed at the end.
    cleanups.push(async () => (await starting.catch(() => null))?.kill());
    starting.catch(() => {});
    // Cleanups run last-in first-out: the lock is released before the daemon is awaited.
    cleanups.push(() => (holderOpen ? holder.close() : undefined));

    await eventually(() => listening(port), 'gRPC port bound while the journal is locked', 15_000);
    const h = health(`127.0.0.1:${port}`);
    expect(await check(h)).toBe('NOT_SERVING');
    expect(await check(h, 'edgeferry.v1.Gateway')).toBe('NOT_SERVING');
    const c = gatewayClient(`127.0.0.1:${port}`);
    grpcClients.push(c);
    const sub = subscribe(c, { start: 'START_EARLIEST' });
    await eventually(() => sub.error !== null, 'Subscribe refused while starting');
    expect(sub.error!.code).toBe(status.UNAVAILABLE);
    expect((await failure(unary(c, 'Ack', { consumer: 'a', seq: 1 }))).code).toBe(status.UNAVAILABLE);
    expect(
      (await failure(unary(c, 'Publish', { topic: 'cmd/x', payload: Buffer.from('x'), qos: 0 }))).code,
    ).toBe(status.UNAVAILABLE);
    // Still waiting: the lock is still ours.
    expect(await check(h)).toBe('NOT_SERVING');

    await holder.close();
    holderOpen = false;
    const d = await starting;
    daemons.push(d);
    expect(d.logs.some((l) => l.msg === 'journal is locked by another process, waiting')).toBe(true);
    expect(await check(h)).toBe('SERVING');
    expect(await check(h, 'edgeferry.v1.Gateway')).toBe('SERVING');
  });

  it('does not answer SERVING once SIGTERM shutdown has begun', async () => {
    // An upstream that is down keeps the shutdown in its drain phase for drainTimeoutMs.
    const rx = new GrpcIngestReceiver();
    await rx.start();
    cleanups.push(() => rx.stop());
    rx.respond = () => status.UNAVAILABLE;
    const d = await gateway({
      shutdown: { drainTimeoutMs: '4s' },
      sinks: [{ name: 'up', type: 'grpc', target: rx.target, retry: { minMs: 20, maxMs: 100 } }],
    });
    const h = health(`127.0.0.1:${d.grpcPort}`);
    expect(await check(h)).toBe('SERVING');
    const dev = await device(d, 'dev-term');
    await dev.publishAsync('t/1', 'x', { qos: 1 });
    await eventually(async () => (await d.status()).sinks[0].state === 'backoff', 'sink in backoff');
    const sub = subscribe(client(d), { start: 'START_EARLIEST' });
    await eventually(() => sub.records.length >= 1, 'subscriber caught up');

    d.proc.kill('SIGTERM');
    await d.waitForLog((l) => l.msg === 'shutting down: intake stopped');
    // The daemon is still draining (admin says not ready); gRPC health must agree.
    const ready = await fetch(`http://127.0.0.1:${d.adminPort}/readyz`).then((r) => r.status);
    const answer = await check(h, '', 1_000).then(
      (s) => s,
      (e: ServiceError) => `error ${status[e.code]}`,
    );
    const exitCode = await Promise.race([d.exited, sleep(20_000).then(() => 'still running after 20 s')]);
    expect(ready).toBe(503);
    expect(answer).not.toBe('SERVING');
    expect(exitCode).toBe(0);
    // The open Subscribe stream was ended by the server (OK), not cut off.
    expect(sub.error).toBeNull();
    expect(sub.ended).toBe(true);
    expect(sub.seqs()).toEqual([1]);
  });
});

describe('mTLS', () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = generatePki(tempDir('edgeferry-pki-'));
  });

  it('serves clients with a certificate from the configured CA and refuses the others', async () => {
    const d = await gateway({
      grpc: {
        host: '127.0.0.1',
        port: 0,
        tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, caFile: pki.caFile },
      },
    });
    expect(d.logs.find((l) => l.msg === 'grpc listening')).toMatchObject({ tls: true, mtls: true });
    const dev = await device(d, 'dev-tls');
    await publishRange(dev, 'tls/t', 1, 3);

    const good = credentials.createSsl(pki.ca, pki.clientKey, pki.clientCert);
    for (const host of ['127.0.0.1', 'localhost']) {
      expect(await check(health(`${host}:${d.grpcPort}`, good))).toBe('SERVING');
      const sub = subscribe(client(d, good, host), { start: 'START_EARLIEST' });
      await eventually(() => sub.records.length >= 3, `TLS subscribe via ${host}`);
      expect(sub.seqs()).toEqual([1, 2, 3]);
    }

    const refused: [string, ChannelCredentials][] = [
      ['no client certificate', credentials.createSsl(pki.ca)],
      [
        'a client certificate from another CA',
        credentials.createSsl(pki.ca, pki.otherClientKey, pki.otherClientCert),
      ],
      ['plaintext', credentials.createInsecure()],
    ];
    for (const [what, creds] of refused) {
      const err = await failure(check(health(`127.0.0.1:${d.grpcPort}`, creds), '', 5_000));
      expect(err.code, what).toBe(status.UNAVAILABLE);
      const sub = subscribe(client(d, creds), { start: 'START_EARLIEST' });
      await eventually(() => sub.error !== null, `Subscribe with ${what} refused`);
      expect(sub.error!.code, what).toBe(status.UNAVAILABLE);
      expect(sub.records).toEqual([]);
    }
    // A client that does not trust the server's CA refuses it too.
    const untrusting = credentials.createSsl(pki.otherCa, pki.clientKey, pki.clientCert);
    expect((await failure(check(health(`127.0.0.1:${d.grpcPort}`, untrusting), '', 5_000))).code).toBe(
      status.UNAVAILABLE,
    );
  });
});
