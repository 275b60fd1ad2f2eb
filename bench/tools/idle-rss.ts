// Idle RSS of the daemon, quickly and reproducibly: the figure backlog-1m reports as "idle RSS"
// without its minutes of load. Starts the daemon as the bench does (bench/lib/daemon.ts: one HTTP
// sink to a local receiver, gRPC server and admin enabled; BENCH_DAEMON, BENCH_NODE_FLAGS and
// BENCH_EDGEFERRY_CONFIG apply), waits 1 s after /readyz, reads VmRSS and its anon/file/shmem
// split from /proc/PID/status, then the V8 figures from /metrics (after the /proc reading, so the
// scrape does not inflate it). A fresh daemon per run; the median row is the figure to quote.
//
//   node bench/tools/idle-rss.ts [runs=3]
//   node bench/tools/idle-rss.ts --imports     RSS of a bare node after importing each dependency alone

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { binRuns, daemonCommand, startDaemon } from '../lib/daemon.ts';
import { readEnv } from '../lib/env.ts';
import { BenchReceiver } from '../lib/http-receiver.ts';
import { installExitHandlers } from '../lib/proc.ts';
import { daemonMemory } from '../lib/sink-status.ts';

const SETTLE_MS = 1000;

interface Mem {
  rss: number;
  anon: number;
  file: number;
  shmem: number;
}

function procMem(pid: number): Mem {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'), shmem: kb('RssShmem') };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function daemonRuns(runs: number): Promise<void> {
  const receiver = new BenchReceiver();
  await receiver.start();
  const rows: (Mem & { heapUsed: number; heapTotal: number; external: number })[] = [];
  for (let i = 0; i < runs; i++) {
    const d = await startDaemon({
      sinks: [{ name: 'bench', type: 'http', url: receiver.url }],
      overrides: readEnv().edgeferryOverrides ?? undefined,
    });
    try {
      await sleep(SETTLE_MS);
      const m = procMem(d.pid);
      const v8 = await daemonMemory(d);
      rows.push({
        ...m,
        heapUsed: v8?.heapUsedMb ?? Number.NaN,
        heapTotal: v8?.heapTotalMb ?? Number.NaN,
        external: v8?.externalMb ?? Number.NaN,
      });
    } finally {
      await d.stop();
    }
  }
  await receiver.close();
  const head = ['VmRSS', 'anon', 'file', 'shmem', 'heapUsed', 'heapTotal', 'external'];
  const keys = ['rss', 'anon', 'file', 'shmem', 'heapUsed', 'heapTotal', 'external'] as const;
  const line = (label: string, vals: number[]) =>
    `${label.padEnd(8)}${vals.map((v) => v.toFixed(1).padStart(10)).join('')}`;
  process.stdout.write(
    `daemon: ${process.env.BENCH_DAEMON ?? 'bin'} (runs ${binRuns()}/), node ${daemonCommand().args.join(' ')} ${JSON.stringify(daemonCommand().env)}; MB\n`,
  );
  process.stdout.write(`${''.padEnd(8)}${head.map((h) => h.padStart(10)).join('')}\n`);
  rows.forEach((r, i) => {
    process.stdout.write(
      `${line(
        `run ${i + 1}`,
        keys.map((k) => r[k]),
      )}\n`,
    );
  });
  process.stdout.write(
    `${line(
      'median',
      keys.map((k) => median(rows.map((r) => r[k]))),
    )}\n`,
  );
}

/** The dependencies (and Node's own stripping of a .ts entry) one at a time, each in a bare node. */
const IMPORTS = [
  '',
  'aedes',
  'level',
  'undici',
  '@grpc/grpc-js',
  '@grpc/proto-loader',
  'grpc-health-check',
  'protobufjs',
  'pino',
  'prom-client',
  'zod',
  'yaml',
  'mqtt-packet',
];

function importRuns(): void {
  const probe = `const m = process.argv[1]; if (m) await import(m); await new Promise((r) => setTimeout(r, 300));
const s = require('node:fs').readFileSync('/proc/self/status', 'utf8');
const kb = (n) => Number(new RegExp(n + ':\\\\s+(\\\\d+)').exec(s)[1]) / 1024;
console.log(JSON.stringify({ rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'), heap: process.memoryUsage().heapUsed / 2 ** 20 }));`;
  const base = new URL('../../', import.meta.url).pathname;
  const rows: [string, { rss: number; anon: number; file: number; heap: number }][] = [];
  for (const mod of IMPORTS) {
    const samples = [0, 1, 2].map(
      () =>
        JSON.parse(
          execFileSync(process.execPath, ['--input-type=commonjs', '-e', wrap(probe), mod], {
            cwd: base,
            encoding: 'utf8',
          }),
        ) as { rss: number; anon: number; file: number; heap: number },
    );
    const pick = (k: 'rss' | 'anon' | 'file' | 'heap') => median(samples.map((s) => s[k]));
    rows.push([
      mod || '(bare node)',
      { rss: pick('rss'), anon: pick('anon'), file: pick('file'), heap: pick('heap') },
    ]);
  }
  const bare = rows[0][1];
  process.stdout.write(
    `${'module'.padEnd(22)}${['VmRSS', '+RSS', 'anon', 'file', 'heapUsed'].map((h) => h.padStart(10)).join('')}\n`,
  );
  for (const [name, r] of rows) {
    process.stdout.write(
      `${name.padEnd(22)}${[r.rss, r.rss - bare.rss, r.anon, r.file, r.heap].map((v) => v.toFixed(1).padStart(10)).join('')}\n`,
    );
  }
}

/** CommonJS `-e` has no top-level await. */
function wrap(body: string): string {
  return `(async () => { ${body} })()`;
}

installExitHandlers();
if (process.argv[2] === '--imports') importRuns();
else await daemonRuns(Number(process.argv[2] ?? 3));
process.exit(0);
