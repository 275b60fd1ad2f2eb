// Runs the real daemon (`node bin/edgeferry.js run --config FILE`) as a child process with a
// generated config in a temp dir. The log level is `warn`, so nothing is logged while measuring
// and no 'listening' lines are there to read ports from: the harness picks free ports itself and
// polls GET /readyz on the admin port until it answers 200.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { distState } from '../../bin/dist-stamp.js';
import { readShebang } from '../../bin/shebang.js';
import { freePort, freeUdpPort, makeTempDir, ProcSampler, removeTempDir, stopChild, track } from './proc.ts';

export const BIN = new URL('../../bin/edgeferry.js', import.meta.url).pathname;
const DIST_CLI = new URL('../../dist/cli.js', import.meta.url).pathname;
const ROOT = new URL('../../', import.meta.url).pathname;

/**
 * What the daemon runs: `bin/edgeferry.js` as `npm start` and `npx edgeferry` do (default,
 * `BENCH_DAEMON=bin`: dist/ when it was built from the current src/, else src/ through type
 * stripping); `src`: the bin forced to src/ (EDGEFERRY_FROM_SRC=1); `dist`: dist/cli.js itself
 * (after `npm run build`), as a production image would. With the node flags of the bin's shebang
 * line (and the environment it sets, GLIBC_TUNABLES), or those of BENCH_NODE_FLAGS and
 * BENCH_NODE_ENV (`NAME=VALUE ...`) when set (empty: none).
 */
export function daemonCommand(): { args: string[]; env: Record<string, string> } {
  const shebang = readShebang(BIN);
  const flags = words(process.env.BENCH_NODE_FLAGS) ?? shebang.flags;
  const env = { ...(pairs(words(process.env.BENCH_NODE_ENV)) ?? shebang.env) };
  const which = process.env.BENCH_DAEMON ?? 'bin';
  if (which === 'bin') return { args: [...flags, BIN], env };
  if (which === 'src') return { args: [...flags, BIN], env: { ...env, EDGEFERRY_FROM_SRC: '1' } };
  if (which !== 'dist') throw new Error(`BENCH_DAEMON: expected bin, src or dist (got ${which})`);
  if (!existsSync(DIST_CLI)) throw new Error('BENCH_DAEMON=dist: run `npm run build` first');
  return { args: [...flags, DIST_CLI], env };
}

/** What BENCH_DAEMON=bin runs now: 'dist' or 'src' (stale or missing dist/), for the reports. */
export function binRuns(): 'dist' | 'src' {
  if (process.env.BENCH_DAEMON === 'src') return 'src';
  if (process.env.BENCH_DAEMON === 'dist') return 'dist';
  return distState(ROOT) === 'current' ? 'dist' : 'src';
}

function words(raw: string | undefined): string[] | undefined {
  return raw === undefined ? undefined : raw.split(/\s+/).filter((w) => w.length > 0);
}

function pairs(list: string[] | undefined): Record<string, string> | undefined {
  if (list === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const w of list) {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new Error(`BENCH_NODE_ENV: "${w}" is not NAME=VALUE`);
    out[w.slice(0, eq)] = w.slice(eq + 1);
  }
  return out;
}

export interface DaemonOptions {
  /** The `sinks:` list. */
  sinks: Record<string, unknown>[];
  /** Merged over the bench journal section (`fsync: false`). */
  journal?: Record<string, unknown>;
  /** Merged over the bench mqtt section. */
  mqtt?: Record<string, unknown>;
  /** Extra top-level sections (a later `coap:`, `modbus:`). */
  extra?: Record<string, unknown>;
  logLevel?: string;
  /** Deep-merged over the generated config last (BENCH_EDGEFERRY_CONFIG), for experiments. */
  overrides?: Record<string, unknown>;
  /** Extra node flags, e.g. ['--cpu-prof', '--cpu-prof-dir=DIR']. */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
}

