// The broker's limits (mqtt.limits): each one refuses what goes past it, counts it, logs it,
// and keeps what came before it and what other clients send. Raw clients control the bytes.

import { connect } from 'node:net';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import type { JournalOptions } from '../../src/journal/journal.ts';
import type { MqttBrokerOptions } from '../../src/sources/mqtt-broker/mqtt-broker-source.ts';
import { eventually } from '../helpers/daemon.ts';
import { publishPacket, subscribePacket } from '../helpers/mqtt-wire.ts';
import { type BrokerHarness, type RawClient, rawClient, startBroker } from './broker-harness.ts';

const PUBACK = 4;
const SUBACK = 9;

let broker: BrokerHarness | null = null;
const raws: RawClient[] = [];

afterEach(async () => {
  for (const c of raws.splice(0)) c.socket.destroy();
  await broker?.stop();
  broker = null;
});

async function start(
  limits: Partial<MqttBrokerOptions['limits']>,
  journal: Partial<JournalOptions> = {},
): Promise<BrokerHarness> {
  const defaults = {
    maxConnections: 5000,
    maxTopicBytes: 1024,
    maxTopicLevels: 32,
    maxInflight: 10_000,
  };
  broker = await startBroker({ limits: { ...defaults, ...limits } }, journal);
  return broker;
}

async function client(b: BrokerHarness, id: string): Promise<RawClient> {
  const c = await rawClient(b.port, id);
  raws.push(c);
  return c;
}

const acks = (c: RawClient) => c.packets().filter((p) => p.type === PUBACK).length;
const isClosed = (c: RawClient) => c.socket.destroyed || c.socket.readableEnded;
const pub = (topic: string, payload: string, id: number) => publishPacket(topic, Buffer.from(payload), 1, id);

