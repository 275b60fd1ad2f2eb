// Durable consumers on the real daemon: listed and deleted over gRPC and the admin HTTP API, and
// an abandoned one expiring so that a journal full under `onFull: reject` takes devices' messages
// again. Real daemon, real grpc-js client from the published .proto, real mqtt.js devices, a real
// HTTP upstream, all on 127.0.0.1.

import { type ServiceError, status } from '@grpc/grpc-js';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';
import { type GatewayClient, gatewayClient } from './grpc-client.ts';
import { type Sub, subscribe, unary } from './in-process.ts';

const daemons: DaemonHandle[] = [];
const clients: GatewayClient[] = [];
const streams: Sub[] = [];
const devices: MqttClient[] = [];
const receivers: HttpReceiver[] = [];

afterEach(async () => {
  for (const s of streams.splice(0)) s.stream.cancel();
  for (const c of clients.splice(0)) c.close();
  for (const d of devices.splice(0)) d.end(true);
  await Promise.all(daemons.splice(0).map((d) => d.kill()));
  for (const r of receivers.splice(0)) await r.stop();
});

async function gateway(overrides: Record<string, unknown>): Promise<DaemonHandle> {
  const dir = tempDir();
  const d = await startDaemon(dir, writeConfig(dir, baseConfig(dir, overrides)));
  daemons.push(d);
  return d;
}

function client(d: DaemonHandle): GatewayClient {
  const c = gatewayClient(`127.0.0.1:${d.grpcPort}`);
  clients.push(c);
  return c;
}

function open(c: GatewayClient, req: object): Sub {
  const s = subscribe(c, req);
  streams.push(s);
  return s;
}

async function device(d: DaemonHandle, clientId: string): Promise<MqttClient> {
  const dev = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, { clientId, reconnectPeriod: 0 });
  devices.push(dev);
  return dev;
}

async function http(d: DaemonHandle, method: string, path: string) {
  const res = await fetch(`http://127.0.0.1:${d.adminPort}${path}`, { method });
  const text = await res.text();
  return { status: res.status, allow: res.headers.get('allow'), body: text ? JSON.parse(text) : null };
}

function metricValue(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

async function failure(p: Promise<unknown>): Promise<ServiceError> {
  const r = await p.then(
    () => null,
    (e: ServiceError) => e,
  );
  if (!r) throw new Error('expected the call to fail');
  return r;
}

describe('listing and deleting durable consumers', () => {
  it('gRPC ListConsumers/DeleteConsumer and HTTP /v1/consumers show position, backlog, streams, activity, expiry; deleting ends the open stream', async () => {
    const d = await gateway({});
    const dev = await device(d, 'dev-list');
    for (let i = 1; i <= 10; i++) await dev.publishAsync('l/t', `m${i}`, { qos: 1 });
    const c = client(d);
    const a = open(c, { consumer: 'app-a', start: 'START_EARLIEST' });
    const b = open(c, { consumer: 'app-b', start: 'START_EARLIEST' });
    await eventually(() => a.records().length === 10 && b.records().length === 10, 'both read 10');
    expect(await unary(c, 'Ack', { consumer: 'app-a', seq: 3 })).toEqual({ seq: 3 });
    expect(await unary(c, 'Ack', { consumer: 'app-b', seq: 7 })).toEqual({ seq: 7 });
    const beforeCancel = Date.now();
    b.stream.cancel();
    await eventually(() => d.logs.filter((l) => l.msg === 'subscriber gone').length === 1, 'b closed');

    const listed = await unary<{ consumers: Record<string, unknown>[] }>(c, 'ListConsumers', {});
    expect(listed.consumers.map((x) => x.name)).toEqual(['app-a', 'app-b']);
    const [la, lb] = listed.consumers;
    expect(la).toMatchObject({ position: 3, backlog: 7, openStreams: 1, expiresAtMs: 0 });
    expect(lb).toMatchObject({ position: 7, backlog: 3, openStreams: 0 });
    // The default expireAfter is one day after the last activity.
    expect(lb.expiresAtMs).toBe((lb.lastActivityMs as number) + 86_400_000);
    // Its last activity is the stream's end.
    expect(lb.lastActivityMs as number).toBeGreaterThanOrEqual(beforeCancel);
    expect(lb.lastActivityMs as number).toBeLessThanOrEqual(Date.now());

    const h = await http(d, 'GET', '/v1/consumers');
    expect(h.status).toBe(200);
    expect(h.body.consumers).toEqual([
      {
        name: 'app-a',
        position: 3,
        backlog: 7,
        openStreams: 1,
        lastActivity: new Date(la.lastActivityMs as number).toISOString(),
        expiresAt: null,
      },
      {
        name: 'app-b',
        position: 7,
        backlog: 3,
        openStreams: 0,
        lastActivity: new Date(lb.lastActivityMs as number).toISOString(),
        expiresAt: new Date(lb.expiresAtMs as number).toISOString(),
      },
    ]);
    expect((await http(d, 'GET', '/v1/consumers/app-b')).body).toEqual(h.body.consumers[1]);
    expect(metricValue(await d.metrics(), 'edgeferry_grpc_consumers')).toBe(2);

    // Refusals: unknown name, bad name, wrong method.
    expect(await http(d, 'GET', '/v1/consumers/nobody')).toMatchObject({ status: 404 });
    expect(await http(d, 'DELETE', '/v1/consumers/nobody')).toMatchObject({ status: 404 });
    const bad = await http(d, 'DELETE', '/v1/consumers/no%20spaces');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/consumer name/);
    expect(await http(d, 'POST', '/v1/consumers')).toMatchObject({ status: 405, allow: 'GET, HEAD' });
    expect(await http(d, 'PUT', '/v1/consumers/app-a')).toMatchObject({
      status: 405,
      allow: 'GET, HEAD, DELETE',
    });
    expect((await failure(unary(c, 'DeleteConsumer', { name: 'nobody' }))).code).toBe(status.NOT_FOUND);
    expect((await failure(unary(c, 'DeleteConsumer', { name: 'a b' }))).code).toBe(status.INVALID_ARGUMENT);

    // Deleting a consumer with an open stream over HTTP ends that stream (ABORTED).
    expect(await http(d, 'DELETE', '/v1/consumers/app-a')).toEqual({
      status: 200,
      allow: null,
      body: { deleted: 'app-a', endedStreams: 1 },
    });
    await eventually(() => a.error !== null, 'the stream of app-a ended');
    expect(a.error!.code).toBe(status.ABORTED);
    expect(a.error!.details).toMatch(/app-a.*deleted/);
    expect((await failure(unary(c, 'Ack', { consumer: 'app-a', seq: 4 }))).code).toBe(status.NOT_FOUND);
    // Over gRPC, one without a stream.
    expect(await unary(c, 'DeleteConsumer', { name: 'app-b' })).toEqual({ endedStreams: 0 });
    expect((await failure(unary(c, 'DeleteConsumer', { name: 'app-b' }))).code).toBe(status.NOT_FOUND);
    const st = (await d.status()) as unknown as { journal: { cursors: Record<string, number> } };
    expect(st.journal.cursors).toEqual({});
    expect(await unary(c, 'ListConsumers', {})).toEqual({ consumers: [] });
    const metrics = await d.metrics();
    expect(metricValue(metrics, 'edgeferry_grpc_consumers_removed_total{reason="deleted"}')).toBe(2);
    expect(metricValue(metrics, 'edgeferry_grpc_consumers')).toBe(0);

    // The name can be used again: a new consumer, starting where its Subscribe says.
    const again = open(c, { consumer: 'app-a', start: 'START_AT_SEQ', seq: 9 });
    await eventually(() => again.records().length === 2, 'the new app-a read 9..10');
    expect(again.records().map((r) => r.seq)).toEqual([9, 10]);
  });
});

