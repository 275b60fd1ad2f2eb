// Follows MQTT fixed headers across a connection's byte stream ([MQTT-2.2]: one type byte, then
// the Remaining Length as a 1-4 byte varint) and skips bodies without parsing them, so an
// oversize packet is refused at its header, before the broker's parser buffers it.

const HEADER = 0;
const LENGTH = 1;
const BODY = 2;

export type GuardVerdict = 'ok' | 'oversize' | 'malformed';

export class PacketSizeGuard {
  private readonly maxPacketBytes: number;
  private state = HEADER;
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private bodyLeft = 0;
  /** Size of the packet that broke the limit, for the log line. */
  offending = 0;

  constructor(maxPacketBytes: number) {
    this.maxPacketBytes = maxPacketBytes;
  }

  feed(buf: Buffer): GuardVerdict {
    let i = 0;
    while (i < buf.length) {
      if (this.state === BODY) {
        const take = Math.min(this.bodyLeft, buf.length - i);
        this.bodyLeft -= take;
        i += take;
        if (this.bodyLeft === 0) this.state = HEADER;
        continue;
      }
      const b = buf[i++];
      if (this.state === HEADER) {
        this.state = LENGTH;
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
        continue;
      }
      this.length += (b & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.lengthBytes++;
      if (b & 0x80) {
        if (this.lengthBytes === 4) return 'malformed';
        continue;
      }
      const total = 1 + this.lengthBytes + this.length;
      if (total > this.maxPacketBytes) {
        this.offending = total;
        return 'oversize';
      }
      this.bodyLeft = this.length;
      this.state = this.length === 0 ? HEADER : BODY;
    }
    return 'ok';
  }
}
