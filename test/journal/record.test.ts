import { describe, expect, it } from 'vitest';
import {
  decodeRecord,
  encodeRecord,
  RecordDecodeError,
  type RecordInput,
  readTopic,
  recordId,
  recordPrefix,
} from '../../src/core/record.ts';

const base: RecordInput = {
  ts: 1_717_171_717_171,
  source: 'mqtt',
  device: 'plc-7',
  topic: 'plant/line-1/temp',
  payload: Buffer.from('{"c":21.5}'),
};

/** Reads a protobuf varint at `pos`; returns [value, next pos]. Independent of the code under test. */
function varint(buf: Buffer, pos: number): [number, number] {
  let value = 0;
  let mul = 1;
  for (;;) {
    const b = buf[pos++];
    value += (b & 0x7f) * mul;
    if (b < 0x80) return [value, pos];
    mul *= 128;
  }
}

/** Splits a message into its top-level fields, [field number, wire type, varint or bytes]. */
function fields(buf: Buffer): [number, number, number | Buffer][] {
  const out: [number, number, number | Buffer][] = [];
  let pos = 0;
  while (pos < buf.length) {
    const [tag, p1] = varint(buf, pos);
    if ((tag & 7) === 0) {
      const [v, p2] = varint(buf, p1);
      out.push([tag >> 3, 0, v]);
      pos = p2;
    } else {
      const [len, p2] = varint(buf, p1);
      out.push([tag >> 3, 2, buf.subarray(p2, p2 + len)]);
      pos = p2 + len;
    }
  }
  return out;
}

describe('encodeRecord / decodeRecord', () => {
  it('round-trips every field, attributes included', () => {
    const rec: RecordInput = {
      ...base,
      contentType: 'application/json',
      attributes: { unit: '3', register: '40001', empty: '', ключ: 'значение' },
    };
    const d = decodeRecord(encodeRecord(rec));
    expect(d.ts).toBe(rec.ts);
    expect(d.source).toBe('mqtt');
    expect(d.device).toBe('plc-7');
    expect(d.topic).toBe('plant/line-1/temp');
    expect(d.payload.equals(rec.payload)).toBe(true);
    expect(d.contentType).toBe('application/json');
    expect(d.attributes).toEqual({ unit: '3', register: '40001', empty: '', ключ: 'значение' });
  });

  it('defaults contentType and attributes when absent', () => {
    const d = decodeRecord(encodeRecord(base));
    expect(d.contentType).toBe('');
    expect(d.attributes).toEqual({});
    expect(fields(encodeRecord(base)).map((f) => f[0])).toEqual([3, 4, 5, 6, 7]);
  });

  it('keeps a unicode topic, device and source intact', () => {
    const rec = { ...base, source: 'cøap', device: 'gerät-µ', topic: 'sensors/温度/😀/ü' };
    const body = encodeRecord(rec);
    const d = decodeRecord(body);
    expect(d.topic).toBe('sensors/温度/😀/ü');
    expect(d.device).toBe('gerät-µ');
    expect(d.source).toBe('cøap');
    expect(readTopic(body)).toBe('sensors/温度/😀/ü');
  });

  it('round-trips an empty payload (and empty strings)', () => {
    const d = decodeRecord(encodeRecord({ ...base, payload: Buffer.alloc(0), device: '', topic: '' }));
    expect(d.payload.length).toBe(0);
    expect(d.device).toBe('');
    expect(d.topic).toBe('');
    expect(d.ts).toBe(base.ts);
  });

  it('round-trips a binary payload with every byte value', () => {
    const payload = Buffer.from(Array.from({ length: 512 }, (_, i) => i % 256));
    const d = decodeRecord(encodeRecord({ ...base, payload }));
    expect(d.payload.equals(payload)).toBe(true);
  });

  it.each([
    0,
    127,
    128,
    16_383,
    16_384,
    2 ** 32,
    4_102_444_800_000,
    8_640_000_000_000_000 / 1000,
    Number.MAX_SAFE_INTEGER,
  ])('round-trips ts %d exactly', (ts) => {
    expect(decodeRecord(encodeRecord({ ...base, ts })).ts).toBe(ts);
  });

  it('leaves the requested headroom in front and encodes the body after it', () => {
    const plain = encodeRecord(base);
    const withRoom = encodeRecord(base, 20);
    expect(withRoom.length).toBe(plain.length + 20);
    expect(withRoom.subarray(20).equals(plain)).toBe(true);
  });

  it('encodes a 1 MiB payload', () => {
    const payload = Buffer.alloc(1024 * 1024, 0xab);
    const d = decodeRecord(encodeRecord({ ...base, payload }));
    expect(d.payload.equals(payload)).toBe(true);
  });
});

