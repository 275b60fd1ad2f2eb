// loadgen-ceiling: the load generator alone, against the null broker (a process that only
// acknowledges), so the figures of the other scenarios can be read against what the generator
// can produce on this machine at all. The "ack-each" variants answer every PUBACK with its own
// write, as mosquitto does, which is the generator's most expensive case (one read per ack).

import { type MqttRunSpec, measureMqtt, mqttRow } from '../lib/mqtt-run.ts';
import type { ResultRow } from '../lib/report.ts';
import type { Scenario } from '../lib/scenario.ts';
import { type MqttTarget, startNullBroker } from '../lib/targets.ts';

interface Variant {
  label: string;
  publishers: number;
  qos: 0 | 1;
  ackEach: boolean;
}

export const loadgenCeiling: Scenario = {
  name: 'loadgen-ceiling',
  description:
    'the MQTT load generator against a null broker that only sends PUBACKs (batched per read, or one write each): its own msgs/s ceiling',
  default: true,
  async run(ctx) {
    const env = ctx.env;
    const n = env.publishers;
    const variants: Variant[] = [
      { label: `qos1 x${n}`, publishers: n, qos: 1, ackEach: false },
      { label: 'qos1 x1', publishers: 1, qos: 1, ackEach: false },
      { label: `qos1 x${n} ack-each`, publishers: n, qos: 1, ackEach: true },
      { label: 'qos1 x1 ack-each', publishers: 1, qos: 1, ackEach: true },
      { label: `qos0 x${n}`, publishers: n, qos: 0, ackEach: false },
    ];
    const rows: ResultRow[] = [];
    for (const ackEach of [false, true]) {
      let target: MqttTarget | null = null;
      try {
        target = await startNullBroker(ackEach);
        for (const v of variants.filter((x) => x.ackEach === ackEach)) {
          const spec: MqttRunSpec = {
            publishers: v.publishers,
            messages: env.messages,
            qos: v.qos,
            inflight: env.inflight,
            payloadBytes: env.payloadBytes,
            warmup: env.warmup,
            timeoutMs: env.timeoutMs,
          };
          const label = `null-broker ${v.label}`;
          try {
            rows.push(mqttRow(label, await measureMqtt(target, spec, ctx.log), { spec }));
          } catch (err) {
            rows.push(mqttRow(label, err as Error, { spec }));
          }
        }
      } finally {
        await target?.stop();
      }
    }
    return {
      params: { messages: env.messages, inflight: env.inflight, payloadBytes: env.payloadBytes, variants },
      columns: [
        { key: 'ingestRate', label: 'msg/s', digits: 0 },
        { key: 'perConnRate', label: 'per-conn msg/s', digits: 0 },
        { key: 'cpuPct', label: 'null-broker CPU %', digits: 0 },
        { key: 'loadgenCpuPct', label: 'generator CPU %', digits: 0 },
        { key: 'loadgenThreadCpuPct', label: 'worker thread CPU %', digits: 0 },
        { key: 'otherCpuPct', label: 'other CPU %', digits: 0 },
        { key: 'boundBy', label: 'bound by', digits: 0, text: true },
      ],
      rows,
      notes: [
        'QoS 0 "acked" = read by the null broker before it answered a trailing PINGREQ.',
        'The generator shares 2 cores with the null broker here, as it shares them with the daemon elsewhere. ' +
          '"generator CPU %" is the bench process minus its main thread (the worker thread and the V8 threads that ' +
          'collect its garbage), "worker thread CPU %" the worker thread alone; "bound by" the busiest part ' +
          '("target" = the null broker).',
      ],
    };
  },
};
