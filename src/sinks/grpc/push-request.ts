import type { OutboundBatch } from '../../core/pipeline.ts';
import { recordPrefix, varintSize, writeVarint } from '../../core/record.ts';

const TAG_NODE = (1 << 3) | 2;
const TAG_RECORDS = (2 << 3) | 2;

/** Bytes of a PushRequest before its records: the `node` field. */
export function pushHeadSize(node: string): number {
  const nodeLen = Buffer.byteLength(node);
  return 1 + varintSize(nodeLen) + nodeLen;
}

/**
 * Bytes one record adds to a PushRequest (field tag, length, seq/id prefix, stored body):
 * what `encodePushRequest` writes for it, computed without building the prefix.
 */
export function pushRecordSize(epochBytes: number, seq: number, bodyBytes: number): number {
  const idLen = epochBytes + 1 + decimalDigits(seq);
  const len = 1 + varintSize(seq) + 1 + varintSize(idLen) + idLen + bodyBytes;
  return 1 + varintSize(len) + len;
}

function decimalDigits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/**
 * `edgeferry.v1.PushRequest` built by hand around the journal's stored record bodies: each
 * `Record` is the seq/id prefix followed by the stored bytes, so nothing is decoded or
 * re-encoded on the way out. `from`/`to` select a slice of the batch (a batch split to fit the
 * upstream's message limit).
 */
export function encodePushRequest(
  node: string,
  batch: OutboundBatch,
  from = 0,
  to = batch.records.length,
): Buffer {
  const nodeLen = Buffer.byteLength(node);
  const prefixes: Buffer[] = new Array(to - from);
  let size = 1 + varintSize(nodeLen) + nodeLen;
  for (let i = from; i < to; i++) {
    const r = batch.records[i];
    const p = recordPrefix(batch.epoch, r.seq);
    prefixes[i - from] = p;
    const len = p.length + r.body.length;
    size += 1 + varintSize(len) + len;
  }
  const buf = Buffer.allocUnsafe(size);
  let pos = 0;
  buf[pos++] = TAG_NODE;
  pos = writeVarint(buf, pos, nodeLen);
  pos += buf.write(node, pos, nodeLen, 'utf8');
  for (let i = from; i < to; i++) {
    const body = batch.records[i].body;
    const p = prefixes[i - from];
    buf[pos++] = TAG_RECORDS;
    pos = writeVarint(buf, pos, p.length + body.length);
    pos += p.copy(buf, pos);
    pos += body.copy(buf, pos);
  }
  return buf;
}
