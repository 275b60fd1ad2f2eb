// modbus: the Modbus TCP poller under the paced MQTT load. BENCH_MODBUS_DEVICES (100) simulated
// PLCs (bench/lib/modbus-sim.ts, a child process of its own, one listener each) with
// BENCH_MODBUS_REGISTERS (100) uint16 holding registers each, polled every
// BENCH_MODBUS_INTERVAL_MS (100) ms: 1000 polls/s, one FC 3 request and one record each, while
// `mqtt-qos1-paced`'s load (BENCH_RATE, 20 000 msg/s, QoS 1) runs. Side by side in one run,
// interleaved round by round: edgeferry with the same config and no Modbus device (the
// baseline), and edgeferry polling the simulator. Both sources' records go to the one HTTP sink;
// the receiver tells them apart by topic (plc/...). Targets (issue 11): no skipped poll,
// poll-to-record p99 < 50 ms, MQTT p99 still <= 25 ms.

import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchEnv } from '../lib/env.ts';
import { PART_COLUMNS } from '../lib/harness-cpu.ts';
import { ModbusRecords } from '../lib/modbus-records.ts';
import { type ModbusSim, startModbusSim } from '../lib/modbus-sim.ts';
import { type MqttRunSpec, measureMqtt, mqttRow } from '../lib/mqtt-run.ts';
import { type Column, formatNumber, type ResultRow } from '../lib/report.ts';
import type { Scenario, ScenarioContext } from '../lib/scenario.ts';
import { type MqttTarget, startEdgeferry } from '../lib/targets.ts';
import { QOS1_SINK_BATCH } from './mqtt-qos1.ts';
import { pacedQos1Spec } from './mqtt-qos1-paced.ts';

/** The issue's targets. */
const POLL_P99_TARGET_MS = 50;
const MQTT_P99_TARGET_MS = 25;
const TOPIC_PREFIX = 'plc/';
/** Before measuring, every device connected and at least this many polls made. */
const SETTLE_POLLS = 10;
const SETTLE_TIMEOUT_MS = 20_000;

const BASELINE = 'no modbus device';
const WITH_MODBUS = 'modbus';

const COLUMNS: Column[] = [
  { key: 'ingestRate', label: 'MQTT msg/s', digits: 0, ratio: true },
  { key: 'p50', label: 'MQTT p50 ms', digits: 2, ratio: true },
  { key: 'p99', label: 'MQTT p99 ms', digits: 2, ratio: true },
  { key: 'maxLatency', label: 'MQTT max ms', digits: 1, ratio: true },
  { key: 'maxLagMs', label: 'gen lag ms', digits: 1 },
  { key: 'pollRate', label: 'polls/s', digits: 0 },
  { key: 'recordRate', label: 'records/s', digits: 0 },
  { key: 'pollP50', label: 'poll->rec p50 ms', digits: 1 },
  { key: 'pollP99', label: 'poll->rec p99 ms', digits: 1 },
  { key: 'pollMax', label: 'poll->rec max ms', digits: 1 },
  { key: 'skipped', label: 'skipped', digits: 0 },
  { key: 'failures', label: 'failures', digits: 0 },
  { key: 'loopP99', label: 'loop delay p99 ms', digits: 1, ratio: true },
  { key: 'loopMax', label: 'loop delay max ms', digits: 1, ratio: true },
  { key: 'peakRssMb', label: 'peak RSS MB', digits: 1, ratio: true },
  { key: 'cpuPct', label: 'CPU %', digits: 0, ratio: true },
  { key: 'simCpuPct', label: 'sim CPU %', digits: 0 },
  ...PART_COLUMNS,
];

interface DeviceStatus {
  name: string;
  connected: boolean;
  polls: number;
  skipped: number;
  records?: number;
  refused?: number;
  failures: Record<string, number>;
  /** Poll durations: counts per bucket (not cumulative), upper bounds in seconds, the last bucket above all. */
  duration?: { counts: number[]; buckets: number[] };
  lastError?: string | null;
}

interface ModbusStatus {
  received: number;
  refused?: number;
  devices: DeviceStatus[];
}

/** The `modbus` source's counters from GET /v1/status; null when the daemon has no such source. */
async function modbusStatus(target: MqttTarget): Promise<ModbusStatus | null> {
  const res = await target.admin!('/v1/status');
  if (res.status !== 200) throw new Error(`GET /v1/status: HTTP ${res.status}`);
  const doc = JSON.parse(res.body) as { sources: { name: string; counters: unknown }[] };
  const src = doc.sources.find((s) => s.name === 'modbus');
  return src ? (src.counters as ModbusStatus) : null;
}