describe('mqtt.limits', () => {
  it('maxConnections: one more connection is closed before its CONNECT is read; a freed slot is served again', async () => {
    const b = await start({ maxConnections: 2 });
    const first = await client(b, 'one');
    await client(b, 'two');
    const extra = connect(b.port, '127.0.0.1');
    extra.on('error', () => {});
    const data: Buffer[] = [];
    extra.on('data', (d) => data.push(d));
    await new Promise((resolve) => extra.once('close', resolve));
    expect(Buffer.concat(data).length).toBe(0);
    expect(b.source.counters.limitConnections).toBe(1);
    expect(b.logs.some((l) => l.msg.includes('maxConnections open'))).toBe(true);

    first.socket.destroy();
    await first.closed;
    await eventually(async () => {
      const again = await client(b, 'three').catch(() => null);
      return again !== null;
    }, 'a connection accepted once a slot is free');
    expect(b.source.counters.limitConnections).toBeGreaterThanOrEqual(1);
  });

  it('maxTopicBytes: a PUBLISH topic over it closes the connection, unacked and not journaled; others go on', async () => {
    const b = await start({ maxTopicBytes: 16 });
    const bad = await client(b, 'bad');
    const good = await client(b, 'good');
    bad.socket.write(Buffer.concat([pub('ok/1', 'kept', 1), pub('x'.repeat(17), 'too-long', 2)]));
    await bad.closed;
    expect(acks(bad)).toBeLessThanOrEqual(1);
    good.socket.write(pub('é'.repeat(8), 'sixteen-bytes', 1));
    await eventually(() => acks(good) === 1, 'the 16-byte (8 x 2-byte) topic acked');
    expect(await b.journaledPayloads()).toEqual(['kept', 'sixteen-bytes']);
    expect(b.source.counters.limitTopic).toBe(1);
    expect(b.source.counters.protocolErrors).toBe(0);
  });

  it('maxTopicBytes: a SUBSCRIBE filter over it closes the connection without a SUBACK', async () => {
    const b = await start({ maxTopicBytes: 16 });
    const c = await client(b, 'sub');
    c.socket.write(subscribePacket(1, `${'y'.repeat(20)}/#`, 1));
    await c.closed;
    expect(c.packets().some((p) => p.type === SUBACK)).toBe(false);
    expect(b.source.counters.limitTopic).toBe(1);
    const ok = await client(b, 'sub2');
    ok.socket.write(subscribePacket(1, 'short/#', 1));
    await eventually(() => ok.packets().some((p) => p.type === SUBACK), 'SUBACK for a short filter');
  });

  it('maxTopicLevels: a topic or filter with more levels closes the connection, counted as a limit', async () => {
    const b = await start({ maxTopicLevels: 3 });
    const p = await client(b, 'deep-pub');
    p.socket.write(Buffer.concat([pub('a/b/c', 'three', 1), pub('a/b/c/d', 'four', 2)]));
    await p.closed;
    const s = await client(b, 'deep-sub');
    s.socket.write(subscribePacket(1, 'a/b/c/#', 0));
    await s.closed;
    expect(await b.journaledPayloads()).toEqual(['three']);
    expect(b.source.counters.limitTopic).toBe(2);
    expect(b.source.counters.protocolErrors).toBe(0);
  });

  it('publishRate, onExceed disconnect: the burst is journaled, the publish past it is not acked and the connection closes', async () => {
    const b = await start({ publishRate: { messagesPerSecond: 0.001, burst: 3, onExceed: 'disconnect' } });
    const c = await client(b, 'chatty');
    c.socket.write(Buffer.concat([1, 2, 3, 4, 5].map((i) => pub('t', `m${i}`, i))));
    await c.closed;
    expect(await b.journaledPayloads()).toEqual(['m1', 'm2', 'm3']);
    expect(acks(c)).toBeLessThanOrEqual(3);
    expect(b.source.counters.limitRate).toBe(1);
    // Another client has its own bucket.
    const other = await client(b, 'quiet');
    other.socket.write(pub('t', 'other', 1));
    await eventually(() => acks(other) === 1, 'the other client acked');
  });

  it('publishRate, onExceed drop: publishes past the burst are acked, not journaled, counted; the connection stays', async () => {
    const b = await start({ publishRate: { messagesPerSecond: 0.001, burst: 2, onExceed: 'drop' } });
    // A local subscriber gets what was journaled and nothing that was dropped.
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.port}`, { clientId: 'watcher' });
    const seen: string[] = [];
    sub.on('message', (_t, payload) => seen.push(payload.toString()));
    await sub.subscribeAsync(['t', '$edgeferry/#'], { qos: 1 });
    const c = await client(b, 'chatty');
    c.socket.write(Buffer.concat([1, 2, 3, 4, 5].map((i) => pub('t', `m${i}`, i))));
    await eventually(() => acks(c) === 5, 'all five acked');
    expect(isClosed(c)).toBe(false);
    expect(await b.journaledPayloads()).toEqual(['m1', 'm2']);
    expect(b.source.counters.limitRate).toBe(3);
    // The subscriber's session sees m1 and m2 before anything published after them.
    const marker = await client(b, 'marker');
    marker.socket.write(pub('t', 'marker', 1));
    await eventually(() => seen.includes('marker'), 'the marker delivered');
    await sub.endAsync();
    expect(seen).toEqual(['m1', 'm2', 'marker']);
    expect(b.logs.filter((l) => l.msg.includes('messages dropped')).length).toBe(1);
  });

  it('publishRate refills over time: a client at its rate is never limited', async () => {
    const b = await start({ publishRate: { messagesPerSecond: 1000, burst: 1, onExceed: 'disconnect' } });
    const c = await client(b, 'steady');
    for (let i = 1; i <= 5; i++) {
      c.socket.write(pub('t', `m${i}`, i));
      await eventually(() => acks(c) === i, `publish ${i} acked`);
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(b.source.counters.limitRate).toBe(0);
    expect(await b.journaledPayloads()).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
  });

  it('maxInflight: a connection with that many publishes awaiting commit is not read until acks go out; nothing lost', async () => {
    // A slow group commit keeps the publishes pending long enough to fill the window.
    const b = await start({ maxInflight: 5 }, { groupCommit: { maxRecords: 4096, maxDelayMs: 100 } });
    const c = await client(b, 'burst');
    const n = 200;
    const packets: Buffer[] = [];
    for (let i = 1; i <= n; i++) packets.push(pub('t', `m${i}`, i));
    // One write per packet-sized chunk would not matter: the limit pauses between socket reads.
    for (let i = 0; i < n; i += 10) c.socket.write(Buffer.concat(packets.slice(i, i + 10)));
    await eventually(() => acks(c) === n, 'every publish acked');
    expect(b.source.counters.limitInflight).toBeGreaterThan(0);
    const journaled = await b.journaledPayloads();
    expect(journaled).toEqual(Array.from({ length: n }, (_, i) => `m${i + 1}`));
    expect(isClosed(c)).toBe(false);
  });
});
