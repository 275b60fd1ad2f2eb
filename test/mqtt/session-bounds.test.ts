// What the broker keeps for devices that are away stays bounded: the queue of an offline
// `clean: false` session (mosquitto's max_queued_messages applies to it too) and the retained
// messages, whether they come from devices or from the gRPC downlink. Drop oldest, counted.
// Counts are read through the persistence's own interface (what aedes itself reads on reconnect
// and on SUBSCRIBE), never from memory use or timing.

import type { Readable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/daemon.ts';
import { publishPacket } from '../helpers/mqtt-wire.ts';
import { type BrokerHarness, type RawClient, rawClient, startBroker } from './broker-harness.ts';

let broker: BrokerHarness | null = null;
const raws: RawClient[] = [];
const clients: MqttClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  for (const c of raws.splice(0)) c.socket.destroy();
  await broker?.stop();
  broker = null;
});

interface QueuedPacket {
  topic: string;
  payload: Buffer;
}

async function drain(stream: Readable): Promise<QueuedPacket[]> {
  const out: QueuedPacket[] = [];
  for await (const p of stream) out.push(p as QueuedPacket);
  return out;
}

/** What the broker would send `clientId` on reconnect. */
function queued(b: BrokerHarness, clientId: string): Promise<QueuedPacket[]> {
  const persistence = (b.source.aedes as unknown as { persistence: unknown }).persistence as {
    outgoingStream(c: { id: string }): Readable;
  };
  return drain(persistence.outgoingStream({ id: clientId }));
}

/** Every retained message, as a SUBSCRIBE to `#` would get them. */
function retained(b: BrokerHarness): Promise<QueuedPacket[]> {
  const persistence = (b.source.aedes as unknown as { persistence: unknown }).persistence as {
    createRetainedStreamCombi(patterns: string[]): Readable;
  };
  return drain(persistence.createRetainedStreamCombi(['#']));
}

/** Pipelines QoS 1 publishes `from`..`to`-1 (retained, on `topics` rotating topics) and waits for every PUBACK. */
async function publishRange(c: RawClient, from: number, to: number, topics: number): Promise<void> {
  const acksBefore = c.packets().filter((p) => p.type === 4).length;
  const batch: Buffer[] = [];
  for (let i = from; i < to; i++) {
    const payload = Buffer.from(String(i).padStart(8, '0'));
    batch.push(publishPacket(`fleet/dev${i % topics}/t`, payload, 1, (i % 60_000) + 1, { retain: true }));
    if (batch.length === 1000 || i === to - 1) {
      if (!c.socket.write(Buffer.concat(batch.splice(0))))
        await new Promise((r) => c.socket.once('drain', r));
    }
  }
  await eventually(
    () => c.packets().filter((p) => p.type === 4).length - acksBefore === to - from,
    `PUBACKs for ${from}..${to - 1}`,
    60_000,
  );
}