/** Sums over the devices, as counters a run can diff. */
function totals(s: ModbusStatus | null): Record<string, number> {
  const t: Record<string, number> = {
    modbusPolls: 0,
    modbusSkipped: 0,
    modbusFailures: 0,
    modbusRecords: s?.received ?? 0,
    modbusRefused: s?.refused ?? 0,
  };
  for (const d of s?.devices ?? []) {
    t.modbusPolls += d.polls;
    t.modbusSkipped += d.skipped;
    const dur = d.duration;
    if (dur && Array.isArray(dur.counts) && Array.isArray(dur.buckets)) {
      dur.counts.forEach((n, i) => {
        const key = `modbusDuration.${i < dur.buckets.length ? dur.buckets[i] * 1000 : 'inf'}`;
        t[key] = (t[key] ?? 0) + n;
      });
    }
    for (const [kind, n] of Object.entries(d.failures ?? {})) {
      t.modbusFailures += n;
      t[`modbusFailures.${kind}`] = (t[`modbusFailures.${kind}`] ?? 0) + n;
    }
  }
  return t;
}

/** One PLC of the simulator as a `modbus.devices` entry. */
function deviceConfig(sim: ModbusSim, d: number, env: BenchEnv): Record<string, unknown> {
  const name = `dev-${String(d).padStart(2, '0')}`;
  return {
    name,
    host: sim.host,
    port: sim.ports[d],
    unitId: 1,
    intervalMs: env.modbusIntervalMs,
    timeoutMs: env.modbusTimeoutMs,
    topic: `${TOPIC_PREFIX}${name}`,
    registers: Array.from({ length: env.modbusRegisters }, (_, i) => ({
      name: `r${String(i).padStart(3, '0')}`,
      area: 'holding',
      address: i,
      type: 'uint16',
    })),
  };
}

interface ModbusTarget {
  target: MqttTarget;
  records: ModbusRecords;
  /** The poller's life totals once settled, and at the window's start (the first `inspect`). */
  settled: Record<string, number> | null;
  beforeWindow: Record<string, number> | null;
  /** The daemon's event-loop delay from /metrics at the last `inspect` (prom-client resets it on every read). */
  loop: LoopLag | null;
}

interface LoopLag {
  p50: number;
  p99: number;
  max: number;
}

/**
 * The daemon's event-loop delay (prom-client's monitorEventLoopDelay, 10 ms resolution) since
 * the previous /metrics read, ms; null when not exported.
 */
async function loopLag(target: MqttTarget): Promise<LoopLag | null> {
  const res = await target.admin!('/metrics');
  if (res.status !== 200) return null;
  const read = (name: string) => {
    const m = new RegExp(
      `^edgeferry_nodejs_eventloop_lag_${name}_seconds(?:\\{[^}]*\\})? ([0-9.e+-]+)`,
      'm',
    ).exec(res.body);
    return m ? Number(m[1]) * 1000 : Number.NaN;
  };
  const lag = { p50: read('p50'), p99: read('p99'), max: read('max') };
  return Number.isNaN(lag.p99) ? null : lag;
}

/**
 * edgeferry as `mqtt-qos1-paced` runs it, with `modbus.devices` (none for the baseline) and the
 * receiver diverting the plc/ records; with devices, resolves once every one is connected and
 * has polled SETTLE_POLLS times.
 */
