// The MQTT load generator: raw MQTT 3.1.1 over `net`, N publisher connections, each keeping up
// to `inflight` unacknowledged QoS 1 publishes (or streaming QoS 0 under TCP backpressure),
// optionally paced to `rate` messages per second per connection. Every payload starts with its
// float64 BE send time (ms), so the receiving end computes latency.
//
// `runLoad` runs in the calling thread; `startLoadWorker` runs it in a worker thread so the
// generator and the receivers in the main thread do not share one event loop.

import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect } from 'node:tls';
import { prepareInWorker } from './load-worker.ts';
import {
  CONNACK,
  connectPacket,
  DISCONNECT_PACKET,
  MqttFramer,
  nowMs,
  PINGREQ_PACKET,
  PINGRESP,
  PUBACK,
  type PublishTemplate,
  publishTemplate,
} from './mqtt-codec.ts';
import { threadCpuSec } from './proc.ts';

export interface LoadOptions {
  host: string;
  port: number;
  /** Publisher connections. */
  publishers: number;
  /** Messages per publisher. */
  messages: number;
  qos: 0 | 1;
  /** Unacknowledged QoS 1 publishes per connection. */
  inflight: number;
  payloadBytes: number;
  /** Publisher i publishes on `${topicPrefix}/${i}`. */
  topicPrefix: string;
  clientIdPrefix: string;
  /** Whole run (connect to last ack); the run fails past it. */
  timeoutMs: number;
  /**
   * Messages per second per connection; 0 or absent: as fast as the QoS 1 window (or, for QoS 0,
   * TCP back-pressure) allows. Paced QoS 1 still never exceeds `inflight` unacknowledged.
   */
  rate?: number;
  /** Connect over TLS, trusting this CA (PEM) for a certificate valid for `localhost`. */
  tls?: { ca: string };
}

export const LOAD_DEFAULTS = {
  host: '127.0.0.1',
  publishers: 4,
  messages: 50_000,
  qos: 1,
  inflight: 100,
  payloadBytes: 200,
  topicPrefix: 'bench',
  clientIdPrefix: 'bench-pub',
  timeoutMs: 120_000,
} as const;

export interface ConnectionResult {
  clientId: string;
  sent: number;
  acked: number;
  /** Absolute ms (see `nowMs`). */
  firstSendAt: number;
  lastAckAt: number;
  /** acked / (lastAckAt - firstSendAt). */
  rate: number;
  /**
   * Paced runs: how far the connection fell behind its schedule at worst, ms (messages due but
   * not sent: the QoS 1 window was full, TCP pushed back, or the generator's loop was late).
   */
  maxLagMs: number;
}

export interface LoadResult {
  sent: number;
  /** PUBACKs for QoS 1; for QoS 0 the messages the broker had read when it answered a PINGREQ. */
  acked: number;
  startedAt: number;
  endedAt: number;
  /** Aggregate acked msgs/s. */
  rate: number;
  /** Mean of the per-connection rates. */
  perConnectionRate: number;
  /** Worst `maxLagMs` over the connections (0 when not paced). */
  maxLagMs: number;
  /** CPU seconds of the generator's own thread over `go()` (NaN where unknown). */
  cpuSec: number;
  connections: ConnectionResult[];
}

/** QoS 0 messages per write. */
const QOS0_CHUNK = 100;
/** Paced runs: how often the schedule is checked (a timer, so about 1 ms at best). */
const PACE_TICK_MS = 1;

class Publisher {
  readonly clientId: string;
  readonly opts: LoadOptions;
  private readonly tpl: PublishTemplate;
  /** `window` copies of the template back to back: one memcpy per refill. */
  private readonly templates: Buffer;
  private readonly socket: Socket;
  private readonly framer: MqttFramer;
  sent = 0;
  acked = 0;
  private outstanding = 0;
  private nextId = 1;
  firstSendAt = 0;
  lastAckAt = 0;
  /** Paced: the most messages that were due and not yet sent, at any check. */
  maxLag = 0;
  private readonly rate: number;
  private pacer: NodeJS.Timeout | null = null;
  private onConnack: ((err?: Error) => void) | null = null;
  private onPingresp: (() => void) | null = null;
  private finish: ((err?: Error) => void) | null = null;
  private failed: Error | null = null;

