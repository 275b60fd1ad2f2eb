// Hand-built MQTT 3.1.1 packets for tests that must control the bytes on the wire (floods,
// pipelining without waiting for acks, hostile input, resends, clients that never read).

export interface ConnectOptions {
  /** Clean session (default true); false keeps the session while the client is away. */
  clean?: boolean;
  /** Keep alive in seconds (default 60); 0 turns the broker's keepalive check off. */
  keepalive?: number;
}

/** An MQTT 3.1.1 CONNECT, with a clean session unless told otherwise. */
export function connectPacket(clientId: string, opts: ConnectOptions = {}): Buffer {
  const id = Buffer.from(clientId);
  const keepalive = opts.keepalive ?? 60;
  const flags = opts.clean === false ? 0x00 : 0x02;
  const body = Buffer.concat([
    Buffer.from([0, 4]),
    Buffer.from('MQTT'),
    Buffer.from([4, flags, keepalive >> 8, keepalive & 0xff, id.length >> 8, id.length & 0xff]),
    id,
  ]);
  return Buffer.concat([Buffer.from([0x10]), varint(body.length), body]);
}

export interface PublishFlags {
  dup?: boolean;
  retain?: boolean;
}

/** A PUBLISH; `messageId` is required for QoS 1 and 2. A Buffer topic goes on the wire as it is. */
export function publishPacket(
  topic: string | Buffer,
  payload: Buffer,
  qos: 0 | 1 | 2,
  messageId = 0,
  flags: PublishFlags = {},
): Buffer {
  const t = Buffer.from(topic);
  const idLen = qos > 0 ? 2 : 0;
  const remaining = 2 + t.length + idLen + payload.length;
  const first = 0x30 | (flags.dup ? 0x08 : 0) | (qos << 1) | (flags.retain ? 0x01 : 0);
  const head = Buffer.concat([Buffer.from([first]), varint(remaining)]);
  const out = Buffer.allocUnsafe(head.length + remaining);
  let o = head.copy(out, 0);
  o = out.writeUInt16BE(t.length, o);
  o += t.copy(out, o);
  if (qos > 0) o = out.writeUInt16BE(messageId, o);
  payload.copy(out, o);
  return out;
}

/** A SUBSCRIBE to one topic filter. */
export function subscribePacket(messageId: number, filter: string, qos: 0 | 1 | 2): Buffer {
  const f = Buffer.from(filter);
  const body = Buffer.alloc(2 + 2 + f.length + 1);
  body.writeUInt16BE(messageId, 0);
  body.writeUInt16BE(f.length, 2);
  f.copy(body, 4);
  body[4 + f.length] = qos;
  return Buffer.concat([Buffer.from([0x82]), varint(body.length), body]);
}

/** PUBREL for an incoming QoS 2 PUBLISH [MQTT-3.6.1-1]: fixed header flags 0010. */
export function pubrelPacket(messageId: number): Buffer {
  return Buffer.from([0x62, 2, messageId >> 8, messageId & 0xff]);
}

/** MQTT Remaining Length encoding. */
export function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

/** A packet read back from the wire: its type (high nibble of the first byte), flags and body. */
export interface WirePacket {
  type: number;
  flags: number;
  body: Buffer;
}

/** Splits a byte stream received from the broker into whole packets; `rest` is an incomplete tail. */
export function splitPackets(buf: Buffer): { packets: WirePacket[]; rest: Buffer } {
  const packets: WirePacket[] = [];
  let o = 0;
  for (;;) {
    if (o + 2 > buf.length) break;
    let len = 0;
    let mul = 1;
    let i = o + 1;
    let complete = false;
    while (i < buf.length && i < o + 5) {
      const b = buf[i++];
      len += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) {
        complete = true;
        break;
      }
    }
    if (!complete || i + len > buf.length) break;
    packets.push({ type: buf[o] >> 4, flags: buf[o] & 0x0f, body: buf.subarray(i, i + len) });
    o = i + len;
  }
  return { packets, rest: buf.subarray(o) };
}
