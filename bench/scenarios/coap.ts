// coap: CoAP CON and NON POSTs from N UDP clients -> edgeferry's CoAP server (journal without
// fsync, one HTTP sink) -> HTTP receiver, and the same load against a bare node-coap server that
// answers 2.04 and keeps nothing. Target (issue 10): CON through the journal at >= 1.0x the bare
// server's CON rate, nothing lost.

import type { CoapType } from '../lib/coap-load.ts';
import {
  COAP_COLUMNS,
  type CoapRunSpec,
  coapRowName,
  compareCoap,
  startCoapBaseline,
  startEdgeferryCoap,
} from '../lib/coap-run.ts';
import { formatNumber } from '../lib/report.ts';
import type { Scenario } from '../lib/scenario.ts';
import { QOS1_SINK_BATCH } from './mqtt-qos1.ts';

/** edgeferry's CON rate over the bare server's, at least. */
const CON_RATIO_TARGET = 1.0;

export const coap: Scenario = {
  name: 'coap',
  description:
    'N CoAP clients (BENCH_COAP_CLIENTS, 4) x M POSTs (BENCH_COAP_MESSAGES, 25 000) x 200 B to /t/bench/<i>, 32 in flight per client, CON and NON -> edgeferry (journal fsync false, one HTTP sink) -> HTTP receiver; baseline a bare node-coap server answering 2.04',
  default: true,
  async run(ctx) {
    const env = ctx.env;
    const spec: CoapRunSpec = {
      clients: env.coapClients,
      messages: env.coapMessages,
      inflight: env.coapInflight,
      payloadBytes: env.payloadBytes,
      warmup: env.warmup,
      timeoutMs: env.timeoutMs,
      ackTimeoutMs: env.coapAckTimeoutMs,
      maxRetransmit: env.coapMaxRetransmit,
      nonWaitMs: env.coapNonWaitMs,
    };
    const types: CoapType[] = env.coapTypes;
    const { rows, notes } = await compareCoap(ctx, spec, types, [
      ['edgeferry', () => startEdgeferryCoap({ batch: QOS1_SINK_BATCH, journal: { fsync: false }, env })],
      ['coap-server', startCoapBaseline],
    ]);

    if (types.includes('con')) {
      const ef = rows.find((r) => r.target === coapRowName('edgeferry', 'con'));
      const base = rows.find((r) => r.target.startsWith(coapRowName('coap-server', 'con')));
      if (!ef || ef.error) {
        notes.unshift(
          `target: edgeferry CON >= ${CON_RATIO_TARGET}x the bare server's CON rate, nothing lost: NOT met (edgeferry CON failed)`,
        );
      } else if (!base || base.error) {
        notes.unshift('target: edgeferry CON vs the bare server: not measured (coap-server CON failed)');
      } else {
        const ratio = (ef.metrics.ackRate ?? 0) / (base.metrics.ackRate ?? Number.NaN);
        // Shown beside the verdict: one dropped datagram late in a run moves the acked rate by
        // ACK_TIMEOUT or more, the 99 % rate not.
        const ratio99 = (ef.metrics.rate99 ?? Number.NaN) / (base.metrics.rate99 ?? Number.NaN);
        const lost = ef.metrics.lost ?? Number.NaN;
        const undelivered = (ef.metrics.acked ?? 0) - (ef.metrics.received ?? 0);
        const verdict = ratio >= CON_RATIO_TARGET && lost === 0 && undelivered <= 0 ? 'met' : 'NOT met';
        notes.unshift(
          `target: edgeferry CON >= ${CON_RATIO_TARGET}x the bare server's CON rate, nothing lost: ${verdict} ` +
            `(acked msg/s ${ratio.toFixed(2)}x; 99% msg/s ${ratio99.toFixed(2)}x; lost ${formatNumber(lost, 0)}, acked but not at the sink ${formatNumber(Math.max(0, undelivered), 0)})`,
        );
      }
    }
    notes.push(
      `${spec.clients} x ${formatNumber(spec.messages, 0)} x ${spec.payloadBytes} B, ${spec.inflight} in flight per client; ` +
        `latency = first transmission -> 2.xx at the client; lost = sent - acked (CON), sent - at the sink (NON); ` +
        `ratios beside the baseline rows: edgeferry / coap-server of the same type`,
    );
    if (env.edgeferryOverrides)
      notes.push(`edgeferry config overrides: ${JSON.stringify(env.edgeferryOverrides)}`);
    return {
      params: {
        ...spec,
        types,
        coap: { prefix: 't' },
        sink: { batch: QOS1_SINK_BATCH },
        journal: { fsync: false },
        edgeferryOverrides: env.edgeferryOverrides,
      },
      columns: COAP_COLUMNS,
      rows,
      reference: coapRowName('edgeferry', types[0]),
      notes,
    };
  },
};