  constructor(opts: LoadOptions, index: number) {
    this.opts = opts;
    this.clientId = `${opts.clientIdPrefix}-${index}`;
    this.rate = opts.rate && opts.rate > 0 ? opts.rate : 0;
    this.tpl = publishTemplate(`${opts.topicPrefix}/${index}`, opts.qos, opts.payloadBytes);
    const window = opts.qos === 1 ? opts.inflight : QOS0_CHUNK;
    const len = this.tpl.packet.length;
    this.templates = Buffer.allocUnsafe(window * len);
    for (let i = 0; i < window; i++) this.tpl.packet.copy(this.templates, i * len);
    this.framer = new MqttFramer(this.onPacket);
    // A TLSSocket is written before its handshake completes: it queues until then.
    this.socket = opts.tls
      ? tlsConnect({ host: opts.host, port: opts.port, ca: opts.tls.ca, servername: 'localhost' }).setNoDelay(
          true,
        )
      : connect({ host: opts.host, port: opts.port, noDelay: true });
    this.socket.on('data', this.onData);
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('close', () => this.fail(new Error(`${this.clientId}: connection closed`)));
  }

  /** Resolves on CONNACK 0. */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.failed) return reject(this.failed);
      this.onConnack = (err) => (err ? reject(err) : resolve());
      this.socket.write(connectPacket(this.clientId));
    });
  }

  /** Publishes every message; resolves when the last one is acknowledged. */
  run(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.failed) return reject(this.failed);
      this.finish = (err) => (err ? reject(err) : resolve());
      this.firstSendAt = nowMs();
      if (this.opts.qos === 1) {
        this.refill();
        if (this.rate > 0) this.pacer = setInterval(this.refill, PACE_TICK_MS);
      } else {
        this.streamQos0();
      }
    });
  }

  close(): void {
    this.failed ??= new Error('closed');
    if (!this.socket.destroyed) this.socket.end(DISCONNECT_PACKET);
  }

  destroy(): void {
    this.failed ??= new Error('closed');
    this.socket.destroy();
  }

  private stopPacer(): void {
    if (this.pacer) clearInterval(this.pacer);
    this.pacer = null;
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = err;
    this.stopPacer();
    this.onConnack?.(err);
    this.finish?.(err);
  }

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.framer.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      this.socket.destroy();
      return;
    }
    if (this.opts.qos === 1 && this.finish !== null) this.refill();
  };

  private readonly onPacket = (header: number, buf: Buffer, start: number): void => {
    const type = header >> 4;
    if (type === PUBACK) {
      this.acked++;
      this.outstanding--;
      if (this.acked === this.opts.messages) {
        this.lastAckAt = nowMs();
        this.done();
      }
    } else if (type === CONNACK) {
      const rc = buf[start + 1];
      const cb = this.onConnack;
      this.onConnack = null;
      cb?.(rc === 0 ? undefined : new Error(`${this.clientId}: CONNACK return code ${rc}`));
    } else if (type === PINGRESP) {
      const cb = this.onPingresp;
      this.onPingresp = null;
      cb?.();
    }
  };

  private done(): void {
    this.stopPacer();
    const cb = this.finish;
    this.finish = null;
    cb?.();
  }

  /** Stamps `n` publishes from the template copies into one buffer. */
  private build(n: number): Buffer {
    const len = this.tpl.packet.length;
    const chunk = Buffer.allocUnsafe(n * len);
    this.templates.copy(chunk, 0, 0, n * len);
    const idOff = this.tpl.packetIdOffset;
    const payOff = this.tpl.payloadOffset;
    const now = nowMs();
    for (let i = 0, off = 0; i < n; i++, off += len) {
      if (idOff >= 0) {
        const id = this.nextId;
        this.nextId = id === 0xffff ? 1 : id + 1;
        chunk[off + idOff] = id >> 8;
        chunk[off + idOff + 1] = id & 0xff;
      }
      chunk.writeDoubleBE(now, off + payOff);
    }
    this.sent += n;
    return chunk;
  }

  /** Messages that may have been sent by now: all of them, or, paced, those due by the schedule. */
  private allowed(): number {
    if (this.rate === 0) return this.opts.messages;
    const due = Math.floor(((nowMs() - this.firstSendAt) * this.rate) / 1000) + 1;
    return Math.min(this.opts.messages, due);
  }

  /**
   * Tops the QoS 1 window up: everything the acks of one socket read freed goes out in one
   * buffer, one write (what cork/uncork around per-message writes would give, without the
   * per-message write calls). Paced, only what the schedule has made due (also on each tick).
   */
  private readonly refill = (): void => {
    if (this.finish === null || this.failed) return;
    const allowed = this.allowed();
    const n = Math.min(this.opts.inflight - this.outstanding, allowed - this.sent);
    if (this.rate > 0) {
      const lag = allowed - this.sent - Math.max(0, n);
      if (lag > this.maxLag) this.maxLag = lag;
      if (this.sent + Math.max(0, n) >= this.opts.messages) this.stopPacer();
    }
    if (n <= 0) return;
    this.outstanding += n;
    this.socket.write(this.build(n));
  };

  private async streamQos0(): Promise<void> {
    try {
      while (this.sent < this.opts.messages && !this.failed) {
        const allowed = this.allowed();
        if (allowed <= this.sent) {
          await sleep(PACE_TICK_MS);
          continue;
        }
        const n = Math.min(QOS0_CHUNK, allowed - this.sent);
        if (this.rate > 0 && allowed - this.sent - n > this.maxLag) this.maxLag = allowed - this.sent - n;
        if (!this.socket.write(this.build(n))) await this.drained();
      }
      // The broker answers a PINGREQ after it has read everything sent before it.
      await new Promise<void>((resolve) => {
        this.onPingresp = resolve;
        this.socket.write(PINGREQ_PACKET);
      });
      this.acked = this.sent;
      this.lastAckAt = nowMs();
      this.done();
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onClose = () => reject(this.failed ?? new Error('connection closed'));
      this.socket.once('close', onClose);
      this.socket.once('drain', () => {
        this.socket.off('close', onClose);
        resolve();
      });
    });
  }
}

