// mqtt-qos0: QoS 0 publishers -> edgeferry (journal without fsync, one HTTP sink) -> HTTP
// receiver, and the same load against a bare aedes broker and mosquitto (one QoS 1 subscriber,
// so deliveries are QoS 0). QoS 0 has no acknowledgement, so nothing holds a publisher back but
// TCP: the run is bounded by its message count (BENCH_MESSAGES per publisher) and can be paced
// (BENCH_QOS0_RATE). Loss is allowed at QoS 0; it is counted (sent - received) and printed.

import { compareTargets } from '../lib/compare.ts';
import { PART_COLUMNS } from '../lib/harness-cpu.ts';
import type { MqttRunSpec } from '../lib/mqtt-run.ts';
import type { Column } from '../lib/report.ts';
import type { Scenario } from '../lib/scenario.ts';
import { startEdgeferry } from '../lib/targets.ts';
import { QOS1_SINK_BATCH } from './mqtt-qos1.ts';

const COLUMNS: Column[] = [
  { key: 'ingestRate', label: 'ingest msg/s', digits: 0, ratio: true },
  { key: 'deliveredRate', label: 'delivered msg/s', digits: 0, ratio: true },
  { key: 'received', label: 'delivered', digits: 0 },
  { key: 'lost', label: 'lost', digits: 0 },
  { key: 'p50', label: 'p50 ms', digits: 2, ratio: true },
  { key: 'p99', label: 'p99 ms', digits: 2, ratio: true },
  { key: 'p999', label: 'p99.9 ms', digits: 2, ratio: true },
  { key: 'peakRssMb', label: 'peak RSS MB', digits: 1, ratio: true },
  { key: 'cpuPct', label: 'CPU %', digits: 0, ratio: true },
  ...PART_COLUMNS,
];

export const mqttQos0: Scenario = {
  name: 'mqtt-qos0',
  description:
    'N QoS 0 publishers (BENCH_PUBLISHERS) x M messages (BENCH_MESSAGES) x 200 B, unpaced or BENCH_QOS0_RATE msg/s in total -> edgeferry -> HTTP receiver; baselines aedes and mosquitto; loss counted',
  default: true,
  async run(ctx) {
    const env = ctx.env;
    const spec: MqttRunSpec = {
      publishers: env.publishers,
      messages: env.messages,
      qos: 0,
      inflight: env.inflight,
      payloadBytes: env.payloadBytes,
      warmup: env.warmup,
      timeoutMs: env.timeoutMs,
      rate: env.qos0Rate > 0 ? env.qos0Rate / env.publishers : 0,
      lossAllowed: true,
    };
    const { rows, notes } = await compareTargets(ctx, spec, () =>
      startEdgeferry({ batch: QOS1_SINK_BATCH, journal: { fsync: false }, env }),
    );
    notes.push(
      'QoS 0 ingest = messages the broker had read when it answered the trailing PINGREQ, over the publish time; ' +
        'lost = sent - delivered (the run ends when all arrived, or after 1.5 s without an arrival)',
    );
    notes.push(
      env.qos0Rate > 0
        ? `paced at ${env.qos0Rate} msg/s in total`
        : 'unpaced: publishers write as fast as TCP accepts (QoS 0 has no ack to wait for); the message count bounds the run',
    );
    if (env.edgeferryOverrides)
      notes.push(`edgeferry config overrides: ${JSON.stringify(env.edgeferryOverrides)}`);
    return {
      params: {
        ...spec,
        sink: { batch: QOS1_SINK_BATCH },
        journal: { fsync: false },
        baselines: env.baselines,
        edgeferryOverrides: env.edgeferryOverrides,
      },
      columns: COLUMNS,
      rows,
      reference: 'edgeferry',
      notes,
    };
  },
};
