// Where the objects that outlive a scavenge come from. Runs the gateway in this process (so the
// inspector can see its heap) with one HTTP sink to a local receiver, sends paced QoS 1 load
// from a worker thread, and samples allocations with V8's sampling heap profiler keeping the
// objects a minor GC did not collect (promoted, or pretenured straight into old space). Those
// cost the major GCs and the old-space growth that `--trace-gc` shows under load.
//
// `drain`: the receiver refuses (503) while the load runs, and the sampling covers only the
// drain of the backlog that built up, once it answers 200 again.
//
//   node bench/tools/heap-survivors.ts [messages=100000] [rate=20000] [top=15] [live|drain]

import { createServer } from 'node:http';
import { Session } from 'node:inspector/promises';
import { startInProcessGateway } from '../lib/in-process-gateway.ts';
import { LOAD_DEFAULTS, runLoad } from '../lib/mqtt-load.ts';
import { freePort, makeTempDir, removeTempDir } from '../lib/proc.ts';

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

const messages = Number(process.argv[2] ?? 100_000);
const rate = Number(process.argv[3] ?? 20_000);
const top = Number(process.argv[4] ?? 15);
const drain = process.argv[5] === 'drain';
// `all`: every allocation, the scavenged ones too (what sets the scavenge rate).
const all = process.argv[5] === 'all';
const publishers = 4;

const dir = makeTempDir('edgeferry-heap-');
let refusing = false;
let delivered = 0;
const receiver = createServer((req, res) => {
  let lines = 0;
  req.on('data', (c: Buffer) => {
    for (let i = c.indexOf(10); i !== -1; i = c.indexOf(10, i + 1)) lines++;
  });
  req.on('end', () => {
    if (refusing) {
      res.statusCode = 503;
    } else {
      delivered += lines;
    }
    res.end();
  });
});
const rxPort = await freePort();
receiver.listen(rxPort, '127.0.0.1');
const { gateway, mqttPort } = await startInProcessGateway({
  dir,
  sinkUrl: `http://127.0.0.1:${rxPort}/ingest`,
  lingerMs: 5,
  name: 'heap',
});

const load = (n: number) =>
  runLoad({
    ...LOAD_DEFAULTS,
    port: mqttPort,
    publishers,
    messages: Math.round(n / publishers),
    inflight: 1000,
    rate: rate / publishers,
  });

const session = new Session();
session.connect();
await session.post('HeapProfiler.enable');
const warmUp = Math.min(20_000, messages);
await load(warmUp); // warm-up: JIT and heap sizing
const startSampling = () =>
  session.post('HeapProfiler.startSampling', {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: all,
  });
if (drain) {
  while (delivered < warmUp) await new Promise((r) => setTimeout(r, 20));
  refusing = true;
  await load(messages);
  await startSampling();
  refusing = false;
  while (delivered < warmUp + messages) await new Promise((r) => setTimeout(r, 20));
} else {
  await startSampling();
  await load(messages);
}
const { profile } = (await session.post('HeapProfiler.stopSampling')) as { profile: { head: ProfileNode } };

// Self size by the innermost three frames: enough to tell whose allocation it is.
const bySite = new Map<string, number>();
const walk = (node: ProfileNode, stack: string[]): void => {
  const f = node.callFrame;
  const frame = `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
  const here = [...stack, frame];
  if (node.selfSize > 0) {
    const key = here.slice(-3).reverse().join(' < ');
    bySite.set(key, (bySite.get(key) ?? 0) + node.selfSize);
  }
  for (const c of node.children) walk(c, here);
};
walk(profile.head, []);
const total = [...bySite.values()].reduce((a, b) => a + b, 0);
console.log(
  `${messages} QoS 1 messages at ${rate} msg/s${drain ? ', drained from a backlog' : ''}: ${(total / 2 ** 20).toFixed(1)} MiB allocated${all ? '' : ' that a scavenge did not collect'}` +
    ` (${Math.round(total / messages)} B per message, sampled every 4 KiB)`,
);
for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${(bytes / 2 ** 20).toFixed(2).padStart(8)} MiB  ${site}`);
}
await gateway.stop();
receiver.close();
removeTempDir(dir);
process.exit(0);
