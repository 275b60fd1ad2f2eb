// Hand-built MQTT 3.1.1 packets for tests that must control the bytes on the wire (floods,
// pipelining without waiting for acks, hostile input).

/** An MQTT 3.1.1 CONNECT with a clean session. */
export function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId);
  const body = Buffer.concat([
    Buffer.from([0, 4]),
    Buffer.from('MQTT'),
    Buffer.from([4, 0x02, 0, 60, 0, id.length]),
    id,
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

/** A PUBLISH; `messageId` is required for QoS 1 and 2. */
export function publishPacket(topic: string, payload: Buffer, qos: 0 | 1 | 2, messageId = 0): Buffer {
  const t = Buffer.from(topic);
  const idLen = qos > 0 ? 2 : 0;
  const remaining = 2 + t.length + idLen + payload.length;
  const head = Buffer.concat([Buffer.from([0x30 | (qos << 1)]), varint(remaining)]);
  const out = Buffer.allocUnsafe(head.length + remaining);
  let o = head.copy(out, 0);
  o = out.writeUInt16BE(t.length, o);
  o += t.copy(out, o);
  if (qos > 0) o = out.writeUInt16BE(messageId, o);
  payload.copy(out, o);
  return out;
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
