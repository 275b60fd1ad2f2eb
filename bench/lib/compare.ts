// Runs one MQTT load against edgeferry and the requested baselines, side by side: targets are
// interleaved round by round (edgeferry, aedes, mosquitto, edgeferry, ...) so background noise
// falls on all of them alike, each round on a freshly started target. With several rounds the
// row of a target is its best round by ingest rate (noise only ever slows a run down); every
// round is kept in the JSON.

import { type MqttRunSpec, measureMqtt, mqttRow } from './mqtt-run.ts';
import { formatNumber, type ResultRow } from './report.ts';
import type { ScenarioContext } from './scenario.ts';
import { type MqttTarget, mosquittoInstalled, startAedes, startMosquitto } from './targets.ts';

/** Above this much CPU used by others during a run, the result gets a "noisy" note. */
const NOISY_OTHER_CPU_PCT = 25;

export async function compareTargets(
  ctx: ScenarioContext,
  spec: MqttRunSpec,
  edgeferry: () => Promise<MqttTarget>,
): Promise<{ rows: ResultRow[]; notes: string[] }> {
  const notes: string[] = [];
  const starters: [string, () => Promise<MqttTarget>][] = [['edgeferry', edgeferry]];
  for (const b of ctx.env.baselines) {
    if (b === 'aedes') starters.push(['aedes', startAedes]);
    if (b === 'mosquitto') {
      if (mosquittoInstalled()) starters.push(['mosquitto', startMosquitto]);
      else notes.push('mosquitto is not installed: baseline skipped');
    }
  }
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
        if (c.groupCommits > 0 && c.httpBatches > 0) {
          ctx.log(
            `${tag}: ${formatNumber(run.metrics.ingestRate, 0)} msg/s; ${formatNumber(c.groupCommits, 0)} group commits ` +
              `(avg ${formatNumber(c.journalAppended / c.groupCommits, 1)} records), ${formatNumber(c.httpBatches, 0)} HTTP ` +
              `batches (avg ${formatNumber(run.metrics.received! / c.httpBatches, 1)} records)`,
          );
        } else {
          ctx.log(`${tag}: ${formatNumber(run.metrics.ingestRate, 0)} msg/s`);
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
    const best = ok.reduce((a, b) => ((b.metrics.ingestRate ?? 0) > (a.metrics.ingestRate ?? 0) ? b : a));
    rows.push({
      ...best,
      detail: { ...best.detail, rounds: runs.map((r) => ({ metrics: r.metrics, error: r.error })) },
    });
    const c = (best.detail?.counters ?? {}) as Record<string, number>;
    if (c.groupCommits > 0 && c.httpBatches > 0) {
      notes.push(
        `${name}: ${formatNumber(c.groupCommits, 0)} group commits (avg ${formatNumber(c.journalAppended / c.groupCommits, 1)} records), ` +
          `${formatNumber(c.httpBatches, 0)} HTTP batches (avg ${formatNumber(best.metrics.received! / c.httpBatches, 1)} records)`,
      );
    }
    if (best.metrics.duplicates)
      notes.push(`${name}: ${best.metrics.duplicates} duplicate/out-of-order deliveries`);
    const other = best.metrics.otherCpuPct;
    if (other != null && other > NOISY_OTHER_CPU_PCT) {
      notes.push(`${name}: noisy run: ${other.toFixed(0)}% CPU used outside the target and the harness`);
    }
  }
  if (ctx.env.rounds > 1) notes.push(`best of ${ctx.env.rounds} interleaved rounds by ingest msg/s`);
  return { rows, notes };
}
