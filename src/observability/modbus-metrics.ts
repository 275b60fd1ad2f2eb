// The Modbus poller's metrics (README: PLCs over Modbus TCP), per device, read from the poller's
// status at scrape time.

import type { GatewayView } from './gateway-view.ts';
import { type Sample, SampledMetric } from './sampled-metric.ts';

interface ModbusDeviceSample {
  name: string;
  connected: boolean;
  polls: number;
  skipped: number;
  valuesPublished: number;
  failures: Record<string, number>;
  lastGoodPollAt: number | null;
  duration: { counts: number[]; sumSeconds: number; count: number; buckets: number[] };
}

function devices(view: GatewayView): ModbusDeviceSample[] {
  const s = view.sources.find((x) => x.name === 'modbus');
  return ((s?.counters as { devices?: ModbusDeviceSample[] } | undefined)?.devices ??
    []) as ModbusDeviceSample[];
}

/** Prometheus histogram series (`_bucket` cumulative with `le`, `_sum`, `_count`) of each device's poll durations. */
function durationSamples(view: GatewayView): Sample[] {
  const out: Sample[] = [];
  for (const d of devices(view)) {
    const { counts, sumSeconds, count, buckets } = d.duration;
    let cumulative = 0;
    buckets.forEach((le, i) => {
      cumulative += counts[i];
      out.push({
        metricName: 'edgeferry_modbus_poll_duration_seconds_bucket',
        labels: { device: d.name, le: String(le) },
        value: cumulative,
      });
    });
    out.push({
      metricName: 'edgeferry_modbus_poll_duration_seconds_bucket',
      labels: { device: d.name, le: '+Inf' },
      value: count,
    });
    out.push({
      metricName: 'edgeferry_modbus_poll_duration_seconds_sum',
      labels: { device: d.name },
      value: sumSeconds,
    });
    out.push({
      metricName: 'edgeferry_modbus_poll_duration_seconds_count',
      labels: { device: d.name },
      value: count,
    });
  }
  return out;
}

export function modbusMetrics(view: GatewayView): SampledMetric[] {
  const perDevice = (f: (d: ModbusDeviceSample) => number) => () =>
    devices(view).map((d) => ({ labels: { device: d.name }, value: f(d) }));
  return [
    new SampledMetric(
      'edgeferry_modbus_polls_total',
      'Polls started, by Modbus device.',
      'counter',
      perDevice((d) => d.polls),
    ),
    new SampledMetric(
      'edgeferry_modbus_polls_skipped_total',
      'Polls skipped because the previous one was still running (or the event loop was late), by Modbus device.',
      'counter',
      perDevice((d) => d.skipped),
    ),
    new SampledMetric(
      'edgeferry_modbus_failures_total',
      'Failed Modbus requests, by device and kind: timeout, exception (the PLC refused), disconnected, protocol (malformed response).',
      'counter',
      () =>
        devices(view).flatMap((d) =>
          Object.entries(d.failures).map(([kind, value]) => ({ labels: { device: d.name, kind }, value })),
        ),
    ),
    new SampledMetric(
      'edgeferry_modbus_values_published_total',
      'Register values put into records, by Modbus device.',
      'counter',
      perDevice((d) => d.valuesPublished),
    ),
    new SampledMetric(
      'edgeferry_modbus_connected',
      '1 while the connection to the Modbus device is up.',
      'gauge',
      perDevice((d) => (d.connected ? 1 : 0)),
    ),
    new SampledMetric(
      'edgeferry_modbus_last_good_poll_age_seconds',
      'Seconds since the last poll of the Modbus device in which every request succeeded (absent before the first).',
      'gauge',
      () => {
        const now = Date.now();
        return devices(view)
          .filter((d) => d.lastGoodPollAt !== null)
          .map((d) => ({ labels: { device: d.name }, value: (now - (d.lastGoodPollAt as number)) / 1000 }));
      },
    ),
    new SampledMetric(
      'edgeferry_modbus_poll_duration_seconds',
      'Time from the start of a poll to its record, by Modbus device.',
      'histogram',
      () => durationSamples(view),
    ),
  ];
}
