// A local subscriber that stops reading must not hold back ingest. aedes 1.x waits for a QoS 1
// publish to reach every subscriber before it reads the publisher's next packet, and a write to
// a full socket waits for 'drain' (up to its 60 s drainTimeout): one frozen subscriber to `#`
// stopped every publisher's PUBACKs. Against the real daemon, with raw and mqtt.js clients.

import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
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
import { connectPacket, splitPackets, subscribePacket } from '../helpers/mqtt-wire.ts';

const daemons: DaemonHandle[] = [];
const sockets: Socket[] = [];
const clients: MqttClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(daemons.splice(0).map((d) => d.kill()));
});

async function daemon(mqttSection: Record<string, unknown> = {}): Promise<DaemonHandle> {
  const dir = tempDir();
  const config = baseConfig(dir, { mqtt: { host: '127.0.0.1', port: 0, ...mqttSection } });
  const d = await startDaemon(dir, writeConfig(dir, config));
  daemons.push(d);
  return d;
}

/** A raw client that connects (keepalive 0: no PINGREQ will ever be missed), subscribes, then never reads again. */
async function frozenSubscriber(d: DaemonHandle, filter: string, qos: 0 | 1): Promise<Socket> {
  const socket = connect(d.mqttPort, '127.0.0.1');
  sockets.push(socket);
  socket.on('error', () => {});
  await once(socket, 'connect');
  let got = Buffer.alloc(0);
  const onData = (c: Buffer) => {
    got = Buffer.concat([got, c]);
  };
  socket.on('data', onData);
  socket.write(connectPacket('frozen-sub', { keepalive: 0 }));
  socket.write(subscribePacket(1, filter, qos));
  // CONNACK (type 2) and SUBACK (type 9) seen: the subscription is in place.
  await eventually(() => splitPackets(got).packets.some((p) => p.type === 9), 'SUBACK');
  socket.off('data', onData);
  socket.pause();
  return socket;
}

async function device(d: DaemonHandle, clientId: string): Promise<MqttClient> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, { clientId, reconnectPeriod: 0 });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

/** QoS 1 publishes through a window of `window` in flight until `stop()` says so; counts PUBACKs. */
function publishLoop(
  c: MqttClient,
  payload: Buffer,
  window: number,
  stop: () => boolean,
): { acked: () => number } {
  let acked = 0;
  const lane = async () => {
    while (!stop() && c.connected) {
      try {
        await c.publishAsync('sensors/load', payload, { qos: 1 });
      } catch {
        return;
      }
      acked++;
    }
  };
  for (let i = 0; i < window; i++) void lane();
  return { acked: () => acked };
}

function sourceCounter(status: Awaited<ReturnType<DaemonHandle['status']>>, field: string): number {
  return status.sources.find((s) => s.name === 'mqtt')?.counters[field] ?? 0;
}

describe('a subscriber that stops reading', () => {
  it('is disconnected and counted, while publishers and a new device keep getting PUBACKs', async () => {
    const d = await daemon();
    await frozenSubscriber(d, '#', 1);
    const publishers = [await device(d, 'pub-a'), await device(d, 'pub-b')];
    // 1 KiB payloads fill the frozen socket's kernel buffers (several MB on loopback) within a
    // few thousand messages; 40 000 acks go far beyond what the buffers and the bound absorb.
    const payload = Buffer.alloc(1024, 0x61);
    const target = 40_000;
    let total = 0;
    const loops = publishers.map((c) => publishLoop(c, payload, 50, () => total >= target));
    const count = () => loops.reduce((n, l) => n + l.acked(), 0);
    // Bounded polling; 30 s stays below aedes' 60 s drainTimeout, which would otherwise free the
    // publishers by dropping the frozen subscriber in the end.
    await eventually(
      () => {
        total = count();
        return total >= target;
      },
      `${target} PUBACKs while a subscriber to # never reads`,
      30_000,
    );
    const status = await d.status();
    expect(sourceCounter(status, 'slowSubscriberDisconnects')).toBe(1);
    expect(await d.metrics()).toMatch(/edgeferry_mqtt_slow_subscriber_disconnects_total 1\b/);
    const line = await d.waitForLog((l) => l.msg === 'mqtt subscriber not reading: disconnected');
    expect(line).toMatchObject({ client: 'frozen-sub' });

    // A device that arrives now is served at once.
    const late = await device(d, 'late-device');
    await late.publishAsync('sensors/late', 'hello', { qos: 1 });
    // Every acked message was journaled.
    await eventually(
      async () => (await d.status()).journal.counters.appended >= count() + 1,
      'every acked publish journaled',
    );
  });
});
