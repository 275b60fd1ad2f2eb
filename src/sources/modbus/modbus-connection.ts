// One Modbus TCP connection to one address (host:port), shared by every device (unit id) behind
// it. Requests go one at a time, as a serial gateway behind that address needs: the next is sent
// when the previous was answered or timed out. A dropped or failed connection is retried with
// backoff in the background; meanwhile requests fail at once ('disconnected') rather than wait,
// so a dead PLC costs its own polls nothing but a quality flag, and never delays another address.
//
// Framing and transaction ids are modbus-serial's; the timeout is ours, per request: a response
// that comes after its request gave up finds that request settled and is dropped.

import { connect, type Socket } from 'node:net';
import modbusSerial from 'modbus-serial';
import { backoffDelay } from '../../core/backoff.ts';
import type { Logger } from '../../core/logger.ts';
import type { RegisterArea } from './config.ts';

// A CommonJS module whose exports are the client class, with itself as `default` too.
const ModbusRTU = modbusSerial.default;
type ModbusRTU = InstanceType<typeof ModbusRTU>;

export type ConnectionState = 'connecting' | 'connected' | 'backoff' | 'stopped';

export type ModbusFailureKind = 'timeout' | 'exception' | 'disconnected' | 'protocol';

/** A request that got no result: `kind` says why; `exceptionCode` is the PLC's for an exception. */
export class ModbusRequestError extends Error {
  readonly kind: ModbusFailureKind;
  readonly exceptionCode: number | undefined;
  constructor(kind: ModbusFailureKind, message: string, exceptionCode?: number) {
    super(message);
    this.name = 'ModbusRequestError';
    this.kind = kind;
    this.exceptionCode = exceptionCode;
  }
}

/** Modbus exception codes (Modbus Application Protocol v1.1b3, section 7). */
export const EXCEPTION_NAMES: Record<number, string> = {
  1: 'illegal function',
  2: 'illegal data address',
  3: 'illegal data value',
  4: 'server device failure',
  5: 'acknowledge',
  6: 'server device busy',
  8: 'memory parity error',
  10: 'gateway path unavailable',
  11: 'gateway target device failed to respond',
};

export interface ConnectionOptions {
  host: string;
  port: number;
  retry: { minMs: number; maxMs: number };
  /** How long a TCP connect may take. */
  connectTimeoutMs: number;
  log: Logger;
}

type Callback = (err: (Error & { modbusCode?: number }) | null, res: { data: (number | boolean)[] }) => void;

interface Job {
  timeoutMs: number;
  send: (client: ModbusRTU, cb: Callback) => void;
  resolve: (data: (number | boolean)[]) => void;
  reject: (err: ModbusRequestError) => void;
}

// Timeouts in a row, with nothing answered in between, after which the connection is taken for
// dead (a PLC that lost power leaves the TCP connection open) and made again.
const TIMEOUTS_BEFORE_RECONNECT = 3;