/**
 * A prepared run: every publisher connected. `go()` starts publishing on all connections at once
 * and resolves with the result; `abort()` tears down.
 */
export interface PreparedLoad {
  go(): Promise<LoadResult>;
  abort(): void;
}

export async function prepareLoad(opts: LoadOptions): Promise<PreparedLoad> {
  const pubs = Array.from({ length: opts.publishers }, (_, i) => new Publisher(opts, i));
  const abort = () => {
    for (const p of pubs) p.destroy();
  };
  try {
    await withTimeout(Promise.all(pubs.map((p) => p.connect())), Math.min(opts.timeoutMs, 10_000), 'connect');
  } catch (err) {
    abort();
    throw err;
  }
  return {
    abort,
    async go() {
      const cpu0 = threadCpuSec();
      try {
        await withTimeout(
          Promise.all(pubs.map((p) => p.run())),
          opts.timeoutMs,
          `publishing ${opts.publishers} x ${opts.messages}`,
          () => `acked ${pubs.map((p) => `${p.acked}/${p.sent}`).join(', ')}`,
        );
      } catch (err) {
        abort();
        throw err;
      }
      for (const p of pubs) p.close();
      return { ...summarize(pubs), cpuSec: threadCpuSec() - cpu0 };
    },
  };
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  return (await prepareLoad(opts)).go();
}

function summarize(pubs: Publisher[]): Omit<LoadResult, 'cpuSec'> {
  const connections: ConnectionResult[] = pubs.map((p) => ({
    clientId: p.clientId,
    sent: p.sent,
    acked: p.acked,
    firstSendAt: p.firstSendAt,
    lastAckAt: p.lastAckAt,
    rate: p.acked / ((p.lastAckAt - p.firstSendAt) / 1000),
    maxLagMs: p.opts.rate ? (p.maxLag * 1000) / p.opts.rate : 0,
  }));
  const startedAt = Math.min(...connections.map((c) => c.firstSendAt));
  const endedAt = Math.max(...connections.map((c) => c.lastAckAt));
  const acked = connections.reduce((s, c) => s + c.acked, 0);
  return {
    sent: connections.reduce((s, c) => s + c.sent, 0),
    acked,
    startedAt,
    endedAt,
    rate: acked / ((endedAt - startedAt) / 1000),
    perConnectionRate: connections.reduce((s, c) => s + c.rate, 0) / connections.length,
    maxLagMs: Math.max(...connections.map((c) => c.maxLagMs)),
    connections,
  };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string, progress?: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: timed out after ${ms} ms${progress ? ` (${progress()})` : ''}`)),
      ms,
    );
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

// ---- worker thread ------------------------------------------------------------------------

/** `prepareLoad` in a worker thread (load-worker.ts): same contract, its own event loop. */
export function prepareLoadInWorker(opts: LoadOptions): Promise<PreparedLoad> {
  return prepareInWorker(new URL('./mqtt-load-worker.ts', import.meta.url), opts, 'load');
}
