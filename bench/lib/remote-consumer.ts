// The parent side of consumer-process.ts: a `Consumer` whose receiving end (HTTP receiver, gRPC
// Ingest receiver, MQTT subscriber) runs in a child process, so the bench process holds only the
// load generator and the samplers, and the consumer's CPU is counted on its own.

import { type ChildProcess, fork } from 'node:child_process';
import { type Consumer, LatencySnapshot, type LatencyView } from './consumer.ts';
import type {
  ChildMessage,
  ConsumerSpec,
  ConsumerState,
  LatencySnapshotData,
  ParentMessage,
} from './consumer-process.ts';
import { stopChild, track } from './proc.ts';

const CHILD = new URL('./consumer-process.ts', import.meta.url).pathname;
const START_TIMEOUT_MS = 15_000;
const SYNC_TIMEOUT_MS = 10_000;

const EMPTY = (gen: number): ConsumerState => ({
  gen,
  received: 0,
  firstAt: 0,
  lastAt: 0,
  duplicates: 0,
  batches: 0,
});

export class RemoteConsumer implements Consumer {
  /** HTTP: the port it listens on; gRPC: its host:port. */
  port = 0;
  target = '';
  private readonly child: ChildProcess;
  private state: ConsumerState = EMPTY(0);
  private snapshot: LatencySnapshotData = { count: 0, max: Number.NaN, percentiles: [] };
  private syncs = new Map<number, () => void>();
  private nextSync = 1;
  private stderr = '';
  private failure: Error | null = null;
  private closing = false;
  private readonly onClose: (() => Promise<void>) | null;

  private constructor(child: ChildProcess, onClose: (() => Promise<void>) | null) {
    this.child = child;
    this.onClose = onClose;
  }

  /** Forks the consumer process and waits until it listens (HTTP, gRPC) or has its SUBACK (MQTT). */
  static async start(spec: ConsumerSpec, onClose?: () => Promise<void>): Promise<RemoteConsumer> {
    // No inherited execArgv: the bench's own flags (e.g. --cpu-prof) are not the consumer's.
    const child = track(fork(CHILD, [], { execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] }));
    const rc = new RemoteConsumer(child, onClose ?? null);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (c: string) => {
      rc.stderr = (rc.stderr + c).slice(-4096);
    });
    const started = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${spec.kind} consumer process not started within ${START_TIMEOUT_MS} ms`)),
        START_TIMEOUT_MS,
      );
      child.on('message', (m: ChildMessage) => {
        if (m.t === 'started') {
          clearTimeout(timer);
          rc.port = m.port ?? 0;
          rc.target = m.target ?? '';
          resolve();
        } else if (m.t === 'error') {
          clearTimeout(timer);
          reject(new Error(`${spec.kind} consumer: ${m.message}`));
        } else rc.onMessage(m);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (!rc.closing)
          rc.failure = new Error(
            `${spec.kind} consumer process exited (${code ?? signal}): ${rc.stderr.trim()}`,
          );
        reject(rc.failure ?? new Error(`${spec.kind} consumer process closed`));
        for (const done of rc.syncs.values()) done();
      });
    });
    rc.send({ op: 'start', spec });
    try {
      await started;
    } catch (err) {
      await stopChild(child, 1000);
      throw err;
    }
    return rc;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Throws once the process has died: a wait polling it fails with the reason, not a timeout. */
  get received(): number {
    if (this.failure) throw this.failure;
    return this.state.received;
  }

  get firstAt(): number {
    return this.state.firstAt;
  }

  get lastAt(): number {
    return this.state.lastAt;
  }

  get duplicates(): number {
    return this.state.duplicates;
  }

  /** HTTP requests or gRPC Pushes since the reset. */
  get batches(): number {
    return this.state.batches;
  }

  get latency(): LatencyView {
    const s = this.snapshot;
    return new LatencySnapshot(s.count, s.max, s.percentiles);
  }

  /** `url` of the HTTP receiver (kind 'http'). */
  get url(): string {
    return `http://127.0.0.1:${this.port}/ingest`;
  }

  reset(): void {
    // States pushed before the child saw this reset carry the older generation and are dropped.
    const gen = this.state.gen + 1;
    this.state = EMPTY(gen);
    this.snapshot = { count: 0, max: Number.NaN, percentiles: [] };
    this.send({ op: 'reset', gen });
  }

  async sync(): Promise<void> {
    if (this.failure) throw this.failure;
    const id = this.nextSync++;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`consumer process: no sync within ${SYNC_TIMEOUT_MS} ms`)),
        SYNC_TIMEOUT_MS,
      );
      this.syncs.set(id, resolve);
      this.send({ op: 'sync', id });
    }).finally(() => {
      clearTimeout(timer);
      this.syncs.delete(id);
    });
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.send({ op: 'close' });
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await this.onClose?.();
  }

  private send(m: ParentMessage): void {
    if (this.child.connected) this.child.send(m);
  }

  private onMessage(m: ChildMessage): void {
    if (m.t === 'state') {
      if (m.state.gen === this.state.gen) this.state = m.state;
    } else if (m.t === 'synced') {
      if (m.state.gen === this.state.gen) {
        this.state = m.state;
        this.snapshot = m.latency;
      }
      this.syncs.get(m.id)?.();
    }
  }
}
