// Where a paced QoS 1 message's end-to-end time goes. Runs the gateway in this process (so its
// journal and sink can be timed from outside, without instrumenting src/) with one HTTP sink to a
// receiver on this thread, and sends paced QoS 1 load from a worker thread (its own event loop).
// Each record is stamped at four points:
//
//   sent     the generator's send time, from the payload's first 8 bytes
//   append   the MQTT source hands it to the journal (aedes has parsed and authorized it)
//   commit   its group commit is on disk (the append callback)
//   send     the dispatcher passes its batch to the HTTP sink
//   arrive   the receiver has read the request carrying it
//
// and the gaps between them are printed as percentiles, then the records slower than the e2e
// p99 split by stage (mean ms), and the share of those whose flight overlapped a GC pause
// (perf_hooks 'gc' entries) or an event-loop delay. The receiver shares the gateway's thread, as
// the in-process sink shares it in no deployment: read its stage as an upper bound.
//
//   node bench/tools/latency-stages.ts [rate=20000] [seconds=6] [lingerMs=5] [maxDelayMs=0]

import { createServer } from 'node:http';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import type { AppendCallback, RecordAppender } from '../../src/core/pipeline.ts';
import type { RecordInput } from '../../src/core/record.ts';
import { startInProcessGateway } from '../lib/in-process-gateway.ts';
import { nowMs } from '../lib/mqtt-codec.ts';
import { LOAD_DEFAULTS, prepareLoadInWorker } from '../lib/mqtt-load.ts';
import { freePort, makeTempDir, removeTempDir } from '../lib/proc.ts';

const rate = Number(process.argv[2] ?? 20_000);
const seconds = Number(process.argv[3] ?? 6);
const lingerMs = Number(process.argv[4] ?? 5);
const maxDelayMs = Number(process.argv[5] ?? 0);
const publishers = 4;

const STAGES = ['sent→append', 'append→commit', 'commit→send', 'send→arrive', 'e2e'] as const;
/** Per record seq: sent, append, commit, send, arrive (ms, performance time origin based). */
const stamps = new Map<number, Float64Array>();
let measuring = false;

const SEQ = Buffer.from('"seq":');
const dir = makeTempDir('edgeferry-stages-');
const receiver = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const t = nowMs();
    res.end();
    if (!measuring) return;
    const body = Buffer.concat(chunks);
    for (let i = body.indexOf(SEQ); i !== -1; i = body.indexOf(SEQ, i + 6)) {
      const s = stamps.get(Number.parseInt(body.toString('latin1', i + 6, i + 26), 10));
      if (s !== undefined) s[4] = t;
    }
  });
});
const rxPort = await freePort();
receiver.listen(rxPort, '127.0.0.1');
const { gateway, mqttPort } = await startInProcessGateway({
  dir,
  sinkUrl: `http://127.0.0.1:${rxPort}/ingest`,
  lingerMs: lingerMs,
  journal: { fsync: false, groupCommit: { maxDelayMs } },
  name: 'stages',
});

// Reached through private fields on purpose: the timing stays out of src/.
const inner = gateway as unknown as {
  journal: RecordAppender;
  dispatchers: { sink: { send(b: { records: { seq: number }[] }, s: AbortSignal): Promise<void> } }[];
};
const journal = inner.journal;
const append = journal.append.bind(journal);
journal.append = <S>(rec: RecordInput, cb: AppendCallback<S> | null, state: S): void => {
  if (!measuring || cb === null) {
    append(rec, cb, state);
    return;
  }
  const sent = rec.payload.readDoubleBE(0);
  const at = nowMs();
  append(
    rec,
    (err, seq, st) => {
      if (err === null) stamps.set(seq, Float64Array.of(sent, at, nowMs(), 0, 0));
      cb(err, seq, st);
    },
    state,
  );
};
const sink = inner.dispatchers[0].sink;
const send = sink.send.bind(sink);
sink.send = (batch, signal) => {
  const t = nowMs();
  for (const r of batch.records) {
    const s = stamps.get(r.seq);
    if (s !== undefined) s[3] = t;
  }
  return send(batch, signal);
};

