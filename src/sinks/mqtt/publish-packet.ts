// PUBLISH packets written by the bridge sink itself, one buffer each, the constant parts (the
// user property naming this node) encoded once. mqtt.js' publish() costs several times more
// per message (a deep clone of the packet for its store, a callback, a dozen small socket writes
// each with a debug call); the sink keeps mqtt.js for the connection, CONNECT, TLS, keepalive
// and parsing, and writes its publishes with the packet ids it owns (it never calls publish()).

/** [MQTT-2.2.3] the Remaining Length is at most 268 435 455 (four varint bytes). */
export const MAX_REMAINING_LENGTH = 268_435_455;

const USER_PROPERTY = 0x26;
const CONTENT_TYPE = 0x03;
const NODE_KEY = 'edgeferry-node';
const RECORD_ID_KEY = Buffer.from('edgeferry-record-id');

function varintSize(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 128;
    buf[pos++] = b;
  } while (n > 0);
  return pos;
}

function userProperty(key: string, value: string): Buffer {
  const k = Buffer.from(key);
  const v = Buffer.from(value);
  const out = Buffer.allocUnsafe(5 + k.length + v.length);
  out[0] = USER_PROPERTY;
  out.writeUInt16BE(k.length, 1);
  k.copy(out, 3);
  out.writeUInt16BE(v.length, 3 + k.length);
  v.copy(out, 5 + k.length);
  return out;
}

/** What one record's PUBLISH carries besides topic and payload. */
export interface PublishFields {
  topic: string;
  /** The record's body and where its payload lies in it (copied once, into the packet). */
  body: Buffer;
  payloadStart: number;
  payloadEnd: number;
  /** MQTT 5 only: the record id and content type (null: none). */
  recordId: string;
  contentType: string | null;
}

export class PublishEncoder {
  private readonly v5: boolean;
  private readonly firstByte: number;
  private readonly qos: 0 | 1;
  /** `edgeferry-node: <node>` as a property, encoded once. */
  private readonly nodeProperty: Buffer;

  constructor(opts: { protocolVersion: 4 | 5; qos: 0 | 1; retain: boolean; node: string }) {
    this.v5 = opts.protocolVersion === 5;
    this.qos = opts.qos;
    this.firstByte = 0x30 | (opts.qos << 1) | (opts.retain ? 1 : 0);
    this.nodeProperty = userProperty(NODE_KEY, opts.node);
  }

  /** The whole packet's size for a remaining length, to check the broker's Maximum Packet Size. */
  static packetSize(remainingLength: number): number {
    return 1 + varintSize(remainingLength) + remainingLength;
  }

  /** Bytes after the fixed header; may exceed MAX_REMAINING_LENGTH (the caller refuses it). */
  remainingLength(f: PublishFields, topicBytes: number): number {
    let n = 2 + topicBytes + (this.qos > 0 ? 2 : 0) + (f.payloadEnd - f.payloadStart);
    if (this.v5) {
      const props = this.propertiesLength(f);
      n += varintSize(props) + props;
    }
    return n;
  }

  private propertiesLength(f: PublishFields): number {
    let n = this.nodeProperty.length + 5 + RECORD_ID_KEY.length + Buffer.byteLength(f.recordId);
    if (f.contentType !== null) n += 3 + Buffer.byteLength(f.contentType);
    return n;
  }

  /** Writes the PUBLISH of `f` with `packetId` into a new buffer; `rest` from remainingLength. */
  encode(f: PublishFields, topicBytes: number, packetId: number, rest: number): Buffer {
    const buf = Buffer.allocUnsafe(1 + varintSize(rest) + rest);
    buf[0] = this.firstByte;
    let pos = writeVarint(buf, 1, rest);
    buf.writeUInt16BE(topicBytes, pos);
    pos += 2;
    pos += buf.write(f.topic, pos, topicBytes, 'utf8');
    if (this.qos > 0) {
      buf.writeUInt16BE(packetId, pos);
      pos += 2;
    }
    if (this.v5) {
      pos = writeVarint(buf, pos, this.propertiesLength(f));
      if (f.contentType !== null) {
        buf[pos++] = CONTENT_TYPE;
        const len = Buffer.byteLength(f.contentType);
        buf.writeUInt16BE(len, pos);
        pos += 2;
        pos += buf.write(f.contentType, pos, len, 'utf8');
      }
      pos += this.nodeProperty.copy(buf, pos);
      buf[pos++] = USER_PROPERTY;
      buf.writeUInt16BE(RECORD_ID_KEY.length, pos);
      pos += 2;
      pos += RECORD_ID_KEY.copy(buf, pos);
      const idLen = Buffer.byteLength(f.recordId);
      buf.writeUInt16BE(idLen, pos);
      pos += 2;
      pos += buf.write(f.recordId, pos, idLen, 'utf8');
    }
    f.body.copy(buf, pos, f.payloadStart, f.payloadEnd);
    return buf;
  }
}
