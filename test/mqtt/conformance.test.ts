// MQTT 3.1.1 conformance where aedes and mqtt-packet are lenient (issue #14 item 2), on a raw
// socket against the real broker source and journal: every broken rule closes the connection,
// is counted under its rule, and nothing of the packet is journaled; well-formed clients,
// including ones using non-ASCII topics, wills and credentials, are unaffected.

import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/daemon.ts';
import { connectPacket, publishPacket, splitPackets, type WirePacket } from '../helpers/mqtt-wire.ts';
import { rawConnect, rawSubscribe, rawUnsubscribe } from '../helpers/mqtt-wire-raw.ts';
import { type BrokerHarness, startBroker } from './broker-harness.ts';

let broker: BrokerHarness;
let good: mqtt.MqttClient;
let goodCount = 0;
/** A local subscriber to everything: what the broker forwarded. */
let watcher: mqtt.MqttClient;
const forwarded: string[] = [];

beforeAll(async () => {
  broker = await startBroker();
  good = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, {
    clientId: 'well-formed',
    reconnectPeriod: 0,
    will: { topic: 'état/ünïcode/will', payload: Buffer.from('never'), qos: 1, retain: false },
    username: 'user-ü',
    password: Buffer.from([0xff, 0x00]),
  });
  watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, {
    clientId: 'watcher',
    reconnectPeriod: 0,
  });
  watcher.on('message', (_topic, payload) => forwarded.push(payload.toString()));
  await watcher.subscribeAsync('#', { qos: 1 });
});

afterAll(async () => {
  await watcher?.endAsync();
  await good?.endAsync();
  await broker?.stop();
});

const ill = (...bytes: number[]) => Buffer.from([0x61, ...bytes, 0x62]);
// Well-formed UTF-8 a naive check could refuse: 2-, 3- and 4-byte forms, U+FEFF, U+FFFF.
const NON_ASCII_TOPIC = 'capteurs/température/日本/😀/\ufeff\uffff';

interface Case {
  title: string;
  rule: string;
  /** The bytes sent after a good CONNECT (or instead of it, with `raw`). */
  bytes: Buffer;
  raw?: boolean;
  /** A CONNACK return code expected before the close. */
  connack?: number;
}

const pub = (topic: string | Buffer, qos: 0 | 1 | 2, id: number, name: string) =>
  publishPacket(topic, Buffer.from(`bad:${name}`), qos, id);
const will = (topic: string | Buffer) => ({ topic, message: Buffer.from('bad:will') });

