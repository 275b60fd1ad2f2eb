// Why the MQTT client source holds acks in a window instead of acking from handleMessage's
// callback: both ways take the same QoS 1 load from mosquitto into a real journal (no fsync) in
// this process, and print the intake rate (records committed per second, first publish to last
// commit).
//
//   naive   mqtt.js' handleMessage calls back after the commit: one message per group commit,
//           because mqtt.js handles the next packet only then.
//   window  MqttClientSource (src/sources/mqtt-client): acks held until each commit, sent in order.
//
// Each mode runs against mosquitto with its in-flight limit lifted (`max_inflight_messages 0`)
// and at its default of 20 (what a site broker has unless someone changed it).
//
//   node bench/tools/mqtt-client-ack-modes.ts [messagesPerPublisher=10000] [publishers=4]

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type { RecordInput } from '../../src/core/record.ts';
import { Journal } from '../../src/journal/journal.ts';
import { MqttClientSource } from '../../src/sources/mqtt-client/mqtt-client-source.ts';
import { LOAD_DEFAULTS, prepareLoadInWorker } from '../lib/mqtt-load.ts';
import { installExitHandlers, makeTempDir, stopChild } from '../lib/proc.ts';
import { spawnMosquitto } from '../lib/targets.ts';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const messages = Number(process.argv[2] ?? 10_000);
const publishers = Number(process.argv[3] ?? 4);

type Mode = 'naive' | 'window';

/** Starts a consumer of `bench/#` into `journal`; resolves with a function that stops it. */
async function consume(mode: Mode, url: string, journal: Journal): Promise<() => Promise<void>> {
  if (mode === 'window') {
    const src = new MqttClientSource(
      {
        name: 'site-broker',
        url,
        clientId: 'ack-modes',
        topics: ['bench/#'],
        qos: 1,
        protocolVersion: 4,
        keepaliveSeconds: 30,
        connectTimeoutMs: 10_000,
        maxInFlight: 1000,
        maxPacketBytes: 256 * 1024,
        retry: { minMs: 100, maxMs: 1000 },
        nodeId: 'bench',
        ignoreTopicPrefixes: [],
      },
      journal,
      quiet,
    );
    await src.start();
    while (src.counters.state !== 'connected') await new Promise((r) => setTimeout(r, 20));
    // The SUBACK is not exposed: give it a moment.
    await new Promise((r) => setTimeout(r, 200));
    return () => src.stop();
  }
  const client = await mqtt.connectAsync(url, { clientId: 'ack-modes', clean: false, reconnectPeriod: 0 });
  client.handleMessage = (packet, cb) => {
    const rec: RecordInput = {
      ts: Date.now(),
      source: 'mqtt-client',
      device: 'site-broker',
      topic: packet.topic,
      payload: packet.payload as Buffer,
    };
    journal.append(rec, (err, _seq, done) => done(err ?? undefined), cb);
  };
  await client.subscribeAsync('bench/#', { qos: 1 });
  return async () => {
    await client.endAsync(true);
  };
}

async function run(mode: Mode, inflightLimit: string): Promise<number> {
  const broker = await spawnMosquitto([`max_inflight_messages ${inflightLimit}`]);
  const dir = makeTempDir('ack-modes-');
  const journal = await Journal.open(
    {
      path: join(dir, 'journal'),
      maxBytes: 4 * 1024 ** 3,
      onFull: 'reject',
      fsync: false,
      groupCommit: { maxRecords: 4096, maxDelayMs: 0 },
      maxPendingBytes: 16 * 1024 ** 2,
      lockWaitMs: 0,
    },
    quiet,
  );
  try {
    const stop = await consume(mode, `mqtt://127.0.0.1:${broker.port}`, journal);
    const total = messages * publishers;
    const base = journal.lastCommittedSeq;
    const load = await prepareLoadInWorker({
      ...LOAD_DEFAULTS,
      port: broker.port,
      publishers,
      messages,
      qos: 1,
      timeoutMs: 300_000,
    });
    const t0 = Date.now();
    const done = load.go();
    while (journal.lastCommittedSeq - base < total) await new Promise((r) => setTimeout(r, 5));
    const rate = total / ((Date.now() - t0) / 1000);
    await done;
    await stop();
    return rate;
  } finally {
    await journal.close();
    await stopChild(broker.proc, 2000);
    broker.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

installExitHandlers();
console.log(
  `${publishers} QoS 1 publishers x ${messages} messages x 200 B, 100 in flight each, via mosquitto`,
);
console.log('mode     mosquitto max_inflight_messages   intake msg/s');
for (const limit of ['0', '20']) {
  for (const mode of ['naive', 'window'] as Mode[]) {
    const rate = await run(mode, limit);
    console.log(
      `${mode.padEnd(8)} ${(limit === '0' ? '0 (unlimited)' : limit).padEnd(33)} ${rate.toFixed(0)}`,
    );
  }
}
process.exit(0);
