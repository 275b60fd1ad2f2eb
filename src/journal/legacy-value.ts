import { crc32 } from 'node:zlib';

// A record value of the layout before chunks (one key 'r' seq per record), read only to migrate
// a journal of that layout into chunks at open (migrate.ts). Nothing writes it any more; the
// test fixture of the old format does (test/journal/legacy-layout.ts).
//
//   0  u32  crc32 of bytes 4..end
//   4  f64  cumulative journal bytes before this record
//   12 f64  ingest ts (ms)
//   20      body: protobuf fields 3..9 of edgeferry.v1.Record

export const VALUE_HEADER_BYTES = 20;

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
