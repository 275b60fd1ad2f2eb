import { crc32 } from 'node:zlib';

// A record value: a fixed header written in the headroom `encodeRecord` leaves, then the body.
//
//   0  u32  crc32 of bytes 4..end
//   4  f64  cumulative journal bytes before this record (bytes of a range = difference of two
//           of these, so trimming and budgets never count by scanning)
//   12 f64  ingest ts (ms), for TTL without decoding the body
//   20      body: protobuf fields 3..9 of edgeferry.v1.Record

export const VALUE_HEADER_BYTES = 20;

export function sealValue(value: Buffer, cumBefore: number, ts: number): void {
  value.writeDoubleBE(cumBefore, 4);
  value.writeDoubleBE(ts, 12);
  value.writeUInt32BE(crc32(value.subarray(4)), 0);
}

export function valueIntact(value: Buffer): boolean {
  return value.length >= VALUE_HEADER_BYTES && value.readUInt32BE(0) === crc32(value.subarray(4));
}

export function valueCum(value: Buffer): number {
  return value.readDoubleBE(4);
}

export function valueTs(value: Buffer): number {
  return value.readDoubleBE(12);
}

export function valueBody(value: Buffer): Buffer {
  return value.subarray(VALUE_HEADER_BYTES);
}