export interface Daemon {
  proc: ChildProcess;
  pid: number;
  dir: string;
  configPath: string;
  mqttPort: number;
  adminPort: number;
  /** The Gateway API (Subscribe/Ack/Publish). */
  grpcPort: number;
  /** A fresh sampler of this process's RSS and CPU every 200 ms. */
  sampler(): ProcSampler;
  /** The last lines the daemon wrote (warnings and errors at level warn). */
  output(): string;
  /** GET an admin path, e.g. '/v1/status'. */
  admin(path: string): Promise<{ status: number; body: string }>;
  /** SIGTERM (graceful drain) and wait; removes the temp dir. */
  stop(): Promise<number | null>;
}

const OUTPUT_KEEP = 16_384;

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  let lastErr: unknown;
  // A port picked free can be taken before the daemon binds it: try again with new ones.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      lastErr = err;
      if (!/EADDRINUSE/.test((err as Error).message)) break;
    }
  }
  throw lastErr;
}

async function startOnce(opts: DaemonOptions): Promise<Daemon> {
  const dir = makeTempDir('edgeferry-bench-');
  const mqttPort = await freePort();
  let adminPort = await freePort();
  while (adminPort === mqttPort) adminPort = await freePort();
  let grpcPort = await freePort();
  while (grpcPort === mqttPort || grpcPort === adminPort) grpcPort = await freePort();
  const generated = {
    node: { id: 'bench' },
    journal: { path: join(dir, 'journal'), fsync: false, ...opts.journal },
    mqtt: { host: '127.0.0.1', port: mqttPort, ...opts.mqtt },
    admin: { host: '127.0.0.1', port: adminPort },
    grpc: { host: '127.0.0.1', port: grpcPort },
    // Not the default 0.0.0.0:5683: another daemon on the machine (a test, a second bench) may
    // hold it, and the daemon would not start. Same components loaded, on a free port.
    coap: { host: '127.0.0.1', port: await freeUdpPort() },
    log: { level: opts.logLevel ?? 'warn' },
    shutdown: { drainTimeoutMs: '2s' },
    ...opts.extra,
    sinks: opts.sinks,
  };
  const config = opts.overrides ? deepMerge(generated, opts.overrides) : generated;
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, stringify(config));

  const command = daemonCommand();
  const proc = track(
    spawn(process.execPath, [...(opts.nodeArgs ?? []), ...command.args, 'run', '--config', configPath], {
      cwd: dir,
      env: { ...process.env, NODE_NAME: '', ...command.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let out = '';
  const keep = (c: string) => {
    out += c;
    if (out.length > OUTPUT_KEEP) out = out.slice(-OUTPUT_KEEP);
  };
  proc.stdout!.setEncoding('utf8');
  proc.stderr!.setEncoding('utf8');
  proc.stdout!.on('data', (c: string) => {
    keep(c);
    // At level warn anything logged is worth seeing next to the numbers it may explain.
    for (const line of c.split('\n')) if (line.trim()) process.stderr.write(`[edgeferry] ${line}\n`);
  });
  proc.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let exitCode: number | null | undefined;
  void exited.then((c) => {
    exitCode = c;
  });

  const admin = (path: string) => httpGet(adminPort, path);
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (exitCode !== undefined) {
      removeTempDir(dir);
      throw new Error(`edgeferry exited (${exitCode}) before ready: ${out.slice(-2000)}`);
    }
    const r = await admin('/readyz').catch(() => null);
    if (r?.status === 200) break;
    if (Date.now() > deadline) {
      await stopChild(proc);
      removeTempDir(dir);
      throw new Error(`edgeferry not ready within ${opts.readyTimeoutMs ?? 30_000} ms: ${out.slice(-2000)}`);
    }
    await sleep(50);
  }

  return {
    proc,
    pid: proc.pid!,
    dir,
    configPath,
    mqttPort,
    adminPort,
    grpcPort,
    sampler: () => new ProcSampler(proc.pid!),
    output: () => out,
    admin,
    async stop() {
      const code = await stopChild(proc, 10_000);
      removeTempDir(dir);
      return code;
    },
  };
}

/** A one-shot GET on loopback without a keep-alive agent. */
export function httpGet(
  port: number,
  path: string,
  timeoutMs = 2000,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timeout`)));
    req.on('error', reject);
  });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `over` merged into `base`: objects recursively, everything else (lists too) replaced. */
export function deepMerge(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}
