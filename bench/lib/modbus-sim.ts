// Simulated PLCs for the `modbus` scenario: N Modbus TCP servers on 127.0.0.1, each its own
// listener (port 0, the ports reported back), each with R holding registers whose values move
// on every read (register i of device d = served reads of d + d + i, mod 2^16), answering
// FC 3 (read holding registers) and nothing else (exception 01 for any other function, 02 for a
// range past R).
//
// A minimal responder on node:net rather than modbus-serial's ServerTCP: a request is parsed
// from the MBAP header (transaction id, protocol 0, length, unit id) and answered in one write,
// so 1000 requests/s over 100 listeners cost a few % of one core. The simulator runs in a child
// process of its own (`startModbusSim`, entry `modbus-sim-process.ts`), so its CPU is charged
// neither to the harness's main loop (where the receivers run) nor to the daemon; it is sampled
// like a baseline broker.

import { type ChildProcess, fork } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { ProcSampler, stopChild, track } from './proc.ts';

export interface ModbusSimOptions {
  devices: number;
  /** Holding registers per device, at addresses 0..registers-1. */
  registers: number;
  host?: string;
}

export interface ModbusSimStats {
  /** FC 3 requests answered with data, per device (index = device). */
  served: number[];
  /** Requests answered with an exception (other function, range past the registers). */
  exceptions: number;
  /** TCP connections accepted over the simulator's life, and open now. */
  accepted: number;
  open: number;
}

const MBAP = 7;
const FC_READ_HOLDING = 3;
/** Modbus exception codes. */
const ILLEGAL_FUNCTION = 1;
const ILLEGAL_ADDRESS = 2;

/** One simulated PLC: a listener answering FC 3 over its `registers` holding registers. */
class Plc {
  served = 0;
  exceptions = 0;
  accepted = 0;
  open = 0;
  readonly server: Server;
  private readonly index: number;
  private readonly registers: number;

  constructor(index: number, registers: number) {
    this.index = index;
    this.registers = registers;
    this.server = createServer((socket) => this.connection(socket));
  }

  private connection(socket: Socket): void {
    this.accepted++;
    this.open++;
    socket.setNoDelay(true);
    let pending: Buffer | null = null;
    socket.on('data', (chunk: Buffer) => {
      let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
      pending = null;
      const out: Buffer[] = [];
      while (buf.length >= MBAP + 1) {
        const len = buf.readUInt16BE(4);
        if (len < 2 || len > 254) {
          // Not Modbus: a real device would drop the connection too.
          socket.destroy();
          return;
        }
        const end = 6 + len;
        if (buf.length < end) break;
        out.push(this.answer(buf.subarray(0, end)));
        buf = buf.subarray(end);
      }
      if (buf.length > 0) pending = Buffer.from(buf);
      if (out.length > 0) socket.write(out.length === 1 ? out[0] : Buffer.concat(out));
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.open--;
    });
  }

  /** The response ADU to one request ADU. */
  private answer(req: Buffer): Buffer {
    const fc = req[MBAP];
    if (fc !== FC_READ_HOLDING || req.length < MBAP + 5) return this.exception(req, fc, ILLEGAL_FUNCTION);
    const addr = req.readUInt16BE(MBAP + 1);
    const count = req.readUInt16BE(MBAP + 3);
    if (count < 1 || count > 125 || addr + count > this.registers)
      return this.exception(req, fc, ILLEGAL_ADDRESS);
    const n = this.served++;
    const res = Buffer.allocUnsafe(MBAP + 2 + 2 * count);
    req.copy(res, 0, 0, 4); // transaction id, protocol id
    res.writeUInt16BE(3 + 2 * count, 4);
    res[6] = req[6]; // unit id, echoed
    res[MBAP] = FC_READ_HOLDING;
    res[MBAP + 1] = 2 * count;
    const base = n + this.index;
    for (let i = 0; i < count; i++) res.writeUInt16BE((base + addr + i) & 0xffff, MBAP + 2 + 2 * i);
    return res;
  }

