// mqtt-bridge: the mqtt-qos1 load (N QoS 1 publishers x M messages x 200 B, 100 in flight) into
// edgeferry, delivered upstream three ways in one run, interleaved round by round: the HTTP sink
// (reference receiver), the gRPC sink (reference Ingest receiver), each in a process of its own,
// and the MQTT bridge sink (`type: mqtt`, MQTT 5, QoS 1, window 100) publishing
// to a mosquitto the bench starts, where one QoS 1 subscriber measures arrival. Ratios beside
// the HTTP row are grpc / http and mqtt / http.

import { compareStarters } from '../lib/compare.ts';
import { MQTT_COLUMNS, qos1Spec } from '../lib/mqtt-run.ts';
import type { Scenario } from '../lib/scenario.ts';
import {
  mosquittoInstalled,
  startEdgeferry,
  startEdgeferryGrpc,
  startEdgeferryMqtt,
} from '../lib/targets.ts';
import { QOS1_SINK_BATCH } from './mqtt-qos1.ts';

export const mqttBridge: Scenario = {
  name: 'mqtt-bridge',
  description:
    'mqtt-qos1 load -> edgeferry -> MQTT bridge sink -> mosquitto -> subscriber, beside the HTTP and gRPC sinks (ratios x/http)',
  default: true,
  async run(ctx) {
    const env = ctx.env;
    const spec = qos1Spec(env);
    const opts = { batch: QOS1_SINK_BATCH, journal: { fsync: false }, env };
    const notes: string[] = [];
    const starters: Parameters<typeof compareStarters>[2] = [
      ['edgeferry http', () => startEdgeferry(opts)],
      ['edgeferry grpc', () => startEdgeferryGrpc(opts)],
    ];
    if (mosquittoInstalled()) starters.push(['edgeferry mqtt', () => startEdgeferryMqtt(opts)]);
    else notes.push('mosquitto is not installed: the mqtt row is skipped');
    const out = await compareStarters(ctx, spec, starters);
    notes.push(...out.notes);
    const mqttRow = out.rows.find((r) => r.target.startsWith('edgeferry mqtt') && !r.error);
    const cloudMs = (mqttRow?.detail?.counters as Record<string, number> | undefined)?.cloudBrokerCpuMs;
    if (mqttRow && cloudMs !== undefined && mqttRow.metrics.received) {
      notes.push(
        `edgeferry mqtt: the cloud mosquitto used ${Math.round(cloudMs)} ms CPU in the run, ` +
          `${((cloudMs * 1000) / mqttRow.metrics.received).toFixed(1)} us per delivered record (in "other CPU %")`,
      );
    }
    notes.push(
      'ratios beside the grpc and mqtt rows = http / that row (above 1.0x: slower than the HTTP sink)',
    );
    notes.push(
      `all sinks: batch { maxRecords: 1000, maxBytes: 1MiB, lingerMs: 5 }. mqtt: MQTT 5, QoS 1, window ${env.mqttWindow} (mosquitto ` +
        'advertises no Receive Maximum below it), topic edge/{node}/{topic}, user properties edgeferry-node and ' +
        'edgeferry-record-id on every publish; mosquitto with set_tcp_nodelay, its CPU in "other CPU %" (the HTTP and ' +
        "gRPC receivers' and the subscriber's in \"consumer CPU %\"). The subscriber's latency is from the publisher's send time in the payload",
    );
    if (env.edgeferryOverrides)
      notes.push(`edgeferry config overrides: ${JSON.stringify(env.edgeferryOverrides)}`);
    return {
      params: {
        ...spec,
        sink: { batch: QOS1_SINK_BATCH, mqtt: { protocolVersion: 5, qos: 1, window: env.mqttWindow } },
        journal: { fsync: false },
        edgeferryOverrides: env.edgeferryOverrides,
      },
      columns: MQTT_COLUMNS,
      rows: out.rows,
      reference: 'edgeferry http',
      notes,
    };
  },
};