export class ModbusConnection {
  readonly host: string;
  readonly port: number;
  state: ConnectionState = 'connecting';
  lastError: string | null = null;
  /** Connections made (the first included). */
  connects = 0;
  private readonly opts: ConnectionOptions;
  private socket: Socket | null = null;
  private client: ModbusRTU | null = null;
  private readonly queue: Job[] = [];
  /** Fails the request on the wire, if one is. */
  private current: ((err: ModbusRequestError) => void) | null = null;
  private attempt = 0;
  private timeoutsInRow = 0;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(opts: ConnectionOptions) {
    this.opts = opts;
    this.host = opts.host;
    this.port = opts.port;
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  start(): void {
    this.open();
  }

  stop(): void {
    this.state = 'stopped';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.socket?.destroy();
    this.failAll('gateway stopping');
  }

  /** Reads `count` registers (words) or coils/inputs (booleans) of `area` from `unitId`. */
  read(unitId: number, area: RegisterArea, address: number, count: number, timeoutMs: number) {
    return this.request(timeoutMs, (c, cb) => {
      if (area === 'holding') c.writeFC3(unitId, address, count, cb as never);
      else if (area === 'input') c.writeFC4(unitId, address, count, cb as never);
      else if (area === 'coil') c.writeFC1(unitId, address, count, cb as never);
      else c.writeFC2(unitId, address, count, cb as never);
    });
  }

  /** Writes holding registers (function 6 for one word, 16 for more). */
  writeRegisters(unitId: number, address: number, words: number[], timeoutMs: number) {
    return this.request(timeoutMs, (c, cb) => {
      if (words.length === 1) c.writeFC6(unitId, address, words[0], cb as never);
      else c.writeFC16(unitId, address, words, cb as never);
    });
  }

  /** Writes one coil (function 5). */
  writeCoil(unitId: number, address: number, state: boolean, timeoutMs: number) {
    return this.request(timeoutMs, (c, cb) => c.writeFC5(unitId, address, state, cb as never));
  }

  private request(timeoutMs: number, send: Job['send']): Promise<(number | boolean)[]> {
    if (this.state === 'backoff' || this.state === 'stopped')
      return Promise.reject(
        new ModbusRequestError(
          'disconnected',
          `not connected to ${this.host}:${this.port}: ${this.lastError}`,
        ),
      );
    return new Promise((resolve, reject) => {
      // While connecting, wait for it: the connect is bounded by connectTimeoutMs.
      this.queue.push({ timeoutMs, send, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    if (this.current !== null || this.state !== 'connected' || this.queue.length === 0) return;
    const job = this.queue.shift() as Job;
    const client = this.client as ModbusRTU;
    const socket = this.socket as Socket;
    let settled = false;
    const finish = (err: ModbusRequestError | null, data?: (number | boolean)[]) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.current = null;
      if (err) job.reject(err);
      else job.resolve(data as (number | boolean)[]);
      if (err === null || err.kind === 'exception') {
        // The PLC answers: the connection is good, so a later drop starts its backoff afresh.
        this.timeoutsInRow = 0;
        this.attempt = 0;
      } else if (err.kind === 'timeout' && ++this.timeoutsInRow >= TIMEOUTS_BEFORE_RECONNECT) {
        return this.drop(socket, `${this.timeoutsInRow} requests in a row timed out`);
      } else if (err.kind === 'protocol') {
        // A malformed or mismatched response: the stream may be out of step, so start afresh.
        return this.drop(socket, err.message);
      }
      this.pump();
    };
    const timer = setTimeout(
      () => finish(new ModbusRequestError('timeout', `no answer within ${job.timeoutMs} ms`)),
      job.timeoutMs,
    );
    this.current = (e) => finish(e);
    try {
      job.send(client, (err, res) => {
        if (err === null) return finish(null, res.data);
        if (typeof err.modbusCode === 'number')
          return finish(
            new ModbusRequestError(
              'exception',
              `exception ${err.modbusCode} (${EXCEPTION_NAMES[err.modbusCode] ?? 'unknown'})`,
              err.modbusCode,
            ),
          );
        if (err.name === 'PortNotOpenError')
          return finish(new ModbusRequestError('disconnected', `not connected to ${this.host}:${this.port}`));
        finish(new ModbusRequestError('protocol', `bad response: ${err.message}`));
      });
    } catch (err) {
      finish(new ModbusRequestError('protocol', `bad request: ${(err as Error).message}`));
    }
  }

  /** Ends a connection taken for broken; its close handler fails the queue and schedules the retry. */
  private drop(socket: Socket, why: string): void {
    this.lastError = why;
    this.state = 'backoff';
    socket.destroy();
  }

  private failAll(why: string): void {
    const err = new ModbusRequestError('disconnected', why);
    this.current?.(err);
    for (const job of this.queue.splice(0)) job.reject(err);
  }

  private open(): void {
    if (this.state === 'stopped') return;
    this.state = 'connecting';
    const socket = connect({
      host: this.host,
      port: this.port,
      noDelay: true,
      // A PLC that vanished without a FIN is found by keepalive even when nothing is polled.
      keepAlive: true,
      keepAliveInitialDelay: 10_000,
    });
    this.socket = socket;
    let why: string | null = null;
    const connectTimer = setTimeout(() => {
      why = `connect timed out after ${this.opts.connectTimeoutMs} ms`;
      socket.destroy();
    }, this.opts.connectTimeoutMs);
    socket.on('error', (err) => {
      why ??= err.message;
    });
    socket.once('connect', () => {
      clearTimeout(connectTimer);
      const client = new ModbusRTU();
      client.linkTCP(socket, { port: this.port }, (err?: Error) => {
        if (err) {
          why ??= err.message;
          socket.destroy();
          return;
        }
        if (socket.destroyed) return;
        this.client = client;
        this.connects++;
        this.timeoutsInRow = 0;
        this.state = 'connected';
        this.opts.log.info({ host: this.host, port: this.port }, 'modbus connected');
        this.pump();
      });
    });
    socket.once('close', () => {
      clearTimeout(connectTimer);
      if (this.socket !== socket) return;
      const wasConnected = this.client !== null;
      this.socket = null;
      this.client = null;
      if (this.state === 'stopped') return;
      // drop() set the reason when the gateway ended the connection itself.
      if (this.state !== 'backoff') this.lastError = why ?? 'connection closed by the device';
      this.state = 'backoff';
      this.failAll(`connection to ${this.host}:${this.port} lost: ${this.lastError}`);
      const first = this.attempt === 0;
      const delay = backoffDelay(this.opts.retry, this.attempt++);
      const fields = { host: this.host, port: this.port, err: this.lastError, retryInMs: Math.round(delay) };
      // One warning when a connection is lost or first fails; the retries after it are debug.
      if (wasConnected) this.opts.log.warn(fields, 'modbus connection lost: reconnecting');
      else if (first) this.opts.log.warn(fields, 'modbus connect failed: retrying with backoff');
      else this.opts.log.debug(fields, 'modbus connect failed: retrying');
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.open();
      }, delay);
    });
  }
}