describe('consumer expiry on the daemon', () => {
  it('an abandoned consumer pinning a journal full under onFull: reject expires, and devices are acknowledged again', async () => {
    const rx = new HttpReceiver();
    await rx.start();
    receivers.push(rx);
    const d = await gateway({
      journal: { path: 'journal', maxBytes: '32KiB', onFull: 'reject' },
      grpc: { host: '127.0.0.1', port: 0, consumers: { expireAfter: '1s' } },
      sinks: [{ name: 'up', type: 'http', url: rx.url, batch: { lingerMs: 0 } }],
    });
    const c = client(d);
    // The app subscribes, reads and never acks. While its stream is open it does not expire.
    const abandoned = open(c, { consumer: 'abandoned', start: 'START_EARLIEST' });
    await eventually(() => d.logs.some((l) => l.msg === 'subscriber connected'), 'subscribed');

    // Publish until the journal refuses: the sink delivers everything, the consumer pins it all.
    const payload = 'x'.repeat(200);
    let acked = 0;
    const dev = await device(d, 'dev-fill');
    const closed = new Promise<void>((resolve) => dev.once('close', () => resolve()));
    for (let i = 0; i < 2000; i++) {
      const outcome = await Promise.race([
        dev.publishAsync('f/t', payload, { qos: 1 }).then(
          () => 'acked',
          () => 'failed',
        ),
        closed.then(() => 'closed'),
      ]);
      if (outcome !== 'acked') break;
      acked++;
    }
    expect(acked).toBeGreaterThan(10);
    expect(acked).toBeLessThan(2000);
    await eventually(() => rx.records.length >= acked, 'the sink delivered every acked record');
    const full = await d.status();
    expect(full.journal.counters.rejected).toBeGreaterThan(0);
    expect(full.journal.firstSeq).toBe(1);

    abandoned.stream.cancel();
    await d.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('consumer expired'), 20_000);
    expect(
      d.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('consumer expired')),
    ).toMatchObject({
      consumer: 'abandoned',
      position: 0,
      expireAfterMs: 1000,
    });
    const after = (await d.status()) as unknown as { journal: { cursors: Record<string, number> } };
    expect(Object.keys(after.journal.cursors)).toEqual(['sink/up']);
    expect(metricValue(await d.metrics(), 'edgeferry_grpc_consumers_removed_total{reason="expired"}')).toBe(
      1,
    );

    // Released: another device's messages are acknowledged and delivered.
    await eventually(async () => (await d.status()).journal.firstSeq > acked, 'the journal trimmed');
    const dev2 = await device(d, 'dev-after');
    for (let i = 0; i < 100; i++) await dev2.publishAsync('f/after', `after-${i}`, { qos: 1 });
    await eventually(() => rx.records.filter((r) => r.topic === 'f/after').length === 100, '100 delivered');
  });
});