describe('readTopic', () => {
  it('returns the topic without decoding the rest', () => {
    expect(readTopic(encodeRecord(base))).toBe('plant/line-1/temp');
    expect(readTopic(encodeRecord({ ...base, attributes: { a: 'b' }, contentType: 'text/plain' }))).toBe(
      'plant/line-1/temp',
    );
  });

  it('returns the empty string for an empty topic or an empty body', () => {
    expect(readTopic(encodeRecord({ ...base, topic: '' }))).toBe('');
    expect(readTopic(Buffer.alloc(0))).toBe('');
  });

  it('finds the topic behind the seq/id prefix', () => {
    const full = Buffer.concat([recordPrefix('abc', 99), encodeRecord(base)]);
    expect(readTopic(full)).toBe('plant/line-1/temp');
  });
});

describe('recordPrefix', () => {
  it('writes fields 1 (seq) and 2 (id = epoch-seq)', () => {
    const prefix = recordPrefix('a1b2c3d4e5f6', 300);
    expect(fields(prefix)).toEqual([
      [1, 0, 300],
      [2, 2, Buffer.from('a1b2c3d4e5f6-300')],
    ]);
    expect(recordId('a1b2c3d4e5f6', 300)).toBe('a1b2c3d4e5f6-300');
  });

  it.each([1, 127, 128, 1_000_000, 2 ** 40])('prefix + body decodes as a full Record (seq %d)', (seq) => {
    const rec: RecordInput = { ...base, contentType: 'application/json', attributes: { k: 'v' } };
    const body = encodeRecord(rec);
    const full = Buffer.concat([recordPrefix('ep0ch', seq), body]);
    expect(decodeRecord(full)).toEqual(decodeRecord(body));
    const d = decodeRecord(full);
    expect(d.topic).toBe(rec.topic);
    expect(d.attributes).toEqual({ k: 'v' });
    const f = fields(full);
    expect(f[0]).toEqual([1, 0, seq]);
    expect(f[1]).toEqual([2, 2, Buffer.from(`ep0ch-${seq}`)]);
    expect(f.slice(2).map((x) => x[0])).toEqual([3, 4, 5, 6, 7, 8, 9]);
  });
});

describe('decoding a damaged body', () => {
  const body = encodeRecord({ ...base, contentType: 'text/plain', attributes: { unit: '1' } });

  it('throws RecordDecodeError when cut inside the payload', () => {
    const payloadStart = body.indexOf(base.payload);
    expect(payloadStart).toBeGreaterThan(0);
    const cut = body.subarray(0, payloadStart + 3);
    expect(() => decodeRecord(cut)).toThrow(RecordDecodeError);
    try {
      decodeRecord(cut);
    } catch (err) {
      expect((err as RecordDecodeError).code).toBe('EF_RECORD_DECODE');
    }
  });

  it('throws RecordDecodeError when cut inside the ts varint', () => {
    // Byte 0 is the ts tag; a 41-bit ms timestamp takes six varint bytes.
    expect(() => decodeRecord(body.subarray(0, 3))).toThrow(RecordDecodeError);
  });

  it('throws RecordDecodeError for every cut that is not on a field boundary', () => {
    // Where each top-level field ends: a cut exactly there leaves a valid, shorter message.
    const boundaries = new Set<number>([0]);
    for (let pos = 0; pos < body.length; ) {
      const [tag, p1] = varint(body, pos);
      const [v, p2] = varint(body, p1);
      pos = (tag & 7) === 0 ? p2 : p2 + v;
      boundaries.add(pos);
    }
    expect(boundaries.has(body.length)).toBe(true);
    let thrown = 0;
    for (let n = 1; n < body.length; n++) {
      const cut = body.subarray(0, n);
      if (boundaries.has(n)) {
        expect(() => decodeRecord(cut)).not.toThrow();
      } else {
        expect(() => decodeRecord(cut), `cut at ${n}`).toThrow(RecordDecodeError);
        thrown++;
      }
    }
    expect(thrown).toBeGreaterThan(body.length / 2);
  });

  it('throws RecordDecodeError for an unsupported wire type', () => {
    // Field 10, wire type 5 (fixed32).
    expect(() => decodeRecord(Buffer.concat([body, Buffer.from([(10 << 3) | 5, 0, 0, 0, 0])]))).toThrow(
      RecordDecodeError,
    );
  });
});
