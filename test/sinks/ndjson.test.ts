// The NDJSON body is written byte by byte from stored records; JSON.stringify over the decoded
// fields is the reference it must equal exactly, for awkward input too.

import { describe, expect, it } from 'vitest';
import { decodeRecord, encodeRecord, type RecordInput } from '../../src/core/record.ts';
import { encodeNdjson, type PayloadEncoding } from '../../src/sinks/http/ndjson.ts';

const EPOCH = '0a1b2c3d4e5f';

function reference(records: { seq: number; body: Buffer }[], enc: PayloadEncoding): string {
  return records
    .map(({ seq, body }) => {
      const d = decodeRecord(body);
      const line: Record<string, unknown> = {
        id: `${EPOCH}-${seq}`,
        seq,
        ts: d.ts,
        source: d.source,
        device: d.device,
        topic: d.topic,
        contentType: d.contentType,
        payload: enc === 'utf8' ? d.payload.toString('utf8') : d.payload.toString('base64'),
      };
      if (Object.keys(d.attributes).length > 0) line.attributes = d.attributes;
      return `${JSON.stringify(line)}\n`;
    })
    .join('');
}

const controls = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join('');
const inputs: RecordInput[] = [
  {
    ts: 1_764_000_000_123,
    source: 'mqtt',
    device: 'dev-1',
    topic: 'a/b',
    payload: Buffer.from('{"t":21.5}'),
  },
  {
    ts: 0,
    source: 'coap',
    device: 'quote"back\\slash',
    topic: `ctl/${controls}`,
    payload: Buffer.from(`line1\nline2\t"q"\\ ${controls}\u007f`),
    contentType: 'application/json; charset="utf-8"',
  },
  {
    ts: 2 ** 53 - 1,
    source: 'modbus',
    device: 'plc-ü-日本',
    topic: 'emoji/😀/\u2028\u2029',
    payload: Buffer.from('température 😀 \u2028'),
    attributes: { unit: '°C', 'a"b': 'c\\d\n' },
  },
  // Not UTF-8: a lone continuation byte, a truncated sequence, an overlong encoding.
  {
    ts: 5,
    source: 'mqtt',
    device: '',
    topic: 'bin',
    payload: Buffer.from([0x80, 0x41, 0xe2, 0x82, 0xc0, 0xaf, 0]),
  },
  { ts: 6, source: 'mqtt', device: 'empty', topic: 'e', payload: Buffer.alloc(0) },
  { ts: 7, source: 'mqtt', device: 'big', topic: 'big', payload: Buffer.alloc(70_000, 0x5c) },
];

describe('encodeNdjson', () => {
  for (const enc of ['base64', 'utf8'] as const) {
    it(`equals JSON.stringify of the decoded records (${enc})`, () => {
      const records = inputs.map((rec, i) => ({
        seq: 1_000_000_000 + i * 7,
        ts: rec.ts,
        body: encodeRecord(rec),
      }));
      const out = encodeNdjson({ epoch: EPOCH, records }, enc);
      expect(out.toString('utf8')).toBe(reference(records, enc));
      for (const line of out.toString('utf8').trimEnd().split('\n'))
        expect(() => JSON.parse(line)).not.toThrow();
    });
  }

  it('grows its buffer past the first estimate (a batch of escape-heavy records)', () => {
    const records = Array.from({ length: 200 }, (_, i) => ({
      seq: i + 1,
      ts: 1,
      body: encodeRecord({
        ts: 1,
        source: 'mqtt',
        device: controls,
        topic: controls,
        payload: Buffer.from(controls),
      }),
    }));
    const out = encodeNdjson({ epoch: EPOCH, records }, 'utf8');
    expect(out.toString('utf8')).toBe(reference(records, 'utf8'));
  });
});
