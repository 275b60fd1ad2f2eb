// The read guard on its own: however a stream is cut into reads, well-formed packets pass and a
// rule broken anywhere in it is found, with the same rule (the split-packet path collects a
// packet's head across reads; the one-read path checks it where it lies).

import { describe, expect, it } from 'vitest';
import { PacketSizeGuard } from '../../src/sources/mqtt-broker/packet-size-guard.ts';
import { connectPacket, publishPacket, pubrelPacket } from '../helpers/mqtt-wire.ts';
import { rawConnect, rawSubscribe, rawUnsubscribe } from '../helpers/mqtt-wire-raw.ts';

const good = Buffer.concat([
  rawConnect({
    clientId: 'dev-ü',
    will: { topic: 'état/w', message: Buffer.from([0, 0xff]) },
    username: 'u',
  }),
  publishPacket('capteurs/température/日本/😀', Buffer.alloc(300, 0xff), 1, 1),
  publishPacket('a', Buffer.alloc(0), 0),
  publishPacket('b/c', Buffer.from('x'), 2, 65535),
  pubrelPacket(65535),
  rawSubscribe(2, [
    { filter: 'ü/+', qos: 1 },
    { filter: '#', qos: 2 },
  ]),
  rawUnsubscribe(3, ['ü/+', '#']),
  Buffer.from([0xc0, 0, 0xe0, 0]), // PINGREQ, DISCONNECT
]);

/** Feeds `stream` cut at `cuts`; returns the verdict and the rule broken, if any. */
function feed(stream: Buffer, cuts: number[]): string {
  const guard = new PacketSizeGuard(64 * 1024);
  let from = 0;
  for (const to of [...cuts, stream.length]) {
    const verdict = guard.feed(stream.subarray(from, to));
    if (verdict !== 'ok') return guard.violation ? guard.violation.rule : verdict;
    from = to;
  }
  return 'ok';
}

const everyCut = (b: Buffer) => Array.from({ length: b.length - 1 }, (_, i) => [i + 1]);
const bytewise = (b: Buffer) => Array.from({ length: b.length - 1 }, (_, i) => i + 1);

describe('packet guard', () => {
  it('passes well-formed packets cut anywhere, and one byte per read', () => {
    for (const cuts of [[], ...everyCut(good), bytewise(good)]) expect(feed(good, cuts)).toBe('ok');
  });

  const bad: [string, Buffer][] = [
    ['MQTT-1.5.3-1', publishPacket(Buffer.from([0x61, 0xed, 0xa0, 0x80]), Buffer.alloc(100), 1, 9)],
    ['MQTT-4.7.3-2', rawSubscribe(4, [{ filter: Buffer.from([0x61, 0]), qos: 0 }])],
    ['MQTT-2.3.1-1', publishPacket('t', Buffer.alloc(10), 2, 0)],
    ['MQTT-3.10.3-2', rawUnsubscribe(5, [])],
    ['MQTT-3.1.0-2', connectPacket('again')],
  ];
  for (const [rule, packet] of bad) {
    it(`finds ${rule} after good packets, however the stream is cut`, () => {
      const stream = Buffer.concat([good, packet, publishPacket('after', Buffer.from('x'), 1, 1)]);
      for (const cuts of [[], ...everyCut(stream), bytewise(stream)]) expect(feed(stream, cuts)).toBe(rule);
    });
  }

  it('refuses a Remaining Length over the limit at its header, and a fifth length byte', () => {
    expect(feed(Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]), [])).toBe('oversize');
    expect(
      feed(Buffer.concat([connectPacket('c'), Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])]), []),
    ).toBe('malformed');
  });

  it('stays refused after a refusal', () => {
    const guard = new PacketSizeGuard(1024);
    expect(guard.feed(Buffer.from([0x30, 0]))).toBe('violation'); // a PUBLISH before CONNECT
    expect(guard.feed(connectPacket('late'))).not.toBe('ok');
  });
});
