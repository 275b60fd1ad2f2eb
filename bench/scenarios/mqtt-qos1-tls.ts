// mqtt-qos1-tls: the mqtt-qos1 load into edgeferry over its TLS listener, interleaved round by
// round with the same load over plain TCP; the ratios beside the tcp row are tls / tcp.

import { compareStarters } from '../lib/compare.ts';
import { MQTT_COLUMNS, qos1Spec } from '../lib/mqtt-run.ts';
import type { Scenario } from '../lib/scenario.ts';
import { startEdgeferry } from '../lib/targets.ts';
import { startEdgeferryTls } from '../lib/tls-target.ts';
import { QOS1_SINK_BATCH } from './mqtt-qos1.ts';

export const mqttQos1Tls: Scenario = {
  name: 'mqtt-qos1-tls',
  description:
    'the mqtt-qos1 load (BENCH_PUBLISHERS x BENCH_MESSAGES x 200 B, QoS 1, 100 in flight) into edgeferry over TLS 1.3 (ECDSA P-256) and over plain TCP, interleaved',
  default: false,
  async run(ctx) {
    const env = ctx.env;
    const spec = qos1Spec(env);
    // CoAP off in both: its fixed UDP port would collide with any other bench daemon running.
    const opts = {
      batch: QOS1_SINK_BATCH,
      journal: { fsync: false },
      env,
      daemon: { extra: { coap: { enabled: false } } },
    };
    const { rows, notes } = await compareStarters(ctx, spec, [
      ['edgeferry tcp', () => startEdgeferry(opts)],
      ['edgeferry tls', () => startEdgeferryTls(opts)],
    ]);
    return {
      params: { ...spec, sink: { batch: QOS1_SINK_BATCH }, journal: { fsync: false } },
      columns: MQTT_COLUMNS,
      rows,
      reference: 'edgeferry tcp',
      notes,
    };
  },
};
