// mqtt-client: N QoS 1 publishers -> mosquitto (the site broker) -> edgeferry's MQTT client source
// (QoS 1 subscription, persistent session; journal without fsync; one HTTP sink) -> HTTP
// receiver; in the same run, interleaved, the same load through mosquitto to the bench's plain
// QoS 1 subscriber (the most a consumer of that broker gets here). The publishers' acks come from
// mosquitto, which queues for its subscriber without limit here (max_queued_messages 0), so
// "ingest msg/s" is mosquitto's; the client source's intake is "delivered msg/s" (rows are the
// best round by it) and the end-to-end latency.

import { compareStarters } from '../lib/compare.ts';
import type { Daemon } from '../lib/daemon.ts';
import { startDaemon } from '../lib/daemon.ts';
import { MQTT_COLUMNS, qos1Spec } from '../lib/mqtt-run.ts';
import { stopChild } from '../lib/proc.ts';
import { RemoteConsumer } from '../lib/remote-consumer.ts';
import type { Scenario } from '../lib/scenario.ts';
import { BASELINE_FILTER, type MqttTarget, spawnMosquitto, startMosquitto } from '../lib/targets.ts';
import { QOS1_SINK_BATCH } from './mqtt-qos1.ts';

/** mosquitto and edgeferry subscribed to it; the target's process (sampled) is edgeferry. */
async function startClientSource(): Promise<MqttTarget> {
  const broker = await spawnMosquitto();
  let receiver: RemoteConsumer | null = null;
  let daemon: Daemon | null = null;
  try {
    receiver = await RemoteConsumer.start({ kind: 'http' });
    const rx = receiver;
    daemon = await startDaemon({
      sinks: [{ name: 'bench', type: 'http', url: receiver.url, batch: QOS1_SINK_BATCH }],
      journal: { fsync: false },
      extra: {
        mqttClient: {
          url: `mqtt://127.0.0.1:${broker.port}`,
          clientId: 'bench-edge',
          topics: [BASELINE_FILTER],
          qos: 1,
        },
      },
    });
    const d = daemon;
    for (let i = 0; ; i++) {
      const st = JSON.parse((await d.admin('/v1/status')).body) as {
        sources: { name: string; counters: { state: string } }[];
      };
      if (st.sources.find((s) => s.name === 'mqtt-client')?.counters.state === 'connected') break;
      if (i > 200) throw new Error('mqtt-client source not connected within 10 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    // The SUBACK is not in the status: one loopback round trip, well inside this.
    await new Promise((r) => setTimeout(r, 300));
    return {
      name: 'edgeferry (mqtt-client)',
      host: '127.0.0.1',
      port: broker.port,
      pid: d.pid,
      consumer: rx,
      sampler: d.sampler,
      output: () => `${d.output()}\n${broker.output()}`,
      admin: d.admin,
      async stop() {
        await d.stop();
        await rx.close();
        await stopChild(broker.proc, 2000);
        broker.cleanup();
      },
    };
  } catch (err) {
    await daemon?.stop();
    await receiver?.close();
    await stopChild(broker.proc, 2000);
    broker.cleanup();
    throw err;
  }
}

export const mqttClient: Scenario = {
  name: 'mqtt-client',
  description:
    'N QoS 1 publishers -> mosquitto -> edgeferry mqtt-client source -> HTTP receiver, beside a plain QoS 1 subscriber of the same mosquitto',
  default: false,
  async run(ctx) {
    const env = ctx.env;
    const spec = qos1Spec(env);
    const { rows, notes } = await compareStarters(
      ctx,
      spec,
      [
        ['edgeferry (mqtt-client)', startClientSource],
        ['mosquitto subscriber', startMosquitto],
      ],
      { best: { key: 'deliveredRate', lower: false, label: 'delivered msg/s' } },
    );
    notes.push(
      'ingest msg/s is mosquitto acking the publishers in both rows; delivered msg/s is what reached the consumer ' +
        '(edgeferry: journaled and POSTed to the HTTP receiver), p50/p99 from publish to the consumer; ' +
        "RSS/CPU are edgeferry's in its row and mosquitto's in the subscriber row",
    );
    return {
      params: { ...spec, sink: { batch: QOS1_SINK_BATCH }, journal: { fsync: false } },
      columns: MQTT_COLUMNS,
      rows,
      reference: 'mosquitto subscriber',
      notes,
    };
  },
};
