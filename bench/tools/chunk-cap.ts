// What the journal's chunk size cap (CHUNK_CAP_BYTES, src/journal/chunk.ts) costs: for each cap,
// a fresh LevelDB filled with the same records (200 B payloads, 4 MiB group commits cut into
// chunks of at most `cap`), then the write time per record and the time of a random read of one
// record (tsOnDisk: the reverse seek to its chunk, the checksum, the walk to the record), as a
// reader starting at a seq, tsAt and the budget's and TTL's binary searches pay it.
// Usage: node bench/tools/chunk-cap.ts [records] [caps KiB, comma-separated]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { encodeRecord } from '../../src/core/record.ts';
import {
  buildChunk,
  CHUNK_HEADER_BYTES,
  chunkCumAfter,
  ENTRY_HEADER_BYTES,
} from '../../src/journal/chunk.ts';
import { chunkKey } from '../../src/journal/keys.ts';
import { tsOnDisk } from '../../src/journal/reader.ts';

const total = Number(process.argv[2]) || 200_000;
const caps = (process.argv[3] ?? '16,64,256,1024,4096').split(',').map((k) => Number(k) * 1024);
const GROUP_BYTES = 4 * 1024 * 1024;
const READS = 2000;

const bodies = Array.from({ length: total }, (_, i) =>
  encodeRecord({
    ts: 1_700_000_000_000 + i,
    source: 'mqtt',
    device: `dev-${i % 100}`,
    topic: `bench/${i % 4}`,
    payload: Buffer.alloc(200, i),
  }),
);
const ts = bodies.map((_, i) => 1_700_000_000_000 + i);

process.stdout.write('cap KiB  chunks  write µs/record  random read µs (median, p99)\n');
for (const cap of caps) {
  const dir = mkdtempSync(join(tmpdir(), 'edgeferry-chunk-cap-'));
  const db = new Level<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  let chunks = 0;
  let cum = 0;
  const t0 = performance.now();
  for (let g = 0; g < total; ) {
    const wb = db.batch();
    let groupBytes = 0;
    while (g < total && groupBytes < GROUP_BYTES) {
      let end = g;
      let size = CHUNK_HEADER_BYTES;
      while (end < total && (end === g || size + ENTRY_HEADER_BYTES + bodies[end].length <= cap)) {
        size += ENTRY_HEADER_BYTES + bodies[end].length;
        end++;
      }
      const c = buildChunk(bodies, ts, g, end, g + 1, cum);
      cum = chunkCumAfter(c);
      wb.put(chunkKey(g + 1), c);
      chunks++;
      groupBytes += size;
      g = end;
    }
    await wb.write();
  }
  const writeUs = ((performance.now() - t0) * 1000) / total;
  const times: number[] = [];
  for (let r = 0; r < READS; r++) {
    const seq = 1 + Math.floor(Math.random() * total);
    const s = performance.now();
    const got = await tsOnDisk(db, seq);
    times.push((performance.now() - s) * 1000);
    if (got !== ts[seq - 1]) throw new Error(`seq ${seq}: ts ${got}, want ${ts[seq - 1]}`);
  }
  times.sort((a, b) => a - b);
  const q = (p: number): string => times[Math.floor(p * (times.length - 1))].toFixed(0);
  process.stdout.write(
    `${String(cap / 1024).padStart(7)}  ${String(chunks).padStart(6)}  ${writeUs.toFixed(2).padStart(15)}  ${q(0.5)}, ${q(0.99)}\n`,
  );
  await db.close();
  rmSync(dir, { recursive: true, force: true });
}
