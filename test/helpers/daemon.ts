// Runs the real daemon as a child process (`node bin/edgeferry.js run --config FILE`), with
// listeners on port 0, and learns the bound ports from its JSON log lines.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { readShebang } from '../../bin/shebang.js';

export const BIN = new URL('../../bin/edgeferry.js', import.meta.url).pathname;

export interface DaemonHandle {
  proc: ChildProcess;
  dir: string;
  configPath: string;
  mqttPort: number;
  coapPort: number;
  adminPort: number;
  grpcPort: number;
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[];
  /** Raw stderr. */
  stderr: () => string;
  /** Resolves with the first log line matching `pred` (already seen or still to come). */
  waitForLog(
    pred: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  status(): Promise<StatusDoc>;
  metrics(): Promise<string>;
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  exited: Promise<number | null>;
}

export interface StatusDoc {
  ready: boolean;
  journal: {
    records: number;
    bytes: number;
    lastSeq: number;
    firstSeq: number;
    counters: Record<string, number>;
    epoch: string;
  };
  sources: { name: string; counters: Record<string, number> }[];
  sinks: {
    name: string;
    state: string;
    backlog: number;
    cursor: number;
    delivered: number;
    deadLettered: number;
    retries: number;
  }[];
}

/** A fresh temporary directory for one test's journal and config. */
export function tempDir(prefix = 'edgeferry-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The config object the tests start from: loopback, port 0 everywhere, a journal in `dir`. */
export function baseConfig(dir: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    node: { id: 'test-node' },
    journal: { path: join(dir, 'journal') },
    mqtt: { host: '127.0.0.1', port: 0 },
    coap: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    grpc: { host: '127.0.0.1', port: 0 },
    log: { level: 'info' },
    shutdown: { drainTimeoutMs: '2s' },
    ...overrides,
  };
}

export function writeConfig(dir: string, config: Record<string, unknown>, name = 'config.yaml'): string {
  const path = join(dir, name);
  writeFileSync(path, stringify(config));
  return path;
}

/** The node flags and environment of the bin's shebang line: what `npm start` runs. */
export const SHEBANG = readShebang(BIN);

/** Starts the daemon on `configPath` (or reuses `dir`'s config) and waits until it is ready. */
export async function startDaemon(
  dir: string,
  configPath: string,
  opts: {
    readyTimeoutMs?: number;
    /** Another command line (an image's ENTRYPOINT and CMD), its working directory and environment. */
    command?: { file: string; args: string[]; cwd: string; env: NodeJS.ProcessEnv };
  } = {},
): Promise<DaemonHandle> {
  const cmd = opts.command ?? {
    file: process.execPath,
    args: [...SHEBANG.flags, BIN, 'run', '--config', configPath],
    cwd: dir,
    env: { ...process.env, ...SHEBANG.env, NODE_NAME: '' },
  };
  const proc = spawn(cmd.file, cmd.args, {
    cwd: cmd.cwd,
    env: cmd.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const waiters: {
    pred: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }[] = [];
  let buf = '';
  let stderr = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (chunk: string) => {
    buf += chunk;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line);
      } catch {
        obj = { msg: line, unparsed: true };
      }
      logs.push(obj);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i].pred(obj)) {
          waiters[i].resolve(obj);
          waiters.splice(i, 1);
        }
      }
    }
  });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (c: string) => {
    stderr += c;
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));

  const waitForLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 15_000) => {
    const seen = logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(
            `daemon log line not seen within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}; last logs: ${JSON.stringify(logs.slice(-5))}`,
          ),
        );
      }, timeoutMs);
      waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(
          new Error(
            `daemon exited (${code}) before the log line; stderr: ${stderr.slice(-2000)}; last logs: ${JSON.stringify(logs.slice(-5))}`,
          ),
        );
      });
    });
  };

  await waitForLog((l) => l.msg === 'edgeferry ready', opts.readyTimeoutMs ?? 30_000);
  const mqtt = logs.find((l) => l.msg === 'mqtt listening');
  const admin = logs.find((l) => l.msg === 'admin listening');
  const adminPort = Number(admin?.port ?? 0);
  const handle: DaemonHandle = {
    proc,
    dir,
    configPath,
    mqttPort: Number(mqtt?.port ?? 0),
    coapPort: Number(logs.find((l) => l.msg === 'coap listening')?.port ?? 0),
    grpcPort: Number(logs.find((l) => l.msg === 'grpc listening')?.port ?? 0),
    adminPort,
    logs,
    stderr: () => stderr,
    waitForLog,
    exited,
    async status() {
      const res = await fetch(`http://127.0.0.1:${adminPort}/v1/status`);
      return (await res.json()) as StatusDoc;
    },
    async metrics() {
      const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
      return res.text();
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
  return handle;
}

/** Polls `fn` until it returns true (no timing assertion: a deadline only to fail clearly). */
export async function eventually(
  fn: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 30_000,
  everyMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`gave up waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