const cases: Case[] = [
  {
    title: 'PUBLISH topic with an invalid byte 0xFF',
    rule: 'MQTT-1.5.3-1',
    bytes: pub(ill(0xff), 1, 1, 'ff'),
  },
  {
    title: 'PUBLISH topic with a UTF-16 surrogate',
    rule: 'MQTT-1.5.3-1',
    bytes: pub(ill(0xed, 0xa0, 0x80), 0, 0, 'sur'),
  },
  {
    title: 'PUBLISH topic with an overlong "/"',
    rule: 'MQTT-1.5.3-1',
    bytes: pub(ill(0xc0, 0xaf), 2, 3, 'ovl'),
  },
  {
    title: 'PUBLISH topic with a truncated sequence',
    rule: 'MQTT-1.5.3-1',
    bytes: pub(ill(0xe6, 0x97), 1, 4, 'tr'),
  },
  { title: 'PUBLISH topic with U+0000', rule: 'MQTT-4.7.3-2', bytes: pub(ill(0x00), 1, 5, 'nul') },
  {
    title: 'SUBSCRIBE filter with ill-formed UTF-8',
    rule: 'MQTT-1.5.3-1',
    bytes: rawSubscribe(1, [{ filter: ill(0xfe), qos: 0 }]),
  },
  {
    title: 'SUBSCRIBE filter with U+0000',
    rule: 'MQTT-4.7.3-2',
    bytes: rawSubscribe(1, [
      { filter: 'a/ok', qos: 1 },
      { filter: ill(0), qos: 0 },
    ]),
  },
  {
    title: 'UNSUBSCRIBE filter with ill-formed UTF-8',
    rule: 'MQTT-1.5.3-1',
    bytes: rawUnsubscribe(1, [ill(0x80)]),
  },
  { title: 'UNSUBSCRIBE filter with U+0000', rule: 'MQTT-4.7.3-2', bytes: rawUnsubscribe(1, [ill(0)]) },
  {
    title: 'QoS 1 PUBLISH with packet identifier 0',
    rule: 'MQTT-2.3.1-1',
    bytes: pub('sensors/id0', 1, 0, 'id0q1'),
  },
  {
    title: 'QoS 2 PUBLISH with packet identifier 0',
    rule: 'MQTT-2.3.1-1',
    bytes: pub('sensors/id0', 2, 0, 'id0q2'),
  },
  {
    title: 'SUBSCRIBE with packet identifier 0',
    rule: 'MQTT-2.3.1-1',
    bytes: rawSubscribe(0, [{ filter: 'a/#', qos: 1 }]),
  },
  { title: 'UNSUBSCRIBE with packet identifier 0', rule: 'MQTT-2.3.1-1', bytes: rawUnsubscribe(0, ['a/#']) },
  { title: 'UNSUBSCRIBE without a filter', rule: 'MQTT-3.10.3-2', bytes: rawUnsubscribe(9, []) },
  { title: 'SUBSCRIBE without a filter', rule: 'MQTT-3.8.3-3', bytes: rawSubscribe(9, []) },
  {
    title: 'SUBSCRIBE requesting QoS 3',
    rule: 'MQTT-3.8.3-4',
    bytes: rawSubscribe(9, [{ filter: 'a', qos: 3 }]),
  },
  {
    title: 'SUBSCRIBE with reserved bits in the requested QoS',
    rule: 'MQTT-3.8.3-4',
    bytes: rawSubscribe(9, [{ filter: 'a', qos: 0x41 }]),
  },
  {
    title: 'PUBLISH with QoS 3',
    rule: 'MQTT-3.3.1-4',
    bytes: Buffer.concat([Buffer.from([0x36]), pub('sensors/q3', 1, 7, 'q3').subarray(1)]),
  },
  { title: 'PUBLISH topic with a wildcard', rule: 'MQTT-3.3.2-2', bytes: pub('sensors/+/t', 1, 8, 'wild') },
  { title: 'PUBLISH with an empty topic', rule: 'MQTT-4.7.3-1', bytes: pub('', 1, 8, 'empty') },
  { title: 'PUBREL with flags 0000', rule: 'MQTT-2.2.2-2', bytes: Buffer.from([0x60, 2, 0, 1]) },
  {
    title: 'SUBSCRIBE with flags 0000',
    rule: 'MQTT-2.2.2-2',
    bytes: Buffer.from([0x80, 6, 0, 1, 0, 1, 0x61, 0]),
  },
  { title: 'PINGREQ with flags 0001', rule: 'MQTT-2.2.2-2', bytes: Buffer.from([0xc1, 0]) },
  { title: 'a CONNACK sent to the server', rule: 'MQTT-4.8.0-1', bytes: Buffer.from([0x20, 2, 0, 0]) },
  { title: 'reserved packet type 15', rule: 'MQTT-4.8.0-1', bytes: Buffer.from([0xf0, 0]) },
  { title: 'a second CONNECT', rule: 'MQTT-3.1.0-2', bytes: connectPacket('again') },
  {
    title: 'a PUBLISH before CONNECT',
    rule: 'MQTT-3.1.0-1',
    raw: true,
    bytes: pub('sensors/early', 1, 1, 'early'),
  },
  {
    title: 'CONNECT: empty client id with CleanSession 0',
    rule: 'MQTT-3.1.3-8',
    raw: true,
    connack: 2,
    bytes: rawConnect({ clientId: '', flags: 0x04, will: will('w/t') }),
  },
  {
    title: 'CONNECT: client id with ill-formed UTF-8',
    rule: 'MQTT-1.5.3-1',
    raw: true,
    bytes: rawConnect({ clientId: ill(0xc3), will: will('w/t') }),
  },
  {
    title: 'CONNECT: client id with U+0000',
    rule: 'MQTT-1.5.3-2',
    raw: true,
    bytes: rawConnect({ clientId: ill(0), will: will('w/t') }),
  },
  {
    title: 'CONNECT: Will topic with ill-formed UTF-8',
    rule: 'MQTT-1.5.3-1',
    raw: true,
    bytes: rawConnect({ clientId: 'w1', will: will(ill(0xff)) }),
  },
  {
    title: 'CONNECT: Will topic with U+0000',
    rule: 'MQTT-4.7.3-2',
    raw: true,
    bytes: rawConnect({ clientId: 'w2', will: will(ill(0)) }),
  },
  {
    title: 'CONNECT: Will topic with a wildcard',
    rule: 'MQTT-4.7.1-1',
    raw: true,
    bytes: rawConnect({ clientId: 'w3', will: will('w/#') }),
  },
  {
    title: 'CONNECT: empty Will topic',
    rule: 'MQTT-4.7.3-1',
    raw: true,
    bytes: rawConnect({ clientId: 'w4', will: will('') }),
  },
  {
    title: 'CONNECT: user name with ill-formed UTF-8',
    rule: 'MQTT-1.5.3-1',
    raw: true,
    bytes: rawConnect({ clientId: 'u1', username: ill(0xc0, 0x80) }),
  },
  {
    title: 'CONNECT: password without user name',
    rule: 'MQTT-3.1.2-22',
    raw: true,
    bytes: rawConnect({ clientId: 'u2', flags: 0x42, password: Buffer.from('pw') }),
  },
  {
    title: 'CONNECT: reserved flag bit 0 set',
    rule: 'MQTT-3.1.2-3',
    raw: true,
    bytes: rawConnect({ clientId: 'r1', flags: 0x03 }),
  },
  {
    title: 'CONNECT: Will QoS without the Will flag',
    rule: 'MQTT-3.1.2-13',
    raw: true,
    bytes: rawConnect({ clientId: 'r2', flags: 0x0a }),
  },
  {
    title: 'CONNECT: Will QoS 3',
    rule: 'MQTT-3.1.2-14',
    raw: true,
    bytes: rawConnect({ clientId: 'r3', flags: 0x1e, will: will('w/t') }),
  },
  {
    title: 'CONNECT: Will Retain without the Will flag',
    rule: 'MQTT-3.1.2-15',
    raw: true,
    bytes: rawConnect({ clientId: 'r4', flags: 0x22 }),
  },
  {
    title: 'CONNECT: protocol name "MQTX"',
    rule: 'MQTT-3.1.2-1',
    raw: true,
    bytes: rawConnect({ clientId: 'p1', protocolName: 'MQTX' }),
  },
  {
    title: 'CONNECT: protocol name MQIsdp with level 4',
    rule: 'MQTT-3.1.2-1',
    raw: true,
    bytes: rawConnect({ clientId: 'p2', protocolName: 'MQIsdp' }),
  },
];

