// grpc-sink: the mqtt-qos1 load (N QoS 1 publishers x M messages x 200 B, 100 in flight) into
// edgeferry with a gRPC sink (`type: grpc`) pushing to the reference Ingest receiver
// (bench/receivers/grpc-ingest-receiver.ts, in a process of its own, as the HTTP receiver is), and
// in the same run, interleaved, the same load with the HTTP sink. The ratio beside the HTTP row
// is grpc / http.

import { compareStarters } from '../lib/compare.ts';
import { MQTT_COLUMNS, qos1Spec } from '../lib/mqtt-run.ts';
import type { Scenario } from '../lib/scenario.ts';
import { startEdgeferry, startEdgeferryGrpc } from '../lib/targets.ts';
import { QOS1_SINK_BATCH } from './mqtt-qos1.ts';

export const grpcSink: Scenario = {
  name: 'grpc-sink',
  description:
    'mqtt-qos1 load -> edgeferry -> gRPC sink -> reference Ingest receiver, side by side with the HTTP sink (ratio grpc/http)',
  default: true,
  async run(ctx) {
    const env = ctx.env;
    const spec = qos1Spec(env);
    const opts = { batch: QOS1_SINK_BATCH, journal: { fsync: false }, env };
    const { rows, notes } = await compareStarters(ctx, spec, [
      ['edgeferry grpc', () => startEdgeferryGrpc(opts)],
      ['edgeferry http', () => startEdgeferry(opts)],
    ]);
    notes.push('ratios beside the http row = grpc / http');
    notes.push(
      'both sinks: batch { maxRecords: 1000, maxBytes: 1MiB, lingerMs: 5 }. The gRPC receiver decodes every record with ' +
        '@grpc/proto-loader and remembers its id (to count redeliveries); the HTTP receiver scans NDJSON lines. Each runs ' +
        'in a process of its own: "consumer CPU %" is that process (near 100: the receiver limits delivery)',
    );
    if (env.edgeferryOverrides)
      notes.push(`edgeferry config overrides: ${JSON.stringify(env.edgeferryOverrides)}`);
    return {
      params: {
        ...spec,
        sink: { batch: QOS1_SINK_BATCH },
        journal: { fsync: false },
        edgeferryOverrides: env.edgeferryOverrides,
      },
      columns: MQTT_COLUMNS,
      rows,
      reference: 'edgeferry grpc',
      notes,
    };
  },
};
