// The long fuzz run (`npm run fuzz`, issue #14 item 5): FUZZ_PACKETS hostile MQTT packets
// (default 300 000) on many connections against the real daemon, the harness of
// test/fuzz/harness.ts (the short run in `npm test` uses it too). It stops by itself at the
// packet count or FUZZ_MAX_SECONDS (default 600), prints the seed (FUZZ_SEED=... replays the
// same cases) and a report, and exits 1 if a check failed:
//   the daemon still runs; the well-behaved client was never disconnected and each of its
//   acknowledged QoS 1 messages reached the HTTP upstream, in order; every record journaled
//   before the run was delivered; no topic with U+FFFD or U+0000 reached the upstream; RSS stayed
//   under FUZZ_MAX_RSS_MB (default 512) and did not keep growing (last quarter of the samples
//   within 64 MB of the second).
// `npm run fuzz -- --show N` prints case N of the seed's run (kind and frames in hex) instead.

import { parseArgs } from 'node:util';
import { fuzzConfig, runFuzz } from '../test/fuzz/harness.ts';
import { mqttPlugin } from '../test/fuzz/mqtt-plugin.ts';
import { caseRng, fuzzSeed } from '../test/fuzz/rng.ts';
import { type DaemonHandle, startDaemon, tempDir, writeConfig } from '../test/helpers/daemon.ts';
import { HttpReceiver } from '../test/helpers/http-receiver.ts';

const MAX_PACKET_BYTES = 256 * 1024;
const num = (name: string, dflt: number) => Number(process.env[name] ?? dflt);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { show: { type: 'string' } } });
  const seed = fuzzSeed();
  const plugin = mqttPlugin({ maxPacketBytes: MAX_PACKET_BYTES, lingerMs: 20 });
  if (values.show !== undefined) {
    const c = plugin.make(caseRng(seed, Number(values.show)));
    console.log(
      JSON.stringify({
        seed,
        case: Number(values.show),
        ...c,
        frames: c.frames.map((f) => f.toString('hex')),
      }),
    );
    return 0;
  }
  console.log(`fuzz seed ${seed} (replay: FUZZ_SEED=${seed} npm run fuzz)`);
  const receiver = new HttpReceiver();
  await receiver.start();
  const dir = tempDir('edgeferry-fuzz-');
  let daemon: DaemonHandle | null = null;
  try {
    daemon = await startDaemon(dir, writeConfig(dir, fuzzConfig(dir, receiver.url, MAX_PACKET_BYTES)));
    const r = await runFuzz({
      seed,
      daemon,
      receiver,
      plugins: [plugin],
      packets: num('FUZZ_PACKETS', 300_000),
      maxDurationMs: num('FUZZ_MAX_SECONDS', 600) * 1000,
      concurrency: num('FUZZ_CONCURRENCY', 32),
      preload: 2000,
      goodIntervalMs: 2,
      settleMs: 120_000,
      progress: (l) => console.log(l),
    });
    const q = Math.floor(r.rssKb.samples.length / 4);
    const growthKb = median(r.rssKb.samples.slice(3 * q)) - median(r.rssKb.samples.slice(q, 2 * q));
    const { samples, ...rss } = r.rssKb;
    console.log(JSON.stringify({ ...r, rssKb: { ...rss, n: samples.length, growthKb } }, null, 1));
    const failures = [
      [!r.daemonAlive, 'the daemon exited'],
      [r.deliveryErrors > 0, `${r.deliveryErrors} cases could not be delivered`],
      [r.good.failed > 0 || r.good.disconnects > 0, 'the well-behaved client lost its connection'],
      [
        r.good.delivered !== r.good.acked,
        `well-behaved: ${r.good.acked} acked, ${r.good.delivered} delivered`,
      ],
      [!r.good.inOrder, 'well-behaved records out of order'],
      [
        r.preload.delivered !== r.preload.acked,
        `preloaded: ${r.preload.delivered} of ${r.preload.acked} delivered`,
      ],
      [
        r.illFormedTopics > 0,
        `${r.illFormedTopics} records with U+FFFD or U+0000 in their topic at the upstream`,
      ],
      [r.rssKb.max > num('FUZZ_MAX_RSS_MB', 512) * 1024, `RSS reached ${r.rssKb.max} kB`],
      [growthKb > 64 * 1024, `RSS grew ${growthKb} kB between the second and last quarter`],
    ]
      .filter(([failed]) => failed)
      .map(([, what]) => what);
    const rate = Math.round(r.packets / (r.durationMs / 1000));
    console.log(
      `${r.packets} packets in ${r.cases} connections, ${(r.durationMs / 1000).toFixed(1)} s (${rate}/s)`,
    );
    for (const f of failures) console.log(`FAILED: ${f}`);
    if (failures.length === 0) console.log('fuzz: all checks passed');
    return failures.length === 0 ? 0 : 1;
  } finally {
    if (daemon) {
      const tail = daemon.stderr().slice(-2000);
      if (tail) console.log(`daemon stderr (tail):\n${tail}`);
      await daemon.kill();
    }
    await receiver.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