describe('offline sessions and retained messages are bounded', () => {
  it('100 000 publishes: the offline queue keeps the newest maxQueuedMessages, retained the newest maxRetainedMessages', async () => {
    broker = await startBroker({
      maxQueuedMessages: 1000,
      maxRetainedMessages: 5000,
    });
    const url = `mqtt://127.0.0.1:${broker.port}`;
    const away = await mqtt.connectAsync(url, { clientId: 'away', clean: false, reconnectPeriod: 0 });
    await away.subscribeAsync('fleet/#', { qos: 1 });
    await away.endAsync();

    const pub = await rawClient(broker.port, 'publisher');
    raws.push(pub);
    const total = 100_000;
    // Packet ids wrap at 60 000: every PUBACK is in before an id is used again.
    await publishRange(pub, 0, 50_000, 20_000);
    await publishRange(pub, 50_000, total, 20_000);

    const q = await queued(broker, 'away');
    expect(q.length).toBe(1000);
    // Drop oldest: the newest 1000, in order.
    expect(q.map((p) => Number(p.payload.toString()))).toEqual(
      Array.from({ length: 1000 }, (_, i) => total - 1000 + i),
    );
    const counters = broker.source.counters as unknown as Record<string, number>;
    expect(counters.sessionDropped).toBe(total - 1000);

    // 20 000 retained topics through a bound of 5000: the 5000 stored last remain.
    const r = await retained(broker);
    expect(r.length).toBe(5000);
    const kept = new Set(r.map((p) => Number(p.payload.toString())));
    for (let i = total - 5000; i < total; i++) expect(kept.has(i)).toBe(true);
    // Each store past the bound pushed out the oldest: every one after the first 5000.
    expect(counters.retainedDropped).toBe(total - 5000);

    // The downlink (gRPC Gateway.Publish) stores retained messages in the same bounded place.
    for (let i = 0; i < 6000; i++) await broker.source.publish(`cmd/dev${i}`, Buffer.from(`c${i}`), 0, true);
    const after = await retained(broker);
    expect(after.length).toBe(5000);
    expect(after.filter((p) => p.topic.startsWith('cmd/')).length).toBe(5000);
    expect(counters.retainedDropped).toBe(total - 5000 + 6000);

    // The session comes back and gets its bounded queue, newest 1000, in order.
    const back = await mqtt.connectAsync(url, { clientId: 'away', clean: false, reconnectPeriod: 0 });
    clients.push(back);
    const got: number[] = [];
    back.on('message', (_t, payload) => got.push(Number(payload.toString())));
    await eventually(() => got.length >= 1000, 'the queued messages delivered on reconnect');
    expect(got.slice(0, 1000)).toEqual(Array.from({ length: 1000 }, (_, i) => total - 1000 + i));
    await eventually(
      async () => (await queued(broker!, 'away')).length === 0,
      'the queue acknowledged and empty',
    );
  });

  it('a clean: false QoS 2 subscriber that completed every exchange gets none of them again on reconnect', async () => {
    broker = await startBroker({});
    const url = `mqtt://127.0.0.1:${broker.port}`;
    const sub = await mqtt.connectAsync(url, { clientId: 'q2-sub', clean: false, reconnectPeriod: 0 });
    clients.push(sub);
    await sub.subscribeAsync('q2/#', { qos: 2 });
    const got: string[] = [];
    sub.on('message', (_t, payload) => got.push(payload.toString()));
    const pub = await rawClient(broker.port, 'q2-pub');
    raws.push(pub);
    const n = 50;
    pub.socket.write(
      Buffer.concat(
        Array.from({ length: n }, (_, i) => publishPacket('q2/x', Buffer.from(`m${i}`), 2, i + 1)),
      ),
    );
    await eventually(() => got.length === n, 'every message delivered once');
    // Every PUBCOMP in: the session holds nothing to resend.
    await eventually(
      async () => (await queued(broker!, 'q2-sub')).length === 0,
      'the session queue empty',
      10_000,
    );
    await sub.endAsync();

    const back = await mqtt.connectAsync(url, { clientId: 'q2-sub', clean: false, reconnectPeriod: 0 });
    clients.push(back);
    const after: string[] = [];
    back.on('message', (_t, payload) => after.push(payload.toString()));
    // A SUBACK: the broker has started sending what the session held (aedes sends a message
    // published while it does so twice, live and from the queue: not what is tested here).
    await back.subscribeAsync('other/x', { qos: 0 });
    await broker.source.publish('q2/x', Buffer.from('marker'), 2, false);
    await eventually(() => after.includes('marker'), 'the marker after reconnect');
    expect(after).toEqual(['marker']);
  });

  it('the total over all offline sessions is bounded too, oldest message first', async () => {
    broker = await startBroker({
      maxQueuedMessages: 1000,
      maxQueuedMessagesTotal: 1500,
    });
    const url = `mqtt://127.0.0.1:${broker.port}`;
    for (const id of ['away-a', 'away-b']) {
      const c = await mqtt.connectAsync(url, { clientId: id, clean: false, reconnectPeriod: 0 });
      await c.subscribeAsync(id === 'away-a' ? 'fleet/#' : 'fleet/dev1/#', { qos: 1 });
      await c.endAsync();
    }
    const pub = await rawClient(broker.port, 'publisher');
    raws.push(pub);
    // dev0 and dev1 alternate: away-a gets every message, away-b every second one.
    await publishRange(pub, 0, 4000, 2);
    const a = await queued(broker, 'away-a');
    const b = await queued(broker, 'away-b');
    expect(a.length + b.length).toBe(1500);
    // The oldest overall went first: what remains is the newest of both, whichever session held it.
    const oldestKept = Math.min(...[...a, ...b].map((p) => Number(p.payload.toString())));
    expect(oldestKept).toBeGreaterThan(4000 - 1500);
    expect(a.at(-1)?.payload.toString()).toBe('00003999');
    expect(b.at(-1)?.payload.toString()).toBe('00003999');
  });
});
