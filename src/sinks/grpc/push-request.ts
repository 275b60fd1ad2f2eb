import type { OutboundBatch } from '../../core/pipeline.ts';
import { recordPrefix, varintSize, writeVarint } from '../../core/record.ts';

const TAG_NODE = (1 << 3) | 2;
const TAG_RECORDS = (2 << 3) | 2;

/**
 * `edgeferry.v1.PushRequest` built by hand around the journal's stored record bodies: each
 * `Record` is the seq/id prefix followed by the stored bytes, so nothing is decoded or
 * re-encoded on the way out.
 */
export function encodePushRequest(node: string, batch: OutboundBatch): Buffer {
  const nodeLen = Buffer.byteLength(node);
  const prefixes: Buffer[] = new Array(batch.records.length);
  let size = 1 + varintSize(nodeLen) + nodeLen;
  for (let i = 0; i < batch.records.length; i++) {
    const r = batch.records[i];
    const p = recordPrefix(batch.epoch, r.seq);
    prefixes[i] = p;
    const len = p.length + r.body.length;
    size += 1 + varintSize(len) + len;
  }
  const buf = Buffer.allocUnsafe(size);
  let pos = 0;
  buf[pos++] = TAG_NODE;
  pos = writeVarint(buf, pos, nodeLen);
  pos += buf.write(node, pos, nodeLen, 'utf8');
  for (let i = 0; i < batch.records.length; i++) {
    const body = batch.records[i].body;
    const p = prefixes[i];
    buf[pos++] = TAG_RECORDS;
    pos = writeVarint(buf, pos, p.length + body.length);
    pos += p.copy(buf, pos);
    pos += body.copy(buf, pos);
  }
  return buf;
}
