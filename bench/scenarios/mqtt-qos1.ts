// mqtt-qos1 / mqtt-qos1-single: QoS 1 publishers -> edgeferry (journal without fsync, one HTTP
// sink) -> HTTP receiver, and the same load against a bare aedes broker and mosquitto, each with
// one QoS 1 subscriber as the consumer.

import { compareTargets } from '../lib/compare.ts';
import { MQTT_COLUMNS, type MqttRunSpec } from '../lib/mqtt-run.ts';
import type { Scenario, ScenarioContext } from '../lib/scenario.ts';
import { startEdgeferry } from '../lib/targets.ts';

export const QOS1_SINK_BATCH = { maxRecords: 1000, maxBytes: '1MiB', lingerMs: 5 };

function qos1Scenario(
  name: string,
  description: string,
  publishers: (ctx: ScenarioContext) => number,
): Scenario {
  return {
    name,
    description,
    default: true,
    async run(ctx) {
      const env = ctx.env;
      const spec: MqttRunSpec = {
        publishers: publishers(ctx),
        messages: env.messages,
        qos: 1,
        inflight: env.inflight,
        payloadBytes: env.payloadBytes,
        warmup: env.warmup,
        timeoutMs: env.timeoutMs,
      };
      const { rows, notes } = await compareTargets(ctx, spec, () =>
        startEdgeferry({ batch: QOS1_SINK_BATCH, journal: { fsync: false }, env }),
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
        columns: MQTT_COLUMNS,
        rows,
        reference: 'edgeferry',
        notes,
      };
    },
  };
}

export const mqttQos1 = qos1Scenario(
  'mqtt-qos1',
  'N QoS 1 publishers (BENCH_PUBLISHERS, default 4) x M messages (BENCH_MESSAGES) x 200 B, 100 in flight per connection -> edgeferry -> HTTP receiver; baselines aedes and mosquitto with one QoS 1 subscriber',
  (ctx) => ctx.env.publishers,
);

export const mqttQos1Single = qos1Scenario(
  'mqtt-qos1-single',
  'mqtt-qos1 with one publisher: the per-connection QoS 1 rate',
  () => 1,
);
