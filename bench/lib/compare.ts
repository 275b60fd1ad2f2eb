// Runs one MQTT load against edgeferry and the requested baselines, side by side: targets are
// interleaved round by round (edgeferry, aedes, mosquitto, edgeferry, ...) so background noise
// falls on all of them alike, each round on a freshly started target. With several rounds the
// row of a target is its best round by ingest rate (noise only ever slows a run down), or by
// another figure (`CompareOptions.best`, e.g. the lowest p99 of a paced run); every round is
// kept in the JSON.

import type { BenchEnv } from './env.ts';
import { describeParts } from './harness-cpu.ts';
import { type MqttRunSpec, measureMqtt, mqttRow } from './mqtt-run.ts';
import { formatNumber, type ResultRow } from './report.ts';
import type { ScenarioContext } from './scenario.ts';
import { type MqttTarget, mosquittoInstalled, startAedes, startMosquitto } from './targets.ts';

/** Above this much CPU used by others during a run, the result gets a "noisy" note. */
const NOISY_OTHER_CPU_PCT = 25;

export type Starter = [name: string, start: () => Promise<MqttTarget>];

export interface CompareOptions {
  /**
   * Which round becomes a target's row: the one with the highest (or, `lower`, the lowest) value
   * of `key`. Default: the highest ingest rate.
   */
  best?: { key: string; lower: boolean; label: string };
  /**
   * What the figure is: `throughput` (default) runs mosquitto with its default Nagle, `latency`
   * with `set_tcp_nodelay true`: each the faster way for that figure.
   */
  figure?: 'throughput' | 'latency';
}

/** The baselines BENCH_BASELINES asks for (mosquitto only when installed; a note otherwise). */
export function baselineStarters(
  env: BenchEnv,
  notes: string[],
  figure: CompareOptions['figure'] = 'throughput',
): Starter[] {
  const starters: Starter[] = [];
  for (const b of env.baselines) {
    if (b === 'aedes') starters.push(['aedes', startAedes]);
    if (b === 'mosquitto') {
      if (mosquittoInstalled()) {
        const noDelay = figure === 'latency';
        starters.push(['mosquitto', () => startMosquitto(noDelay)]);
        notes.push(
          `mosquitto ${noDelay ? 'with set_tcp_nodelay true (the lower latency)' : 'with its default Nagle (set_tcp_nodelay false: the higher QoS 1 rate)'}`,
        );
      } else notes.push('mosquitto is not installed: baseline skipped');
    }
  }
  return starters;
}

/** edgeferry and the baselines, interleaved. */
export async function compareTargets(
  ctx: ScenarioContext,
  spec: MqttRunSpec,
  edgeferry: () => Promise<MqttTarget>,
  opts: CompareOptions = {},
): Promise<{ rows: ResultRow[]; notes: string[] }> {
  const notes: string[] = [];
  const starters: Starter[] = [['edgeferry', edgeferry], ...baselineStarters(ctx.env, notes, opts.figure)];
  const out = await compareStarters(ctx, spec, starters, opts);
  return { rows: out.rows, notes: [...notes, ...out.notes] };
}

