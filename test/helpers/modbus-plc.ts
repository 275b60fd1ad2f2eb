// A Modbus TCP server for the tests, written from the spec (Modbus Application Protocol v1.1b3
// and Modbus Messaging on TCP/IP v1.0b): per-unit memory, a log of every request, and switches
// to stop answering or to answer with an exception. It is deliberately not the client library's
// own server, so a framing mistake shared by both sides cannot pass unseen; the pymodbus interop
// test is the independent check against a third party.

import { createServer, type Server, type Socket } from 'node:net';

export interface UnitMemory {
  holding: Uint16Array;
  input: Uint16Array;
  coil: Uint8Array;
  discrete: Uint8Array;
}

export interface PlcRequest {
  unitId: number;
  fc: number;
  address: number;
  count: number;
}

export function newUnitMemory(size = 1024): UnitMemory {
  return {
    holding: new Uint16Array(size),
    input: new Uint16Array(size),
    coil: new Uint8Array(size),
    discrete: new Uint8Array(size),
  };
}

export class TestPlc {
  readonly units = new Map<number, UnitMemory>();
  readonly requests: PlcRequest[] = [];
  /** When true, requests are read and logged but never answered. */
  silent = false;
  /** Answer every request with this exception code instead (0: off). */
  exception = 0;
  /** Answer this many ms late (a slow PLC, or a serial line behind a gateway). */
  delayMs = 0;
  /** Connections accepted, and the most requests one connection ever had unanswered at once. */
  connections = 0;
  maxOutstanding = 0;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  unit(id: number): UnitMemory {
    let m = this.units.get(id);
    if (!m) {
      m = newUnitMemory();
      this.units.set(id, m);
    }
    return m;
  }

  /** Listens on 127.0.0.1 (`port` 0: any free port; pass the old one to come back on it). */
  async listen(port = 0): Promise<number> {
    const server = createServer((s) => this.serve(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  /** Closes the listener and every connection (a PLC switched off, or restarting). */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  requestsOf(fc: number): PlcRequest[] {
    return this.requests.filter((r) => r.fc === fc);
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    this.connections++;
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    let outstanding = 0;
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 7) {
        const len = buf.readUInt16BE(4);
        if (buf.length < 6 + len) return;
        const frame = buf.subarray(0, 6 + len);
        buf = buf.subarray(6 + len);
        outstanding++;
        this.maxOutstanding = Math.max(this.maxOutstanding, outstanding);
        const reply = this.handle(frame);
        if (reply === null) continue; // never answered: stays outstanding
        const send = () => {
          outstanding--;
          if (!socket.destroyed) socket.write(reply);
        };
        if (this.delayMs > 0) setTimeout(send, this.delayMs);
        else send();
      }
    });
  }

  private handle(frame: Buffer): Buffer | null {
    const tid = frame.readUInt16BE(0);
    const unitId = frame[6];
    const fc = frame[7];
    const address = frame.readUInt16BE(8);
    const count = fc === 5 || fc === 6 ? 1 : frame.readUInt16BE(10);
    this.requests.push({ unitId, fc, address, count });
    if (this.silent) return null;
    const mem = this.unit(unitId);
    const frameOf = (pdu: Buffer) => {
      const head = Buffer.alloc(7);
      head.writeUInt16BE(tid, 0);
      head.writeUInt16BE(0, 2);
      head.writeUInt16BE(pdu.length + 1, 4);
      head[6] = unitId;
      return Buffer.concat([head, pdu]);
    };
    const exception = (code: number) => frameOf(Buffer.from([fc | 0x80, code]));
    if (this.exception) return exception(this.exception);
    const inRange = (size: number) => address + count <= size;
    switch (fc) {
      case 1:
      case 2: {
        const bits = fc === 1 ? mem.coil : mem.discrete;
        if (count < 1 || count > 2000) return exception(3);
        if (!inRange(bits.length)) return exception(2);
        const out = Buffer.alloc(2 + Math.ceil(count / 8));
        out[0] = fc;
        out[1] = out.length - 2;
        for (let i = 0; i < count; i++) if (bits[address + i]) out[2 + (i >> 3)] |= 1 << (i & 7);
        return frameOf(out);
      }
      case 3:
      case 4: {
        const regs = fc === 3 ? mem.holding : mem.input;
        if (count < 1 || count > 125) return exception(3);
        if (!inRange(regs.length)) return exception(2);
        const out = Buffer.alloc(2 + count * 2);
        out[0] = fc;
        out[1] = count * 2;
        for (let i = 0; i < count; i++) out.writeUInt16BE(regs[address + i], 2 + i * 2);
        return frameOf(out);
      }
      case 5: {
        if (!inRange(mem.coil.length)) return exception(2);
        const v = frame.readUInt16BE(10);
        if (v !== 0xff00 && v !== 0) return exception(3);
        mem.coil[address] = v === 0xff00 ? 1 : 0;
        return frameOf(frame.subarray(7, 12));
      }
      case 6: {
        if (!inRange(mem.holding.length)) return exception(2);
        mem.holding[address] = frame.readUInt16BE(10);
        return frameOf(frame.subarray(7, 12));
      }
      case 16: {
        if (!inRange(mem.holding.length)) return exception(2);
        for (let i = 0; i < count; i++) mem.holding[address + i] = frame.readUInt16BE(13 + i * 2);
        return frameOf(frame.subarray(7, 12));
      }
      default:
        return exception(1);
    }
  }
}
