// Just enough MQTT 3.1.1 framing for the load generator, the benchmark subscriber and the null
// broker: hand-built packets and a stream framer. No validation beyond what a benchmark needs.

export const CONNECT = 1;
export const CONNACK = 2;
export const PUBLISH = 3;
export const PUBACK = 4;
export const SUBSCRIBE = 8;
export const SUBACK = 9;
export const PINGREQ = 12;
export const PINGRESP = 13;
export const DISCONNECT = 14;

export const PINGREQ_PACKET = Buffer.from([0xc0, 0x00]);
export const PINGRESP_PACKET = Buffer.from([0xd0, 0x00]);
export const DISCONNECT_PACKET = Buffer.from([0xe0, 0x00]);
export const CONNACK_OK_PACKET = Buffer.from([0x20, 0x02, 0x00, 0x00]);

/** The Remaining Length varint [MQTT-2.2.3]. */
export function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function utf8Field(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const out = Buffer.allocUnsafe(2 + b.length);
  out.writeUInt16BE(b.length, 0);
  b.copy(out, 2);
  return out;
}

function packet(firstByte: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([firstByte, ...remainingLength(body.length)]), body]);
}

/** CONNECT, protocol level 4 (3.1.1), clean session, no will, no credentials. */
export function connectPacket(clientId: string, keepaliveSec = 60): Buffer {
  const variable = Buffer.from([
    0x00,
    0x04,
    0x4d,
    0x51,
    0x54,
    0x54,
    0x04,
    0x02,
    keepaliveSec >> 8,
    keepaliveSec & 0xff,
  ]);
  return packet(0x10, Buffer.concat([variable, utf8Field(clientId)]));
}

export function subscribePacket(packetId: number, filter: string, qos: 0 | 1): Buffer {
  const id = Buffer.from([packetId >> 8, packetId & 0xff]);
  return packet(0x82, Buffer.concat([id, utf8Field(filter), Buffer.from([qos])]));
}

export function subackPacket(packetId: number, grantedQos: number): Buffer {
  return Buffer.from([0x90, 0x03, packetId >> 8, packetId & 0xff, grantedQos]);
}

/** A PUBLISH with every byte but the packet id and the send timestamp fixed in advance. */
export interface PublishTemplate {
  packet: Buffer;
  /** Offset of the 2-byte packet id, -1 for QoS 0. */
  packetIdOffset: number;
  /** Offset of the payload; its first 8 bytes are the float64 BE send time. */
  payloadOffset: number;
}

export function publishTemplate(topic: string, qos: 0 | 1, payloadBytes: number): PublishTemplate {
  if (payloadBytes < 8) throw new Error('payload must hold the 8-byte send timestamp');
  const topicField = utf8Field(topic);
  const idBytes = qos > 0 ? 2 : 0;
  const remaining = topicField.length + idBytes + payloadBytes;
  const header = Buffer.from([0x30 | (qos << 1), ...remainingLength(remaining)]);
  const buf = Buffer.alloc(header.length + remaining, 0x2e); // '.' padding
  header.copy(buf, 0);
  topicField.copy(buf, header.length);
  const packetIdOffset = qos > 0 ? header.length + topicField.length : -1;
  const payloadOffset = header.length + topicField.length + idBytes;
  buf.fill(0, payloadOffset, payloadOffset + 8);
  return { packet: buf, packetIdOffset, payloadOffset };
}

/**
 * Called per complete packet with the first header byte and the body bounds inside `buf` (no
 * slice is allocated; copy what must outlive the call).
 */
export type PacketHandler = (header: number, buf: Buffer, start: number, end: number) => void;

/** Splits a TCP byte stream into MQTT packets, carrying a partial packet over to the next chunk. */
export class MqttFramer {
  private rest: Buffer | null = null;
  private readonly onPacket: PacketHandler;

  constructor(onPacket: PacketHandler) {
    this.onPacket = onPacket;
  }

  push(chunk: Buffer): void {
    const buf = this.rest === null ? chunk : Buffer.concat([this.rest, chunk]);
    this.rest = null;
    const n = buf.length;
    let pos = 0;
    while (n - pos >= 2) {
      let len = 0;
      let mul = 1;
      let i = pos + 1;
      let complete = false;
      while (i < n && i < pos + 5) {
        const b = buf[i++];
        len += (b & 0x7f) * mul;
        mul *= 128;
        if (b < 0x80) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        if (i >= pos + 5) throw new Error('malformed MQTT remaining length');
        break;
      }
      if (i + len > n) break;
      this.onPacket(buf[pos], buf, i, i + len);
      pos = i + len;
    }
    if (pos < n) this.rest = buf.subarray(pos);
  }
}

/** Wall-clock ms with sub-ms precision, comparable across threads and processes of one host. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}