/** Any list of targets (e.g. edgeferry with an HTTP and with a gRPC sink), interleaved. */
export async function compareStarters(
  ctx: ScenarioContext,
  spec: MqttRunSpec,
  starters: Starter[],
  opts: CompareOptions = {},
): Promise<{ rows: ResultRow[]; notes: string[] }> {
  const notes: string[] = [];
  const best = opts.best ?? { key: 'ingestRate', lower: false, label: 'ingest msg/s' };
  const better = (a: ResultRow, b: ResultRow): boolean => {
    const va = a.metrics[best.key] ?? Number.NaN;
    const vb = b.metrics[best.key] ?? Number.NaN;
    if (Number.isNaN(va)) return true;
    if (Number.isNaN(vb)) return false;
    return best.lower ? vb < va : vb > va;
  };
  const rounds = new Map<string, ResultRow[]>(starters.map(([n]) => [n, []]));
  for (let round = 1; round <= ctx.env.rounds; round++) {
    for (const [name, start] of starters) {
      let target: MqttTarget | null = null;
      const tag = ctx.env.rounds > 1 ? `${name} (round ${round}/${ctx.env.rounds})` : name;
      try {
        target = await start();
        const run = await measureMqtt(target, spec, (m) =>
          ctx.log(ctx.env.rounds > 1 ? `[round ${round}] ${m}` : m),
        );
        const row = mqttRow(name, run, { round });
        rounds.get(name)!.push(row);
        const c = run.counters;
        const m = run.metrics;
        const lat = m.p99 != null ? `, p99 ${formatNumber(m.p99, 2)} ms` : '';
        const lost = m.lost ? `, lost ${formatNumber(m.lost, 0)}` : '';
        const sink = sinkBatches(c);
        if (c.groupCommits > 0 && sink) {
          ctx.log(
            `${tag}: ${formatNumber(m.ingestRate, 0)} msg/s${lat}${lost}; ${formatNumber(c.groupCommits, 0)} group commits ` +
              `(avg ${formatNumber(c.journalAppended / c.groupCommits, 1)} records), ${formatNumber(sink.n, 0)} ${sink.what} ` +
              `(avg ${formatNumber(m.received! / sink.n, 1)} records)`,
          );
        } else {
          ctx.log(`${tag}: ${formatNumber(m.ingestRate, 0)} msg/s${lat}${lost}`);
        }
      } catch (err) {
        const e = err as Error;
        ctx.log(`${tag} failed: ${e.message}${target ? `\n${target.output().slice(-2000)}` : ''}`);
        rounds.get(name)!.push(mqttRow(name, e, { round }));
      } finally {
        await target?.stop().catch((err: Error) => ctx.log(`${name} stop failed: ${err.message}`));
      }
    }
  }

  const rows: ResultRow[] = [];
  for (const [name, runs] of rounds) {
    const ok = runs.filter((r) => !r.error);
    if (ok.length === 0) {
      rows.push(runs[runs.length - 1]);
      continue;
    }
    const chosen = ok.reduce((a, b) => (better(a, b) ? b : a));
    // The load generator or the consumer (whichever is busier) working harder than the target
    // means it, not the target, may have set the row's rate: not a comparison (issue 15). The
    // reference row (the first target) keeps its name so the others' ratios still find it.
    const harness = chosen.metrics.harnessCpuPct;
    const own = chosen.metrics.cpuPct;
    const harnessBound = harness != null && own != null && harness > own;
    const m = chosen.metrics;
    const part = (m.loadgenCpuPct ?? 0) >= (m.consumerCpuPct ?? 0) ? 'load generator' : 'consumer';
    if (harnessBound) {
      notes.push(
        `${name}: INVALID as a comparison: the ${part} used ${harness.toFixed(0)}% CPU, more than ${name}'s ${own.toFixed(0)}%: the harness may have set this row's figures`,
      );
    }
    notes.push(`${name}: bound by ${chosen.detail?.boundBy ?? '-'} (CPU: ${describeParts(m)})`);
    rows.push({
      ...chosen,
      target: harnessBound && name !== starters[0][0] ? `${name} (invalid)` : name,
      detail: {
        ...chosen.detail,
        harnessBound,
        rounds: runs.map((r) => ({ metrics: r.metrics, error: r.error })),
      },
    });
    const c = (chosen.detail?.counters ?? {}) as Record<string, number>;
    const sink = sinkBatches(c);
    if (c.groupCommits > 0 && sink) {
      notes.push(
        `${name}: ${formatNumber(c.groupCommits, 0)} group commits (avg ${formatNumber(c.journalAppended / c.groupCommits, 1)} records), ` +
          `${formatNumber(sink.n, 0)} ${sink.what} (avg ${formatNumber(chosen.metrics.received! / sink.n, 1)} records)`,
      );
    }
    for (const r of runs) {
      const rc = (r.detail?.counters ?? {}) as Record<string, number>;
      if (rc.journalLastSeq !== undefined && rc.journalLastSeq !== rc.journalAppended) {
        notes.push(
          `${name} (round ${r.detail?.round}): the journal counted ${formatNumber(rc.journalAppended, 0)} records appended ` +
            `but its last seq moved by ${formatNumber(rc.journalLastSeq, 0)}: committed records share seqs (overwritten)`,
        );
      }
    }
    if (chosen.metrics.duplicates)
      notes.push(`${name}: ${chosen.metrics.duplicates} duplicate/out-of-order deliveries`);
    const lossy = ok.filter((r) => r.metrics.lost);
    if (lossy.length > 0) {
      const each = lossy.map(
        (r) =>
          `round ${r.detail?.round}: ${formatNumber(r.metrics.lost, 0)} of ${formatNumber(r.metrics.sent, 0)} ` +
          `(${formatNumber(r.metrics.lossPct, 2)} %)`,
      );
      notes.push(`${name}: lost ${each.join('; ')}`);
    }
    const other = chosen.metrics.otherCpuPct;
    if (other != null && other > NOISY_OTHER_CPU_PCT) {
      notes.push(`${name}: noisy run: ${other.toFixed(0)}% CPU used outside the target and the harness`);
    }
  }
  if (ctx.env.rounds > 1) {
    notes.push(`best of ${ctx.env.rounds} interleaved rounds by ${best.lower ? 'lowest ' : ''}${best.label}`);
  }
  return { rows, notes };
}

/** The sink's upstream calls over a run, from a target's counters (HTTP POSTs or gRPC Pushes). */
function sinkBatches(c: Record<string, number>): { n: number; what: string } | null {
  if (c.httpBatches > 0) return { n: c.httpBatches, what: 'HTTP batches' };
  if (c.grpcPushes > 0) return { n: c.grpcPushes, what: 'gRPC Pushes' };
  return null;
}