async function startTarget(env: BenchEnv, devices: Record<string, unknown>[]): Promise<ModbusTarget> {
  const records = new ModbusRecords(TOPIC_PREFIX);
  const target = await startEdgeferry({
    batch: QOS1_SINK_BATCH,
    journal: { fsync: false },
    env,
    daemon: { extra: { modbus: { devices } } },
    receiver: { divert: records },
  });
  let settled: Record<string, number> | null = null;
  try {
    if (devices.length > 0) {
      const deadline = Date.now() + SETTLE_TIMEOUT_MS;
      for (;;) {
        const s = await modbusStatus(target);
        if (!s)
          throw new Error('GET /v1/status lists no source named "modbus": no Modbus poller in this build?');
        const ready = s.devices.filter((d) => d.connected && d.polls >= SETTLE_POLLS).length;
        if (ready === devices.length) {
          settled = totals(s);
          break;
        }
        if (Date.now() > deadline) {
          const err = s.devices.find((d) => d.lastError)?.lastError;
          throw new Error(
            `modbus: ${ready} of ${devices.length} devices connected with ${SETTLE_POLLS} polls within ${SETTLE_TIMEOUT_MS} ms` +
              (err ? ` (last error: ${err})` : ''),
          );
        }
        await sleep(100);
      }
    }
  } catch (err) {
    await target.stop();
    throw err;
  }
  const inspect = target.inspect!;
  const out: ModbusTarget = {
    records,
    settled,
    beforeWindow: null,
    loop: null,
    target: {
      ...target,
      // The journal's counters plus the poller's, and the wall clock, so a run's diff gives the
      // window: polls, skipped, failures and records made in it.
      async inspect() {
        const [base, s, loop] = await Promise.all([inspect(), modbusStatus(target), loopLag(target)]);
        const t = totals(s);
        out.beforeWindow ??= t;
        out.loop = loop;
        return { ...base, ...t, wallMs: Date.now() };
      },
    },
  };
  return out;
}

interface Round {
  row: ResultRow;
  /** The poller's counters over the daemon's life, read at the end of the run. */
  life: Record<string, number> | null;
  /** Skipped polls by phase: start-up (until every device had SETTLE_POLLS), MQTT warm-up, window, after. */
  skippedPhases: { startup: number; warmup: number; window: number; after: number } | null;
  perDevice: number[];
  lastErrors: string[];
  /** The simulator over the run (warm-up included): requests answered per PLC, exceptions, connections open at the end. */
  sim: { served: number[]; exceptions: number; open: number; seconds: number } | null;
}

async function runOne(
  ctx: ScenarioContext,
  name: string,
  round: number,
  sim: ModbusSim,
  spec: MqttRunSpec,
  devices: Record<string, unknown>[],
): Promise<Round> {
  let t: ModbusTarget | null = null;
  const tag = ctx.env.rounds > 1 ? `${name} (round ${round}/${ctx.env.rounds})` : name;
  try {
    t = await startTarget(ctx.env, devices);
    const simSampler = sim.sampler();
    const sim0 = await sim.stats();
    const simT0 = Date.now();
    simSampler.begin();
    const run = await measureMqtt(t.target, spec, (m) =>
      ctx.log(ctx.env.rounds > 1 ? `[round ${round}] ${m}` : m),
    );
    const readAt = Date.now();
    const simWin = simSampler.end();
    const sim1 = await sim.stats();
    const simRun = {
      served: sim1.served.map((n, d) => n - (sim0.served[d] ?? 0)),
      exceptions: sim1.exceptions - sim0.exceptions,
      open: sim1.open,
      seconds: (Date.now() - simT0) / 1000,
    };
    const rec = t.records;
    rec.drain();
    const c = run.counters;
    const windowS = c.wallMs / 1000;
    const status = devices.length > 0 ? await modbusStatus(t.target) : null;
    const row = mqttRow(name, run, { round });
    const modbus = devices.length > 0;
    Object.assign(row.metrics, {
      pollRate: modbus ? c.modbusPolls / windowS : null,
      recordRate: modbus ? rec.rate(readAt) : null,
      pollP50: modbus ? rec.latency.percentile(50) : null,
      pollP99: modbus ? rec.latency.percentile(99) : null,
      pollMax: modbus ? rec.latency.max : null,
      skipped: modbus ? c.modbusSkipped : null,
      failures: modbus ? c.modbusFailures : null,
      simCpuPct: modbus ? simWin.cpuPct : null,
      loopP99: t.loop?.p99 ?? null,
      loopMax: t.loop?.max ?? null,
      modbusRecords: rec.records,
      modbusDegraded: rec.degraded,
      modbusNullValues: rec.nullValues,
      modbusUnchanged: rec.unchanged,
      modbusUnreadable: rec.unreadable,
      modbusOutOfOrder: rec.outOfOrder,
    });
    const life = status ? totals(status) : null;
    const settled = t.settled?.modbusSkipped ?? 0;
    const before = t.beforeWindow?.modbusSkipped ?? settled;
    const skippedPhases = life
      ? {
          startup: settled,
          warmup: before - settled,
          window: c.modbusSkipped,
          after: life.modbusSkipped - before - c.modbusSkipped,
        }
      : null;
    row.detail = { ...row.detail, modbusLife: life, skippedPhases, simWindow: simWin, sim: simRun };
    const m = row.metrics;
    ctx.log(
      `${tag}: MQTT p99 ${formatNumber(m.p99, 2)} ms` +
        (modbus
          ? `; ${formatNumber(m.pollRate, 0)} polls/s, ${formatNumber(m.recordRate, 0)} records/s, ` +
            `poll->record p99 ${formatNumber(m.pollP99, 1)} ms, skipped ${m.skipped}, failures ${m.failures}`
          : ''),
    );
    return {
      row,
      life,
      skippedPhases,
      sim: modbus ? simRun : null,
      perDevice: [...rec.perDevice.values()],
      lastErrors: (status?.devices ?? []).flatMap((d) => (d.lastError ? [`${d.name}: ${d.lastError}`] : [])),
    };
  } catch (err) {
    const e = err as Error;
    ctx.log(`${tag} failed: ${e.message}${t ? `\n${t.target.output().slice(-2000)}` : ''}`);
    return {
      row: mqttRow(name, e, { round }),
      life: null,
      skippedPhases: null,
      perDevice: [],
      lastErrors: [],
      sim: null,
    };
  } finally {
    await t?.target.stop().catch((err: Error) => ctx.log(`${name} stop failed: ${err.message}`));
  }
}

