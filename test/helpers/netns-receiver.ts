// The upstream for the link-fault test, run inside its network namespace (`ip netns exec NS node
// test/helpers/netns-receiver.ts http|grpc HOST`): a process of its own, since a server in the
// test process would live in the root namespace. It tells the test what it accepted on stdout,
// one JSON line per accepted call: `{"s":[seq,...],"p":[n,...]}`, where n is the number in each
// record's payload (`m<n> ...`). The first line is `{"port":P}`.

import { createServer } from 'node:http';
import { GrpcIngestReceiver, type IngestedRecord } from '../../bench/receivers/grpc-ingest-receiver.ts';

const [kind, host] = process.argv.slice(2);

function report(seqs: number[], payloads: string[]): void {
  // Written before the answer goes out: what the daemon saw acknowledged was reported first.
  process.stdout.write(
    `${JSON.stringify({ s: seqs, p: payloads.map((t) => Number.parseInt(t.slice(1), 10)) })}\n`,
  );
}

if (kind === 'http') {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const seqs: number[] = [];
      const payloads: string[] = [];
      for (const line of Buffer.concat(chunks).toString('utf8').split('\n')) {
        if (line.length === 0) continue;
        const r = JSON.parse(line) as { seq: number; payload: string };
        seqs.push(r.seq);
        payloads.push(r.payload);
      }
      report(seqs, payloads);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
    });
  });
  server.listen(0, host, () => {
    const addr = server.address();
    process.stdout.write(`${JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : 0 })}\n`);
  });
} else if (kind === 'grpc') {
  // The reference receiver drops redeliveries before onRecord; the test counts them from `dup`.
  let batch: IngestedRecord[] = [];
  const rx = new GrpcIngestReceiver({
    host,
    keep: false,
    onRecord: (r) => {
      if (batch.length === 0) setImmediate(flush);
      batch.push(r);
    },
  });
  let dupReported = 0;
  const flush = (): void => {
    const b = batch;
    batch = [];
    report(
      b.map((r) => r.seq),
      b.map((r) => r.payload.toString('utf8')),
    );
    if (rx.duplicates !== dupReported) {
      dupReported = rx.duplicates;
      process.stdout.write(`${JSON.stringify({ dup: dupReported })}\n`);
    }
  };
  await rx.start(0);
  process.stdout.write(`${JSON.stringify({ port: rx.port })}\n`);
} else {
  process.stderr.write(`usage: netns-receiver.ts http|grpc HOST (got ${kind})\n`);
  process.exit(2);
}