  private exception(req: Buffer, fc: number, code: number): Buffer {
    this.exceptions++;
    const res = Buffer.allocUnsafe(MBAP + 2);
    req.copy(res, 0, 0, 4);
    res.writeUInt16BE(3, 4);
    res[6] = req[6];
    res[MBAP] = (fc | 0x80) & 0xff;
    res[MBAP + 1] = code;
    return res;
  }
}

/** The simulator itself, in the calling process (the child entry runs this). */
export class ModbusSimServer {
  private readonly plcs: Plc[] = [];
  private readonly opts: ModbusSimOptions;

  constructor(opts: ModbusSimOptions) {
    this.opts = opts;
  }

  /** Listens with every device; resolves to their ports, in device order. */
  async start(): Promise<number[]> {
    const host = this.opts.host ?? '127.0.0.1';
    const ports: number[] = [];
    for (let d = 0; d < this.opts.devices; d++) {
      const plc = new Plc(d, this.opts.registers);
      this.plcs.push(plc);
      await new Promise<void>((resolve, reject) => {
        plc.server.once('error', reject);
        plc.server.listen(0, host, () => resolve());
      });
      const addr = plc.server.address();
      ports.push(typeof addr === 'object' && addr ? addr.port : 0);
    }
    return ports;
  }

  stats(): ModbusSimStats {
    let exceptions = 0;
    let accepted = 0;
    let open = 0;
    for (const p of this.plcs) {
      exceptions += p.exceptions;
      accepted += p.accepted;
      open += p.open;
    }
    return { served: this.plcs.map((p) => p.served), exceptions, accepted, open };
  }

  close(): void {
    for (const p of this.plcs) p.server.close();
  }
}

/** Messages between the bench process and the simulator's process. */
export type SimRequest = { type: 'stats' };
export type SimReply =
  | { type: 'listening'; ports: number[] }
  | { type: 'stats'; stats: ModbusSimStats }
  | { type: 'error'; message: string };

export interface ModbusSim {
  pid: number;
  host: string;
  /** Device d listens on ports[d]. */
  ports: number[];
  stats(): Promise<ModbusSimStats>;
  sampler(): ProcSampler;
  stop(): Promise<void>;
}

const ENTRY = new URL('./modbus-sim-process.ts', import.meta.url).pathname;

/** The simulator in a child process of its own; resolves once every device listens. */
export async function startModbusSim(opts: ModbusSimOptions): Promise<ModbusSim> {
  const host = opts.host ?? '127.0.0.1';
  const child: ChildProcess = track(
    fork(ENTRY, [JSON.stringify({ ...opts, host })], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] }),
  );
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => {
    err = (err + c).slice(-4096);
  });
  const waiting = new Set<(r: SimReply) => void>();
  child.on('message', (m: SimReply) => {
    for (const w of waiting) w(m);
  });
  const next = (type: SimReply['type'], timeoutMs: number) =>
    new Promise<SimReply>((resolve, reject) => {
      const done = (r: SimReply | null, e?: Error) => {
        clearTimeout(timer);
        waiting.delete(onReply);
        child.off('exit', onExit);
        if (e) reject(e);
        else resolve(r!);
      };
      const onReply = (r: SimReply) => {
        if (r.type === 'error') done(null, new Error(`modbus simulator: ${r.message}`));
        else if (r.type === type) done(r);
      };
      const onExit = (code: number | null) =>
        done(null, new Error(`modbus simulator exited (${code}): ${err}`));
      const timer = setTimeout(
        () => done(null, new Error(`modbus simulator: no ${type} within ${timeoutMs} ms: ${err}`)),
        timeoutMs,
      );
      waiting.add(onReply);
      child.once('exit', onExit);
    });
  let ports: number[];
  try {
    const r = await next('listening', 15_000);
    ports = (r as { ports: number[] }).ports;
  } catch (e) {
    await stopChild(child, 1000);
    throw e;
  }
  return {
    pid: child.pid!,
    host,
    ports,
    async stats() {
      const reply = next('stats', 5000);
      child.send({ type: 'stats' } satisfies SimRequest);
      return ((await reply) as { stats: ModbusSimStats }).stats;
    },
    sampler: () => new ProcSampler(child.pid!),
    async stop() {
      await stopChild(child, 2000);
    },
  };
}
