// Links that fail in the middle, between the daemon and its upstream, through a TCP fault
// proxy: connections cut mid-request, and an upstream that accepts and never answers. Every
// acknowledged record still arrives, in order (duplicates allowed and counted).

import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { FaultProxy } from '../helpers/fault-proxy.ts';
import { HttpReceiver, type ReceivedRecord } from '../helpers/http-receiver.ts';

let daemon: DaemonHandle | null = null;
let receiver: HttpReceiver | null = null;
let proxy: FaultProxy | null = null;

afterEach(async () => {
  await daemon?.kill();
  await proxy?.stop();
  await receiver?.stop();
  daemon = null;
  proxy = null;
  receiver = null;
});

async function setUp(
  sink: Record<string, unknown> = {},
): Promise<{ d: DaemonHandle; rx: HttpReceiver; px: FaultProxy }> {
  receiver = new HttpReceiver();
  await receiver.start();
  proxy = new FaultProxy(receiver.port);
  await proxy.start();
  const dir = tempDir();
  const cfg = baseConfig(dir, {
    sinks: [
      {
        name: 'cloud',
        type: 'http',
        url: `http://127.0.0.1:${proxy.port}/ingest`,
        payloadEncoding: 'utf8',
        batch: { maxRecords: 200, lingerMs: 5 },
        retry: { minMs: 50, maxMs: 300 },
        ...sink,
      },
    ],
  });
  daemon = await startDaemon(dir, writeConfig(dir, cfg));
  return { d: daemon, rx: receiver, px: proxy };
}

async function publish(d: DaemonHandle, from: number, to: number): Promise<void> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, { clientId: `dev-${from}` });
  await Promise.all(
    Array.from({ length: to - from + 1 }, (_, k) => c.publishAsync('net/t', `m${from + k}`, { qos: 1 })),
  );
  await c.endAsync();
}

/** First arrival of each payload, in arrival order: must be m1..mN exactly. */
function firstArrivals(records: ReceivedRecord[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const r of records) {
    if (seen.has(r.payload)) continue;
    seen.add(r.payload);
    out.push(r.payload);
  }
  return out;
}

const expected = (n: number) => Array.from({ length: n }, (_, i) => `m${i + 1}`);

describe('network faults between the daemon and its upstream', () => {
  it('connections cut mid-request: retried, and every record arrives in order', async () => {
    const { d, rx, px } = await setUp();
    // Every request is cut 3 000 bytes in (inside the first batch's body) until we stop it.
    px.mode = { kind: 'cut-after', bytes: 3000 };
    const N = 2000;
    await publish(d, 1, N);
    await eventually(() => px.faults >= 5, 'several cut requests');
    const during = await d.status();
    expect(during.sinks[0].state).toBe('backoff');
    px.mode = { kind: 'pass' };

    await eventually(() => new Set(rx.records.map((r) => r.payload)).size >= N, `${N} distinct records`);
    expect(firstArrivals(rx.records)).toEqual(expected(N));
    const st = await d.status();
    expect(st.sinks[0].retries).toBeGreaterThanOrEqual(5);
    expect(st.sinks[0].state).toBe('up');
  });

  it('an upstream that accepts and never answers: the deadline ends each call, then delivery resumes', async () => {
    const { d, rx, px } = await setUp({ timeoutMs: '300ms' });
    px.mode = { kind: 'blackhole' };
    const N = 500;
    await publish(d, 1, N);
    await eventually(() => px.faults >= 3, 'three swallowed calls');
    const st = await d.status();
    expect(st.sinks[0].state).toBe('backoff');
    expect(rx.records).toHaveLength(0);
    const stuck = (await d.status()) as unknown as { sinks: { lastError: string }[] };
    expect(stuck.sinks[0].lastError).toMatch(/deadline|timeout|Timeout/i);

    px.mode = { kind: 'pass' };
    await eventually(() => new Set(rx.records.map((r) => r.payload)).size >= N, `${N} distinct records`);
    expect(firstArrivals(rx.records)).toEqual(expected(N));
  });

  it('a device link cut mid-stream: the publisher reconnects, resends, and every acknowledged message arrives', async () => {
    const { d, rx, px: upstreamProxy } = await setUp();
    upstreamProxy.mode = { kind: 'pass' };
    // A second proxy, between the device and the broker, cuts the device's first two links.
    const deviceLink = new FaultProxy(d.mqttPort);
    await deviceLink.start();
    deviceLink.mode = { kind: 'cut-after', bytes: 40_000 };
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${deviceLink.port}`, {
      clientId: 'flaky-dev',
      clean: false,
      reconnectPeriod: 100,
    });
    c.on('offline', () => {
      if (deviceLink.faults >= 2) deviceLink.mode = { kind: 'pass' };
    });
    try {
      const N = 3000;
      const acks = Array.from({ length: N }, (_, i) => c.publishAsync('net/t', `m${i + 1}`, { qos: 1 }));
      await Promise.all(acks);
      expect(deviceLink.faults).toBeGreaterThanOrEqual(2);
      await eventually(() => new Set(rx.records.map((r) => r.payload)).size >= N, `${N} distinct records`);
      // Resent messages may arrive twice (at-least-once); none is missing.
      expect(new Set(rx.records.map((r) => r.payload))).toEqual(new Set(expected(N)));
    } finally {
      await c.endAsync();
      await deviceLink.stop();
    }
  });
});
