// The journal alone, in process: fills a fresh journal of the checkout at argv[2] (this one by
// default, or another worktree, to compare two layouts) with argv[3] records of 200 B payload in
// bursts of 400 appends (4 publishers x 100 in flight), reads them all back from disk, closes it
// and prints the rates, the accounted bytes and `du -sb` of the directory.
// Usage: [JOURNAL_FILL_RANDOM=1] node bench/tools/journal-fill.ts [checkout] [records]
// JOURNAL_FILL_RANDOM=1: incompressible payloads (else Buffer.alloc(200, i), which LevelDB's
// snappy compresses well).

import { execSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const checkout = resolve(process.argv[2] ?? join(fileURLToPath(import.meta.url), '../../..'));
const total = Number(process.argv[3] ?? 300_000);
const random = process.env.JOURNAL_FILL_RANDOM === '1';
const { Journal } = await import(join(checkout, 'src/journal/journal.ts'));
const dir = mkdtempSync(join(tmpdir(), 'edgeferry-journal-fill-'));
const noop = (): void => {};
const log = { debug: noop, info: noop, warn: noop, error: noop };
const j = await Journal.open(
  {
    path: join(dir, 'j'),
    maxBytes: 2 ** 34,
    onFull: 'reject',
    fsync: false,
    groupCommit: { maxRecords: 4096, maxDelayMs: 0 },
    lockWaitMs: 0,
  },
  log,
);
const t0 = performance.now();
for (let i = 0; i < total; ) {
  const n = Math.min(400, total - i);
  await new Promise<void>((done, fail) => {
    let left = n;
    for (let k = 0; k < n; k++, i++) {
      const payload = random ? randomBytes(200) : Buffer.alloc(200, i);
      const rec = {
        ts: Date.now(),
        source: 'mqtt',
        device: `pub-${i % 4}`,
        topic: `bench/${i % 4}`,
        payload,
      };
      j.append(
        rec,
        (err: Error | null) => {
          if (err) fail(err);
          else if (--left === 0) done();
        },
        null,
      );
    }
  });
}
const appendMs = performance.now() - t0;
const accounted = j.bytes();
const t1 = performance.now();
let read = 0;
for (let next = 1; next <= j.lastCommittedSeq; ) {
  const b = await j.readBatch(next, 1000, 1 << 20);
  read += b.records.length;
  next = b.next;
}
const readMs = performance.now() - t1;
await j.close();
const du = Number(
  execSync(`du -sb ${join(dir, 'j')}`)
    .toString()
    .split('\t')[0],
);
rmSync(dir, { recursive: true, force: true });
process.stdout.write(
  `${JSON.stringify({
    checkout,
    records: total,
    appendMsgPerS: Math.round(total / (appendMs / 1000)),
    readMsgPerS: Math.round(read / (readMs / 1000)),
    accountedBytes: accounted,
    du,
    duPerRecord: +(du / total).toFixed(1),
  })}\n`,
);