const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');

function describePhases(p: Round['skippedPhases']): string {
  if (!p) return 'by phase: n/a';
  return `start-up ${p.startup}, MQTT warm-up ${p.warmup}, measured window ${p.window}, after ${p.after}`;
}

export const modbus: Scenario = {
  name: 'modbus',
  description:
    'BENCH_MODBUS_DEVICES (100) simulated PLCs x BENCH_MODBUS_REGISTERS (100) uint16 holding registers polled every BENCH_MODBUS_INTERVAL_MS (100) ms (1000 polls/s) by edgeferry while mqtt-qos1-paced runs (QoS 1 at BENCH_RATE, 20 000 msg/s); baseline: the same daemon and load without Modbus devices. Poll-to-record latency = the poll start (payload ts) -> arrival at the HTTP receiver, so it includes the journal, the sink batch and the HTTP delivery. Targets: no skipped poll, poll-to-record p99 < 50 ms, MQTT p99 <= 25 ms',
  default: true,
  async run(ctx) {
    const env = ctx.env;
    const spec = pacedQos1Spec(env);
    const sim = await startModbusSim({ devices: env.modbusDevices, registers: env.modbusRegisters });
    ctx.log(
      `simulator pid ${sim.pid}: ${env.modbusDevices} PLCs x ${env.modbusRegisters} registers on ports ${Math.min(...sim.ports)}..${Math.max(...sim.ports)} (127.0.0.1)`,
    );
    const devices = sim.ports.map((_, d) => deviceConfig(sim, d, env));
    const rounds = new Map<string, Round[]>([
      [BASELINE, []],
      [WITH_MODBUS, []],
    ]);
    try {
      for (let round = 1; round <= env.rounds; round++) {
        rounds.get(BASELINE)!.push(await runOne(ctx, BASELINE, round, sim, spec, []));
        rounds.get(WITH_MODBUS)!.push(await runOne(ctx, WITH_MODBUS, round, sim, spec, devices));
      }
    } finally {
      await sim.stop();
    }

    // Each target's round with the lowest MQTT p99, as mqtt-qos1-paced picks.
    const notes: string[] = [];
    const chosen = new Map<string, Round>();
    const rows: ResultRow[] = [];
    for (const [name, runs] of rounds) {
      const ok = runs.filter((r) => !r.row.error);
      const pick =
        ok.length === 0
          ? runs[runs.length - 1]
          : ok.reduce((a, b) => ((b.row.metrics.p99 ?? Infinity) < (a.row.metrics.p99 ?? Infinity) ? b : a));
      chosen.set(name, pick);
      rows.push({
        ...pick.row,
        detail: {
          ...pick.row.detail,
          rounds: runs.map((r) => ({ metrics: r.row.metrics, error: r.row.error })),
        },
      });
    }

    const a = chosen.get(BASELINE)!;
    const b = chosen.get(WITH_MODBUS)!;
    if (b.row.error) {
      notes.push(`targets: not measured (${WITH_MODBUS} failed)`);
    } else {
      const m = b.row.metrics;
      const lifeSkipped = b.life?.modbusSkipped ?? Number.NaN;
      notes.push(
        `target: no skipped poll: ${verdict(lifeSkipped === 0 && m.skipped === 0)} ` +
          `(${formatNumber(lifeSkipped, 0)} over the daemon's life: ${describePhases(b.skippedPhases)})`,
      );
      notes.push(
        `target: poll-to-record p99 < ${POLL_P99_TARGET_MS} ms: ${verdict((m.pollP99 ?? Infinity) < POLL_P99_TARGET_MS)} ` +
          `(p50 ${formatNumber(m.pollP50, 1)}, p99 ${formatNumber(m.pollP99, 1)}, max ${formatNumber(m.pollMax, 1)} ms)`,
      );
      const ratio = a.row.error
        ? ''
        : `; without Modbus ${formatNumber(a.row.metrics.p99, 2)} ms, with / without ${((m.p99 ?? Number.NaN) / (a.row.metrics.p99 ?? Number.NaN)).toFixed(2)}x`;
      notes.push(
        `target: MQTT p99 <= ${MQTT_P99_TARGET_MS} ms with the poller running: ${verdict((m.p99 ?? Infinity) <= MQTT_P99_TARGET_MS)} ` +
          `(${formatNumber(m.p99, 2)} ms at ${formatNumber(env.rate, 0)} msg/s${ratio})`,
      );
      // The best rounds are picked by p99, so their CPU figures are not a pair: the mean of every round is.
      const meanCpu = (runs: Round[]) => {
        const ok = runs.filter((r) => !r.row.error && r.row.metrics.cpuPct !== undefined);
        return ok.reduce((sum, r) => sum + (r.row.metrics.cpuPct as number), 0) / ok.length;
      };
      const withCpu = meanCpu(rounds.get(WITH_MODBUS) ?? []);
      const withoutCpu = meanCpu(rounds.get(BASELINE) ?? []);
      if (Number.isFinite(withCpu) && Number.isFinite(withoutCpu)) {
        const d = withCpu - withoutCpu;
        notes.push(
          `daemon CPU, mean of the rounds: ${formatNumber(withCpu, 0)} % with the poller vs ${formatNumber(withoutCpu, 0)} % without: ` +
            `${d >= 0 ? '+' : '-'}${formatNumber(Math.abs(d), 0)} % of a core for ${formatNumber(m.pollRate, 0)} polls/s`,
        );
      }
      const per = b.perDevice;
      const life = b.life ?? {};
      const kinds = Object.entries(life)
        .filter(([k, v]) => k.startsWith('modbusFailures.') && v > 0)
        .map(([k, v]) => `${k.slice('modbusFailures.'.length)} ${v}`);
      notes.push(
        `records at the receiver: ${formatNumber(m.modbusRecords, 0)} from ${per.length} of ${env.modbusDevices} devices ` +
          `(${formatNumber(Math.min(...per), 0)}-${formatNumber(Math.max(...per), 0)} each); with a quality section ${m.modbusDegraded}, ` +
          `null values ${m.modbusNullValues}, values unchanged since the device's previous record ${m.modbusUnchanged}, ` +
          `out of order ${m.modbusOutOfOrder}, unreadable ${m.modbusUnreadable}`,
      );
      if (b.sim) {
        const served = b.sim.served.reduce((x, y) => x + y, 0);
        notes.push(
          `simulator over the run (warm-up included): ${formatNumber(served, 0)} FC 3 requests answered ` +
            `(${formatNumber(served / b.sim.seconds, 0)}/s, ${formatNumber(Math.min(...b.sim.served), 0)}-${formatNumber(Math.max(...b.sim.served), 0)} per PLC), ` +
            `exceptions ${b.sim.exceptions}, connections open ${b.sim.open}`,
        );
      }
      notes.push(
        `poller over the daemon's life: ${formatNumber(life.modbusPolls, 0)} polls, ${formatNumber(life.modbusRecords, 0)} records, ` +
          `refused ${formatNumber(life.modbusRefused, 0)}, failures ${formatNumber(life.modbusFailures, 0)}${kinds.length ? ` (${kinds.join(', ')})` : ''}` +
          (b.lastErrors.length ? `; last errors: ${b.lastErrors.slice(0, 3).join('; ')}` : ''),
      );
    }
    const bc = (b.row.detail?.counters ?? {}) as Record<string, number>;
    const buckets = Object.entries(bc).filter(([k]) => k.startsWith('modbusDuration.'));
    const polled = buckets.reduce((n, [, v]) => n + v, 0);
    if (polled > 0) {
      let cum = 0;
      const parts: string[] = [];
      for (const [k, v] of buckets) {
        cum += v;
        const bound = k.slice('modbusDuration.'.length);
        parts.push(bound === 'inf' ? `above: ${v}` : `<= ${bound} ms ${((cum * 100) / polled).toFixed(2)} %`);
        if (cum === polled) break;
      }
      notes.push(`poll durations in the window (the poller's histogram, cumulative): ${parts.join(', ')}`);
    }
    for (const [name, r] of chosen) {
      const c = (r.row.detail?.counters ?? {}) as Record<string, number>;
      if (!(c.groupCommits > 0 && c.httpBatches > 0)) continue;
      const delivered = (r.row.metrics.received ?? 0) + (r.row.metrics.modbusRecords ?? 0);
      notes.push(
        `${name}: ${formatNumber(c.groupCommits, 0)} group commits (avg ${formatNumber(c.journalAppended / c.groupCommits, 1)} records), ` +
          `${formatNumber(c.httpBatches, 0)} HTTP batches (avg ${formatNumber(delivered / c.httpBatches, 1)} records)`,
      );
    }
    for (const [name, runs] of rounds) {
      if (runs.length < 2) continue;
      const each = runs.map((r, i) =>
        r.row.error
          ? `round ${i + 1}: error`
          : `round ${i + 1}: MQTT p99 ${formatNumber(r.row.metrics.p99, 2)} ms` +
            (name === WITH_MODBUS
              ? `, poll->rec p99 ${formatNumber(r.row.metrics.pollP99, 1)} ms, skipped ${formatNumber(r.life?.modbusSkipped, 0)} (${describePhases(r.skippedPhases)})`
              : ''),
      );
      notes.push(`${name}: ${each.join('; ')}`);
    }
    if (env.rounds > 1) {
      // Rounds are interleaved pairs (without, then with): the pair's ratio is the steadier figure.
      const ra = rounds.get(BASELINE)!;
      const rb = rounds.get(WITH_MODBUS)!;
      const pairs = rb.map((r, i) => {
        const pa = ra[i]?.row.metrics.p99;
        const pb = r.row.metrics.p99;
        return pa && pb ? `${(pb / pa).toFixed(2)}x` : '-';
      });
      notes.push(`MQTT p99 with / without Modbus, round by round: ${pairs.join(', ')}`);
      notes.push(`best of ${env.rounds} interleaved rounds by lowest MQTT p99`);
    }
    notes.push(
      `ratios beside the "${BASELINE}" row: with Modbus / without (b/a). ` +
        `${env.modbusDevices} PLCs x ${env.modbusRegisters} uint16 holding registers every ${env.modbusIntervalMs} ms ` +
        `(request timeout ${env.modbusTimeoutMs} ms), topics ${TOPIC_PREFIX}dev-NN, one HTTP sink for both sources; ` +
        `MQTT ${env.publishers} x ${formatNumber(spec.messages, 0)} messages at ${formatNumber(spec.rate ?? 0, 0)} msg/s each, ${spec.inflight} in flight`,
    );
    notes.push(
      "poll->rec = payload ts (poll start, the daemon's Date.now()) -> arrival of the HTTP batch at the receiver (Date.now()): " +
        'poll, journal commit, sink batch (lingerMs 5) and HTTP delivery; polls/s, skipped and failures from /v1/status over the MQTT window; ' +
        "sim CPU = the PLC simulator process (also in other CPU %); loop delay = the daemon's event-loop delay over the MQTT window (prom-client, /metrics, 10 ms resolution)",
    );
    if (env.edgeferryOverrides)
      notes.push(`edgeferry config overrides: ${JSON.stringify(env.edgeferryOverrides)}`);
    return {
      params: {
        ...spec,
        totalRate: env.rate,
        modbus: {
          devices: env.modbusDevices,
          registers: env.modbusRegisters,
          intervalMs: env.modbusIntervalMs,
          timeoutMs: env.modbusTimeoutMs,
        },
        sink: { batch: QOS1_SINK_BATCH },
        journal: { fsync: false },
        edgeferryOverrides: env.edgeferryOverrides,
      },
      columns: COLUMNS,
      rows,
      reference: WITH_MODBUS,
      notes,
    };
  },
};
