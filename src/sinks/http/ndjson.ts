import type { OutboundBatch } from '../../core/pipeline.ts';
import { decodeRecord, recordId } from '../../core/record.ts';

export type PayloadEncoding = 'base64' | 'utf8';

/**
 * One JSON object per line: `id`, `seq`, `ts`, `source`, `device`, `topic`, `contentType`,
 * `payload` (base64, or text with `utf8`). Field order is fixed so receivers may diff bodies.
 */
export function encodeNdjson(batch: OutboundBatch, payloadEncoding: PayloadEncoding): Buffer {
  const lines: string[] = new Array(batch.records.length);
  for (let i = 0; i < batch.records.length; i++) {
    const r = batch.records[i];
    const d = decodeRecord(r.body);
    const payload =
      payloadEncoding === 'utf8'
        ? JSON.stringify(d.payload.toString('utf8'))
        : `"${d.payload.toString('base64')}"`;
    lines[i] =
      `{"id":"${recordId(batch.epoch, r.seq)}","seq":${r.seq},"ts":${d.ts},"source":${JSON.stringify(d.source)},` +
      `"device":${JSON.stringify(d.device)},"topic":${JSON.stringify(d.topic)},"contentType":${JSON.stringify(d.contentType)},` +
      `"payload":${payload}${attributesJson(d.attributes)}}\n`;
  }
  return Buffer.from(lines.join(''));
}

function attributesJson(attrs: Record<string, string>): string {
  for (const _ in attrs) return `,"attributes":${JSON.stringify(attrs)}`;
  return '';
}