const pauses: [number, number][] = [];
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) pauses.push([performance.timeOrigin + e.startTime, e.duration]);
});
const loopDelay = monitorEventLoopDelay({ resolution: 1 });

const load = async (perPublisher: number) => {
  const run = await prepareLoadInWorker({
    ...LOAD_DEFAULTS,
    port: mqttPort,
    publishers,
    messages: perPublisher,
    inflight: 1000,
    rate: rate / publishers,
  });
  return run.go();
};
await load(Math.round((rate * 2) / publishers)); // warm-up: JIT and heap sizing, not measured
measuring = true;
gcObserver.observe({ entryTypes: ['gc'] });
loopDelay.enable();
const result = await load(Math.round((rate * seconds) / publishers));
await new Promise((r) => setTimeout(r, 500)); // the last batches arrive
measuring = false;
gcObserver.disconnect();
loopDelay.disable();

const rows = [...stamps.values()].filter((s) => s[4] > 0);
const gap = (s: Float64Array, k: number): number => (k === 4 ? s[4] - s[0] : s[k + 1] - s[k]);
const pct = (xs: number[], p: number): number => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))];
console.log(
  `${result.acked} QoS 1 messages at ${rate} msg/s over ${publishers} publishers, lingerMs ${lingerMs}, ` +
    `groupCommit.maxDelayMs ${maxDelayMs}; ${rows.length} records timed end to end (ms)`,
);
console.log(
  `${'stage'.padEnd(14)}${['p50', 'p90', 'p99', 'p99.9', 'max'].map((h) => h.padStart(9)).join('')}`,
);
for (let k = 0; k < STAGES.length; k++) {
  const xs = rows.map((s) => gap(s, k)).sort((a, b) => a - b);
  const cells = [0.5, 0.9, 0.99, 0.999].map((p) => pct(xs, p)).concat(xs[xs.length - 1]);
  console.log(`${STAGES[k].padEnd(14)}${cells.map((v) => v.toFixed(2).padStart(9)).join('')}`);
}
const e2e = rows.map((s) => s[4] - s[0]).sort((a, b) => a - b);
const p99 = pct(e2e, 0.99);
const slow = rows.filter((s) => s[4] - s[0] >= p99);
const overlapsGc = (s: Float64Array) => pauses.some(([t, d]) => t < s[4] && t + d > s[0]);
console.log(`\nthe ${slow.length} records at or above e2e p99 (${p99.toFixed(2)} ms), mean ms per stage:`);
console.log(
  STAGES.slice(0, 4)
    .map((name, k) => `${name} ${(slow.reduce((a, s) => a + gap(s, k), 0) / slow.length).toFixed(2)}`)
    .join(', '),
);
const gcMs = pauses.reduce((a, [, d]) => a + d, 0);
console.log(
  `in flight during a GC pause: ${((100 * slow.filter(overlapsGc).length) / slow.length).toFixed(0)} % of those, ` +
    `${((100 * rows.filter(overlapsGc).length) / rows.length).toFixed(0)} % of all; ` +
    `GC: ${pauses.length} pauses, ${gcMs.toFixed(0)} ms (${((100 * gcMs) / (seconds * 1000)).toFixed(1)} % of the run), ` +
    `longest ${Math.max(0, ...pauses.map(([, d]) => d)).toFixed(1)} ms`,
);
console.log(
  `event-loop delay (gateway + receiver thread): p50 ${(loopDelay.percentile(50) / 1e6).toFixed(2)}, ` +
    `p99 ${(loopDelay.percentile(99) / 1e6).toFixed(2)}, max ${(loopDelay.max / 1e6).toFixed(1)} ms`,
);
await gateway.stop();
receiver.close();
removeTempDir(dir);
process.exit(0);