interface Conn {
  socket: Socket;
  packets: () => WirePacket[];
  closed: Promise<unknown>;
}

async function open(): Promise<Conn> {
  const socket = connect(broker.port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return {
    socket,
    packets: () => splitPackets(Buffer.concat(chunks)).packets,
    closed: once(socket, 'close'),
  };
}

async function goodPublish(): Promise<void> {
  const payload = `good-${++goodCount}`;
  await good.publishAsync(NON_ASCII_TOPIC, payload, { qos: 1 });
}

function ruleCount(rule: string): number {
  return broker.source.counters.protocolErrorRules[rule] ?? 0;
}

describe('MQTT 3.1.1 conformance on a raw socket', () => {
  for (const c of cases) {
    it(`${c.title}: refused [${c.rule}], connection closed, nothing journaled`, async () => {
      const before = ruleCount(c.rule);
      const conn = await open();
      if (!c.raw) {
        conn.socket.write(connectPacket(`raw-${before}-${c.rule}`));
        await eventually(() => conn.packets().some((p) => p.type === 2), 'CONNACK');
      }
      conn.socket.write(c.bytes);
      await conn.closed;
      expect(ruleCount(c.rule)).toBe(before + 1);
      const connacks = conn.packets().filter((p) => p.type === 2);
      if (c.connack !== undefined) expect(connacks.map((p) => p.body[1])).toEqual([c.connack]);
      else expect(connacks).toHaveLength(c.raw ? 0 : 1);
      // Nothing but the CONNACK came back: no PUBACK, SUBACK or UNSUBACK for the bad packet.
      expect(conn.packets().filter((p) => p.type !== 2)).toEqual([]);
      await goodPublish();
      const journaled = await broker.journaledPayloads();
      expect(journaled.filter((p) => p.startsWith('bad:'))).toEqual([]);
      expect(journaled.at(-1)).toBe(`good-${goodCount}`);
      // Nor forwarded to local subscribers.
      await eventually(() => forwarded.includes(`good-${goodCount}`), 'the good message forwarded');
      expect(forwarded.filter((p) => p.startsWith('bad:'))).toEqual([]);
    });
  }

  it('a bad PUBLISH fed one byte per read is refused the same way (its head collected across reads)', async () => {
    const conn = await open();
    conn.socket.write(connectPacket('raw-trickle'));
    await eventually(() => conn.packets().some((p) => p.type === 2), 'CONNACK');
    conn.socket.setNoDelay(true);
    const before = ruleCount('MQTT-1.5.3-1');
    // A good one first, trickled too: it is journaled and acknowledged.
    const okFirst = publishPacket('sensors/trickle', Buffer.from('ok:trickle'), 1, 1);
    const bytes = Buffer.concat([okFirst, pub(ill(0xff), 1, 2, 'trickle')]);
    for (let i = 0; i < bytes.length && !conn.socket.destroyed; i++) {
      conn.socket.write(bytes.subarray(i, i + 1));
      await new Promise((r) => setImmediate(r));
    }
    await conn.closed;
    expect(ruleCount('MQTT-1.5.3-1')).toBe(before + 1);
    const journaled = await broker.journaledPayloads();
    expect(journaled).toContain('ok:trickle');
    expect(journaled.filter((p) => p.startsWith('bad:'))).toEqual([]);
  });

  it('well-formed clients are unaffected: non-ASCII topics, wills, credentials, subscriptions, QoS 0-2', async () => {
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { clientId: '', clean: true });
    try {
      await sub.subscribeAsync([`capteurs/+/日本/#`, 'ü/+'], { qos: 1 });
      const got: string[] = [];
      sub.on('message', (topic, payload) => got.push(`${topic}=${payload}`));
      await good.publishAsync(NON_ASCII_TOPIC, 'q0', { qos: 0 });
      await good.publishAsync('ü/ß', 'q1', { qos: 1 });
      await good.publishAsync(NON_ASCII_TOPIC, 'q2', { qos: 2 });
      await eventually(() => got.length === 3, 'three messages delivered');
      expect(got.sort()).toEqual([`${NON_ASCII_TOPIC}=q0`, `${NON_ASCII_TOPIC}=q2`, 'ü/ß=q1']);
      await sub.unsubscribeAsync(['ü/+']);
      const journaled = await broker.journaledPayloads();
      expect(journaled.slice(-3)).toEqual(['q0', 'q1', 'q2']);
      expect(good.connected).toBe(true);
    } finally {
      await sub.endAsync();
    }
    // Nothing here broke a rule: every count so far came from the cases above.
    const total = Object.values(broker.source.counters.protocolErrorRules).reduce((a, b) => a + b, 0);
    expect(total).toBe(cases.length + 1);
  });

  it('the refusal is logged with the rule', () => {
    const lines = broker.logs.filter((l) => /protocol violation/.test(l.msg));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines[0].obj).toMatchObject({ rule: expect.stringMatching(/^MQTT-\d/) });
    expect(lines[0].msg).toMatch(/\[MQTT-[\d.-]+\]/);
  });
});
