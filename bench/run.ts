// The benchmark runner. `npm run bench` runs every default scenario; `npm run bench -- NAME...`
// runs the named ones; `--list` lists them. Each scenario prints a table (stdout) and writes
// bench/results/<scenario>-<iso time>.json. Knobs: BENCH_* environment variables (bench/README.md).

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { daemonCommand } from './lib/daemon.ts';
import { readEnv } from './lib/env.ts';
import { describeMachine, describeSource, machineInfo, sourceInfo } from './lib/machine.ts';
import { installExitHandlers, killAllChildren } from './lib/proc.ts';
import { formatTable, type ScenarioResult } from './lib/report.ts';
import { scenarios } from './scenarios/index.ts';

const RESULTS_DIR = new URL('./results/', import.meta.url).pathname;
/** Whole-run safety net: children are killed and the process exits past this. */
const DEADLINE_MS = Number(process.env.BENCH_DEADLINE_MS) || 20 * 60_000;

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function printResult(r: ScenarioResult): void {
  const out = [`\n== ${r.scenario} ==`, formatTable(r)];
  if (r.error) out.push(`error: ${r.error}`);
  for (const n of r.notes) out.push(`  ${n}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: { list: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  });
  if (values.help || values.list) {
    for (const s of scenarios)
      process.stdout.write(`${s.name}${s.default ? '' : ' (not default)'}\n  ${s.description}\n`);
    return 0;
  }
  const unknown = positionals.filter((n) => !scenarios.some((s) => s.name === n));
  if (unknown.length > 0) {
    process.stderr.write(
      `bench: unknown scenario ${unknown.join(', ')}; known: ${scenarios.map((s) => s.name).join(', ')}\n`,
    );
    return 2;
  }
  const selected =
    positionals.length > 0
      ? scenarios.filter((s) => positionals.includes(s.name))
      : scenarios.filter((s) => s.default);
  const env = readEnv();
  const machine = machineInfo();
  log(`machine: ${describeMachine(machine)}`);
  log(`source: ${describeSource(sourceInfo())}`);
  const daemon = daemonCommand();
  log(
    `daemon: node ${daemon.args.join(' ')} ${Object.entries(daemon.env)
      .map(([k, v]) => `(${k}=${v})`)
      .join(' ')}`,
  );
  log(`scenarios: ${selected.map((s) => s.name).join(', ')}`);
  mkdirSync(RESULTS_DIR, { recursive: true });

  const results: ScenarioResult[] = [];
  let failed = false;
  for (const s of selected) {
    const startedAt = new Date();
    // Per scenario: the tree can change under a long run.
    const source = sourceInfo();
    log(`${s.name}: start`);
    let result: ScenarioResult;
    try {
      const outcome = await s.run({ env, log: (m) => log(`${s.name}: ${m}`) });
      result = {
        scenario: s.name,
        description: s.description,
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        machine,
        source,
        ...outcome,
      };
    } catch (err) {
      result = {
        scenario: s.name,
        description: s.description,
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        machine,
        source,
        params: {},
        columns: [],
        rows: [],
        notes: [],
        error: (err as Error).stack ?? String(err),
      };
    }
    if (result.error || result.rows.some((r) => r.error)) failed = true;
    const file = join(RESULTS_DIR, `${s.name}-${startedAt.toISOString().replace(/:/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    log(`${s.name}: done in ${((Date.now() - startedAt.getTime()) / 1000).toFixed(1)} s -> ${file}`);
    printResult(result);
    results.push(result);
  }

  if (results.length > 1) {
    process.stdout.write(`\n==== summary (${describeMachine(machine)}) ====\n`);
    for (const r of results) printResult(r);
  }
  return failed ? 1 : 0;
}

installExitHandlers();
const watchdog = setTimeout(() => {
  log(`deadline of ${DEADLINE_MS} ms passed: stopping`);
  killAllChildren();
  process.exit(1);
}, DEADLINE_MS);
watchdog.unref();

main().then(
  (code) => {
    killAllChildren();
    process.exit(code);
  },
  (err) => {
    log(`fatal: ${(err as Error).stack ?? String(err)}`);
    killAllChildren();
    process.exit(1);
  },
);
