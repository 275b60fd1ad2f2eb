// The CoAP observer and Gateway.Command end to end: the real daemon, real CoAP devices on UDP
// (node-coap servers on 127.0.0.1), records read at a real HTTP upstream, commands over gRPC.

import { status as grpcStatus } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { sendCommand as command, gatewayClient } from '../grpc/grpc-client.ts';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';
import { CoapDevice, deadPort } from './coap-device.ts';

interface ResourceStatus {
  device: string;
  resource: string;
  state: string;
  notifications: number;
  errors: number;
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function receiver(): Promise<HttpReceiver> {
  const r = new HttpReceiver();
  await r.start();
  cleanups.push(() => r.stop());
  return r;
}

async function device(): Promise<CoapDevice> {
  const d = new CoapDevice();
  await d.start();
  cleanups.push(() => d.stop());
  return d;
}

async function daemon(devices: unknown[], sinkUrl: string | null): Promise<DaemonHandle> {
  const dir = tempDir('edgeferry-coap-observer-');
  const cfg = baseConfig(dir, {
    coap: { host: '127.0.0.1', port: 0, devices },
    sinks: sinkUrl
      ? [{ name: 'cloud', type: 'http', url: sinkUrl, payloadEncoding: 'utf8', batch: { lingerMs: 5 } }]
      : [],
  });
  const d = await startDaemon(dir, writeConfig(dir, cfg));
  cleanups.push(() => d.stop());
  return d;
}

async function resources(d: DaemonHandle): Promise<ResourceStatus[]> {
  const s = await d.status();
  const src = s.sources.find((x) => x.name === 'coap-observer') as unknown as
    | { counters: { resources: ResourceStatus[] } }
    | undefined;
  return src?.counters.resources ?? [];
}

const fast = { timeoutMs: '500ms', retry: { minMs: '100ms', maxMs: '500ms' } };

/** Notifies every 50 ms until stopped (the device's own sensor). */
function ticker(dev: CoapDevice): () => void {
  const t = setInterval(() => dev.notify(), 50);
  const stop = () => clearInterval(t);
  cleanups.push(async () => stop());
  return stop;
}

describe('CoAP observer', () => {
  it('observes a resource: each notification is a record with the device, topic and content type', async () => {
    const up = await receiver();
    const dev = await device();
    const d = await daemon(
      [{ name: 'dev-a', url: dev.url, ...fast, resources: [{ path: '/temp', topic: 'sensors/a/temp' }] }],
      up.url,
    );
    await eventually(() => dev.observerCount === 1, 'the observer registered');
    ticker(dev);
    await eventually(() => up.records.length >= 5, 'five notifications delivered');
    const r = up.records[0];
    expect(r).toMatchObject({
      source: 'coap',
      device: 'dev-a',
      topic: 'sensors/a/temp',
      contentType: 'application/json',
    });
    expect(JSON.parse(r.payload)).toHaveProperty('t');
    // Notifications arrive in order: the values increase.
    const values = up.records.map((x) => (JSON.parse(x.payload) as { t: number }).t);
    expect(values).toEqual([...values].sort((a, b) => a - b));
    const [res] = await resources(d);
    expect(res).toMatchObject({ device: 'dev-a', resource: '/temp', state: 'observing' });
    expect(res.notifications).toBeGreaterThanOrEqual(5);
    const metrics = await d.metrics();
    expect(metrics).toMatch(/edgeferry_coap_observed_resources\{state="observing"\} 1/);
    expect(metrics).toMatch(/edgeferry_coap_notifications_total\{device="dev-a"\} [1-9]/);
    expect(metrics).toMatch(
      /edgeferry_coap_last_notification_age_seconds\{device="dev-a",resource="\/temp"\}/,
    );
    // Shutdown cancels the observation (RFC 7641 §3.6) and the daemon exits cleanly.
    expect(await d.stop()).toBe(0);
    await eventually(() => dev.cancellations === 1, 'the device got the cancellation');
  });

  it('polls a resource with observe: false', async () => {
    const up = await receiver();
    const dev = await device();
    const d = await daemon(
      [
        {
          name: 'dev-p',
          url: dev.url,
          ...fast,
          resources: [{ path: '/poll', topic: 'sensors/p', observe: false, pollIntervalMs: '100ms' }],
        },
      ],
      up.url,
    );
    await eventually(() => up.records.length >= 3, 'three polls delivered');
    expect(up.records.slice(0, 3).map((r) => r.payload)).toEqual(['poll-1', 'poll-2', 'poll-3']);
    expect(up.records[0]).toMatchObject({
      device: 'dev-p',
      topic: 'sensors/p',
      contentType: 'text/plain;charset=utf-8',
    });
    expect(dev.registrations).toBe(0);
    expect((await resources(d))[0].state).toBe('polling');
  });

  it('re-registers after the device restarts on the same port, and records flow again', async () => {
    const up = await receiver();
    const dev = await device();
    const d = await daemon(
      [{ name: 'dev-r', url: dev.url, ...fast, resources: [{ path: '/temp', topic: 't/r' }] }],
      up.url,
    );
    const stopTicking = ticker(dev);
    await eventually(() => up.records.length >= 3, 'records before the restart');
    stopTicking();
    await dev.stop();
    await eventually(
      async () => (await resources(d))[0].state === 'retrying',
      'the observer noticed the device is gone',
    );
    const before = dev.registrations;
    await dev.start(dev.port);
    await eventually(() => dev.observerCount === 1, 'the observer registered again');
    expect(dev.registrations).toBeGreaterThan(before);
    const n = up.records.length;
    ticker(dev);
    await eventually(() => up.records.length >= n + 3, 'records after the restart');
    const [res] = await resources(d);
    expect(res.state).toBe('observing');
    expect(res.errors).toBeGreaterThan(0);
  });

  it('a device that does not answer does not hold up another device', async () => {
    const up = await receiver();
    const dev = await device();
    const dead = await deadPort();
    const d = await daemon(
      [
        {
          name: 'dead',
          url: `coap://127.0.0.1:${dead}`,
          ...fast,
          resources: [{ path: '/temp', topic: 't/dead' }],
        },
        { name: 'alive', url: dev.url, ...fast, resources: [{ path: '/temp', topic: 't/alive' }] },
      ],
      up.url,
    );
    ticker(dev);
    await eventually(() => up.records.length >= 5, 'records of the live device');
    expect(new Set(up.records.map((r) => r.device))).toEqual(new Set(['alive']));
    await eventually(
      async () => (await resources(d)).find((r) => r.device === 'dead')?.state === 'retrying',
      'dead device retrying',
    );
    const rs = await resources(d);
    expect(rs.find((r) => r.device === 'alive')?.state).toBe('observing');
    // The dead device is still being retried while the live one delivers.
    const n = up.records.length;
    await eventually(
      async () => (await resources(d)).find((r) => r.device === 'dead')!.errors >= 3,
      'dead device retried',
    );
    await eventually(() => up.records.length > n + 3, 'the live device keeps delivering');
  });
});

describe('Gateway.Command to CoAP devices', () => {
  it('sends PUT and POST with the payload and content format, and returns the device answer', async () => {
    const dev = await device();
    const d = await daemon([{ name: 'lamp', url: dev.url, ...fast }], null);
    const client = gatewayClient(`127.0.0.1:${d.grpcPort}`);
    cleanups.push(async () => client.close());
    const put = await command(client, {
      device: 'lamp',
      target: '/led',
      payload: Buffer.from('{"on":true}'),
      contentType: 'application/json',
    });
    expect(put).toMatchObject({ code: '2.04', contentType: 'text/plain;charset=utf-8' });
    expect(put.payload.toString()).toBe('done:{"on":true}');
    const post = await command(client, {
      device: 'lamp',
      target: '/led',
      payload: Buffer.from('blink'),
      contentType: 'text/plain',
      method: 'POST',
    });
    expect(post.code).toBe('2.01');
    expect(dev.commands).toEqual([
      { method: 'PUT', url: '/led', payload: '{"on":true}', contentFormat: 'application/json' },
      { method: 'POST', url: '/led', payload: 'blink', contentFormat: 'text/plain' },
    ]);
    // A device's error answer is a reply, not a gRPC error.
    const missing = await command(client, { device: 'lamp', target: '/nothing', payload: Buffer.from('x') });
    expect(missing.code).toBe('4.04');
  });

  it('NOT_FOUND for an unknown device, INVALID_ARGUMENT for a bad method, DEADLINE_EXCEEDED when the device does not answer', async () => {
    const dev = await device();
    const d = await daemon([{ name: 'lamp', url: dev.url, ...fast }], null);
    const client = gatewayClient(`127.0.0.1:${d.grpcPort}`);
    cleanups.push(async () => client.close());
    await expect(command(client, { device: 'nope', target: '/led' })).rejects.toMatchObject({
      code: grpcStatus.NOT_FOUND,
      details: expect.stringContaining('nope'),
    });
    await expect(command(client, { device: 'lamp', target: '/led', method: 'DELETE' })).rejects.toMatchObject(
      {
        code: grpcStatus.INVALID_ARGUMENT,
        details: expect.stringContaining('method'),
      },
    );
    await expect(command(client, { device: 'lamp', target: '/mute', timeoutMs: 300 })).rejects.toMatchObject({
      code: grpcStatus.DEADLINE_EXCEEDED,
      details: expect.stringContaining('did not answer'),
    });
    const dead = await deadPort();
    const d2 = await daemon([{ name: 'gone', url: `coap://127.0.0.1:${dead}`, ...fast }], null);
    const client2 = gatewayClient(`127.0.0.1:${d2.grpcPort}`);
    cleanups.push(async () => client2.close());
    await expect(
      command(client2, { device: 'gone', target: '/led', payload: Buffer.from('1') }),
    ).rejects.toMatchObject({
      code: grpcStatus.DEADLINE_EXCEEDED,
    });
  });
});
