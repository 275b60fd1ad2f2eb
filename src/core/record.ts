// The record and its one binary encoding.
//
// The stored body is protobuf wire format for `edgeferry.v1.Record` (protocols/grpc/edgeferry/v1/
// record.proto) holding fields 3..9. The journal-assigned fields `seq` (1) and `id` (2) are not
// stored: protobuf lets fields appear in any order and concatenated messages merge, so a sink
// that needs a complete `Record` writes those two fields in front of the stored body and forwards
// the bytes as they are (see `recordPrefix`).

/** What a source hands to the journal: one message as it arrived. */
export interface RecordInput {
  /** Ingest time, ms since the Unix epoch. */
  ts: number;
  /** Protocol the record came in on: `mqtt`, `coap`, `modbus`, ... */
  source: string;
  /** Device identity as the protocol gives it (MQTT client id, CoAP peer, PLC name). */
  device: string;
  topic: string;
  /** Kept as the Buffer it arrived in; copied once, into the encoded body. */
  payload: Buffer;
  contentType?: string;
  attributes?: Record<string, string>;
}

/** A committed record as readers see it: the journal sequence, ingest time and the stored body. */
export interface StoredRecord {
  seq: number;
  ts: number;
  /** Protobuf fields 3..9 of `edgeferry.v1.Record`. */
  body: Buffer;
}

/** A record decoded from its body, for sinks that need the fields (HTTP NDJSON). */
export interface DecodedRecord {
  ts: number;
  source: string;
  device: string;
  topic: string;
  payload: Buffer;
  contentType: string;
  attributes: Record<string, string>;
}

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const TAG_SEQ = (1 << 3) | WIRE_VARINT;
const TAG_ID = (2 << 3) | WIRE_LEN;
const TAG_TS = (3 << 3) | WIRE_VARINT;
const TAG_SOURCE = (4 << 3) | WIRE_LEN;
const TAG_DEVICE = (5 << 3) | WIRE_LEN;
const TAG_TOPIC = (6 << 3) | WIRE_LEN;
const TAG_PAYLOAD = (7 << 3) | WIRE_LEN;
const TAG_CONTENT_TYPE = (8 << 3) | WIRE_LEN;
const TAG_ATTRIBUTES = (9 << 3) | WIRE_LEN;
const TAG_MAP_KEY = (1 << 3) | WIRE_LEN;
const TAG_MAP_VALUE = (2 << 3) | WIRE_LEN;

export function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

