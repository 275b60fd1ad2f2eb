// MQTT 3.1.1 packets with every field under the test's control, well-formed or not: for the
// conformance tests and the fuzz generators (mqtt-wire.ts builds the ordinary ones).

import { varint } from './mqtt-wire.ts';

/** A packet from its first byte and body: the Remaining Length is computed. */
export function frame(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first]), varint(body.length), body]);
}

/** A length-prefixed field [MQTT-1.5.3]; a string is encoded as UTF-8, a Buffer sent as it is. */
export function field(value: string | Buffer): Buffer {
  const b = typeof value === 'string' ? Buffer.from(value) : value;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

export interface RawConnect {
  protocolName?: string | Buffer;
  level?: number;
  /** The connect flags byte as sent; default: CleanSession plus the flags the fields below imply. */
  flags?: number;
  keepalive?: number;
  /** CleanSession, when `flags` is not given (default true). */
  clean?: boolean;
  clientId: string | Buffer;
  will?: { topic: string | Buffer; message: Buffer; qos?: number; retain?: boolean };
  username?: string | Buffer;
  password?: Buffer;
}

export function rawConnect(c: RawConnect): Buffer {
  let flags = c.flags;
  if (flags === undefined) {
    flags = c.clean === false ? 0 : 0x02;
    if (c.will) flags |= 0x04 | ((c.will.qos ?? 0) << 3) | (c.will.retain ? 0x20 : 0);
    if (c.username !== undefined) flags |= 0x80;
    if (c.password !== undefined) flags |= 0x40;
  }
  const keepalive = c.keepalive ?? 60;
  const parts = [
    field(c.protocolName ?? 'MQTT'),
    Buffer.from([c.level ?? 4, flags, keepalive >> 8, keepalive & 0xff]),
    field(c.clientId),
  ];
  if (c.will) parts.push(field(c.will.topic), field(c.will.message));
  if (c.username !== undefined) parts.push(field(c.username));
  if (c.password !== undefined) parts.push(field(c.password));
  return frame(0x10, Buffer.concat(parts));
}

/** A SUBSCRIBE with any packet identifier, filters and requested-QoS bytes (none: no filter). */
export function rawSubscribe(messageId: number, filters: { filter: string | Buffer; qos: number }[]): Buffer {
  const id = Buffer.from([messageId >> 8, messageId & 0xff]);
  const body = filters.flatMap((f) => [field(f.filter), Buffer.from([f.qos])]);
  return frame(0x82, Buffer.concat([id, ...body]));
}

/** An UNSUBSCRIBE with any packet identifier and filters (none: no filter). */
export function rawUnsubscribe(messageId: number, filters: (string | Buffer)[]): Buffer {
  const id = Buffer.from([messageId >> 8, messageId & 0xff]);
  return frame(0xa2, Buffer.concat([id, ...filters.map(field)]));
}
