// A real mosquitto broker for tests (Debian `mosquitto`): loopback only, a port of its own, a
// config file written per test. It can be stopped and started again on the same port, with its
// persistence file kept in between when `persistence` is on (a subscriber's session and queued
// messages then survive the restart, as on a real site broker).

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mosquittoBroker } from '../interop/peer-tools.ts';

export interface MosquittoOptions {
  /** Keep sessions and queued messages in `mosquitto.db` across stop/start (default false). */
  persistence?: boolean;
  /** Extra mosquitto.conf lines (e.g. `max_inflight_messages 0`). */
  extraConfig?: string[];
}

export interface MosquittoBroker {
  readonly port: number;
  readonly url: string;
  /** Starts again on the same port after `stop()`. */
  start(): Promise<void>;
  /** SIGTERM (mosquitto writes its persistence file on the way out) and waits for the exit. */
  stop(): Promise<void>;
  /** SIGKILL: nothing saved since the last autosave. */
  kill(): Promise<void>;
  /** stop() and removes the temp dir. */
  close(): Promise<void>;
  /** What mosquitto logged (stderr/stdout), for failure messages. */
  output(): string;
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startMosquitto(opts: MosquittoOptions = {}): Promise<MosquittoBroker> {
  const bin = mosquittoBroker().paths.mosquitto;
  if (!bin) throw new Error('mosquitto not found: install the Debian package mosquitto');
  const dir = mkdtempSync(join(tmpdir(), 'edgeferry-mosquitto-'));
  const port = await freeLoopbackPort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      opts.persistence ? 'persistence true' : 'persistence false',
      `persistence_location ${dir}/`,
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      // Started as root, mosquitto switches to the user `mosquitto`, who can neither write this
      // private temp dir (the persistence file) nor read a password file in it.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      ...(opts.extraConfig ?? []),
      '',
    ].join('\n'),
  );
  let proc: ChildProcess | null = null;
  let log = '';

  const exited = (p: ChildProcess): Promise<void> =>
    p.exitCode !== null || p.signalCode !== null
      ? Promise.resolve()
      : new Promise((r) => p.once('exit', () => r()));

  const broker: MosquittoBroker = {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    async start() {
      if (proc) throw new Error('mosquitto is already running');
      const p = spawn(bin, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
      proc = p;
      p.stdout?.on('data', (d: Buffer) => (log += d.toString()));
      p.stderr?.on('data', (d: Buffer) => (log += d.toString()));
      const deadline = Date.now() + 10_000;
      while (!(await canConnect(port))) {
        if (p.exitCode !== null) throw new Error(`mosquitto exited with ${p.exitCode}: ${log}`);
        if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port} within 10 s: ${log}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      const p = proc;
      if (!p) return;
      proc = null;
      p.kill('SIGTERM');
      await exited(p);
    },
    async kill() {
      const p = proc;
      if (!p) return;
      proc = null;
      p.kill('SIGKILL');
      await exited(p);
    },
    async close() {
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    output: () => log,
  };
  await broker.start();
  return broker;
}