export function writeVarint(buf: Buffer, pos: number, n: number): number {
  // Numbers up to 2^53 stay exact in doubles, so no BigInt is needed for ms timestamps or seqs.
  while (n >= 128) {
    buf[pos++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

function writeString(buf: Buffer, pos: number, tag: number, s: string, len: number): number {
  buf[pos++] = tag;
  pos = writeVarint(buf, pos, len);
  return pos + buf.write(s, pos, len, 'utf8');
}

function lenField(len: number): number {
  return 1 + varintSize(len) + len;
}

/**
 * Encodes `rec` into a new buffer with `headroom` bytes left free at the front, so the journal
 * can write its value header in place and store the record without a second copy.
 */
export function encodeRecord(rec: RecordInput, headroom = 0): Buffer {
  const sourceLen = Buffer.byteLength(rec.source);
  const deviceLen = Buffer.byteLength(rec.device);
  const topicLen = Buffer.byteLength(rec.topic);
  const payloadLen = rec.payload.length;
  const ctLen = rec.contentType ? Buffer.byteLength(rec.contentType) : 0;
  let size = 1 + varintSize(rec.ts) + lenField(sourceLen) + lenField(deviceLen) + lenField(topicLen);
  size += lenField(payloadLen);
  if (ctLen > 0) size += lenField(ctLen);
  let attrs: string[] | undefined;
  if (rec.attributes) {
    attrs = Object.keys(rec.attributes);
    for (const k of attrs) size += lenField(attributeEntrySize(k, rec.attributes[k]));
  }
  const buf = Buffer.allocUnsafe(headroom + size);
  let pos = headroom;
  buf[pos++] = TAG_TS;
  pos = writeVarint(buf, pos, rec.ts);
  pos = writeString(buf, pos, TAG_SOURCE, rec.source, sourceLen);
  pos = writeString(buf, pos, TAG_DEVICE, rec.device, deviceLen);
  pos = writeString(buf, pos, TAG_TOPIC, rec.topic, topicLen);
  buf[pos++] = TAG_PAYLOAD;
  pos = writeVarint(buf, pos, payloadLen);
  pos += rec.payload.copy(buf, pos);
  if (ctLen > 0) pos = writeString(buf, pos, TAG_CONTENT_TYPE, rec.contentType!, ctLen);
  if (attrs && rec.attributes) {
    for (const k of attrs) {
      const v = rec.attributes[k];
      const kLen = Buffer.byteLength(k);
      const vLen = Buffer.byteLength(v);
      buf[pos++] = TAG_ATTRIBUTES;
      pos = writeVarint(buf, pos, lenField(kLen) + lenField(vLen));
      pos = writeString(buf, pos, TAG_MAP_KEY, k, kLen);
      pos = writeString(buf, pos, TAG_MAP_VALUE, v, vLen);
    }
  }
  return buf;
}

function attributeEntrySize(k: string, v: string): number {
  return lenField(Buffer.byteLength(k)) + lenField(Buffer.byteLength(v));
}

export class RecordDecodeError extends Error {
  readonly code = 'EF_RECORD_DECODE';
}

function readVarint(buf: Buffer, state: { pos: number }): number {
  let result = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (state.pos >= buf.length) throw new RecordDecodeError('truncated varint');
    const b = buf[state.pos++];
    result += (b & 127) * mul;
    if (b < 128) return result;
    mul *= 128;
  }
  throw new RecordDecodeError('varint too long');
}

/** Decodes a stored body (or a full `Record` message; `seq`/`id` are skipped). */
export function decodeRecord(body: Buffer): DecodedRecord {
  const attributes: Record<string, string> = {};
  const f = new RecordFieldSpans().scan(body, (entry) => decodeAttribute(entry, attributes));
  return {
    ts: f.ts,
    source: body.toString('utf8', f.sourceStart, f.sourceEnd),
    device: body.toString('utf8', f.deviceStart, f.deviceEnd),
    topic: body.toString('utf8', f.topicStart, f.topicEnd),
    payload: f.payloadEnd > f.payloadStart ? body.subarray(f.payloadStart, f.payloadEnd) : EMPTY,
    contentType: body.toString('utf8', f.contentTypeStart, f.contentTypeEnd),
    attributes,
  };
}

function decodeAttribute(entry: Buffer, into: Record<string, string>): void {
  const st = { pos: 0 };
  let key = '';
  let value = '';
  while (st.pos < entry.length) {
    const tag = readVarint(entry, st);
    const len = readVarint(entry, st);
    const s = entry.toString('utf8', st.pos, st.pos + len);
    st.pos += len;
    if (tag === TAG_MAP_KEY) key = s;
    else if (tag === TAG_MAP_VALUE) value = s;
  }
  into[key] = value;
}

/** Reads only the topic of a stored body, without decoding the rest (route filtering). */
export function readTopic(body: Buffer): string {
  const st = { pos: 0 };
  while (st.pos < body.length) {
    const tag = readVarint(body, st);
    if ((tag & 7) === WIRE_VARINT) {
      readVarint(body, st);
      continue;
    }
    const len = readVarint(body, st);
    if (tag === TAG_TOPIC) return body.toString('utf8', st.pos, st.pos + len);
    st.pos += len;
  }
  return '';
}

/**
 * The first byte of a stored body's topic, or -1 when the topic is empty or absent (a malformed
 * body too: it never throws). Skips the fields before the topic without decoding them or
 * allocating, so a router can tell `$` topics apart for every record of a batch.
 */
export function topicFirstByte(body: Buffer): number {
  const end = body.length;
  let pos = 0;
  while (pos < end) {
    let tag = 0;
    let mul = 1;
    let b: number;
    do {
      if (pos >= end) return -1;
      b = body[pos++];
      tag += (b & 127) * mul;
      mul *= 128;
    } while (b >= 128);
    const wire = tag & 7;
    if (wire === WIRE_VARINT) {
      while (pos < end && body[pos++] >= 128);
      continue;
    }
    if (wire !== WIRE_LEN) return -1;
    let len = 0;
    mul = 1;
    do {
      if (pos >= end) return -1;
      b = body[pos++];
      len += (b & 127) * mul;
      mul *= 128;
    } while (b >= 128);
    if (tag === TAG_TOPIC) return len > 0 && pos < end ? body[pos] : -1;
    pos += len;
  }
  return -1;
}

const EMPTY = Buffer.alloc(0);

/**
 * Where each field of a stored body lies, for encoders that copy bytes instead of decoding to
 * strings. A field absent from the body has start === end. Reused across records by its owner.
 */
export class RecordFieldSpans {
  ts = 0;
  sourceStart = 0;
  sourceEnd = 0;
  deviceStart = 0;
  deviceEnd = 0;
  topicStart = 0;
  topicEnd = 0;
  payloadStart = 0;
  payloadEnd = 0;
  contentTypeStart = 0;
  contentTypeEnd = 0;
  hasAttributes = false;
  private readonly st = { pos: 0 };

  /**
   * Scans `body`; throws RecordDecodeError if it is not a well-formed record. Each attribute
   * entry (a map entry message) goes to `onAttribute` when given.
   */
  scan(body: Buffer, onAttribute?: (entry: Buffer) => void): this {
    this.ts = 0;
    this.sourceStart = this.sourceEnd = 0;
    this.deviceStart = this.deviceEnd = 0;
    this.topicStart = this.topicEnd = 0;
    this.payloadStart = this.payloadEnd = 0;
    this.contentTypeStart = this.contentTypeEnd = 0;
    this.hasAttributes = false;
    const st = this.st;
    st.pos = 0;
    while (st.pos < body.length) {
      const tag = readVarint(body, st);
      const wire = tag & 7;
      if (wire === WIRE_VARINT) {
        const v = readVarint(body, st);
        if (tag === TAG_TS) this.ts = v;
        continue;
      }
      if (wire !== WIRE_LEN) throw new RecordDecodeError(`unsupported wire type ${wire}`);
      const len = readVarint(body, st);
      const start = st.pos;
      const end = start + len;
      if (end > body.length) throw new RecordDecodeError('truncated field');
      st.pos = end;
      switch (tag) {
        case TAG_SOURCE:
          this.sourceStart = start;
          this.sourceEnd = end;
          break;
        case TAG_DEVICE:
          this.deviceStart = start;
          this.deviceEnd = end;
          break;
        case TAG_TOPIC:
          this.topicStart = start;
          this.topicEnd = end;
          break;
        case TAG_PAYLOAD:
          this.payloadStart = start;
          this.payloadEnd = end;
          break;
        case TAG_CONTENT_TYPE:
          this.contentTypeStart = start;
          this.contentTypeEnd = end;
          break;
        case TAG_ATTRIBUTES:
          this.hasAttributes = true;
          onAttribute?.(body.subarray(start, end));
          break;
        default:
          break;
      }
    }
    return this;
  }
}

/** Record id: stable across retries and restarts, the key upstream can deduplicate on. */
export function recordId(epoch: string, seq: number): string {
  return `${epoch}-${seq}`;
}

/**
 * The bytes of fields 1 (`seq`) and 2 (`id`) that, written before a stored body, make a complete
 * `edgeferry.v1.Record` message.
 */
export function recordPrefix(epoch: string, seq: number): Buffer {
  const id = recordId(epoch, seq);
  const idLen = Buffer.byteLength(id);
  const buf = Buffer.allocUnsafe(1 + varintSize(seq) + lenField(idLen));
  let pos = 0;
  buf[pos++] = TAG_SEQ;
  pos = writeVarint(buf, pos, seq);
  writeString(buf, pos, TAG_ID, id, idLen);
  return buf;
}
