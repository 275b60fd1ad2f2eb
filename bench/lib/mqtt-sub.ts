// The consumer for the broker baselines: one raw MQTT 3.1.1 subscriber that counts PUBLISHes,
// takes the latency from each payload's leading send time, and acknowledges QoS 1 deliveries
// with one write per socket read.

import { connect, type Socket } from 'node:net';
import { type Consumer, LatencyRecorder } from './consumer.ts';
import {
  CONNACK,
  connectPacket,
  DISCONNECT_PACKET,
  MqttFramer,
  nowMs,
  PUBLISH,
  SUBACK,
  subscribePacket,
} from './mqtt-codec.ts';

export class MqttSubscriber implements Consumer {
  received = 0;
  firstAt = 0;
  lastAt = 0;
  /** Deliveries flagged DUP (redelivered by the broker). */
  duplicates = 0;
  readonly latency = new LatencyRecorder();
  private socket: Socket | null = null;
  private readonly framer = new MqttFramer((h, buf, start, end) => this.onPacket(h, buf, start, end));
  private acks: number[] = [];
  private now = 0;
  private waiter: { type: number; resolve: () => void; reject: (e: Error) => void } | null = null;

  /** Connects, subscribes to `filter` and resolves on the SUBACK. */
  async start(host: string, port: number, filter: string, qos: 0 | 1, clientId = 'bench-sub'): Promise<void> {
    const socket = connect({ host, port, noDelay: true });
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.waiter?.reject(err));
    socket.on('close', () => this.waiter?.reject(new Error('subscriber connection closed')));
    await this.expect(CONNACK, () => socket.write(connectPacket(clientId)));
    await this.expect(SUBACK, () => socket.write(subscribePacket(1, filter, qos)));
  }

  reset(): void {
    this.received = 0;
    this.firstAt = 0;
    this.lastAt = 0;
    this.duplicates = 0;
    this.latency.reset();
  }

  async close(): Promise<void> {
    const s = this.socket;
    this.socket = null;
    if (!s || s.destroyed) return;
    await new Promise<void>((resolve) => {
      s.once('close', () => resolve());
      s.end(DISCONNECT_PACKET);
      setTimeout(() => s.destroy(), 1000).unref();
    });
  }

  private expect(type: number, send: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`subscriber: no packet type ${type} within 10 s`)),
        10_000,
      );
      this.waiter = {
        type,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      send();
    });
  }

  private onData(chunk: Buffer): void {
    this.now = nowMs();
    const before = this.received;
    this.framer.push(chunk);
    if (this.received > before) {
      if (before === 0) this.firstAt = this.now;
      this.lastAt = this.now;
    }
    const n = this.acks.length;
    if (n > 0 && this.socket) {
      const out = Buffer.allocUnsafe(4 * n);
      for (let i = 0; i < n; i++) {
        const id = this.acks[i];
        out[4 * i] = 0x40;
        out[4 * i + 1] = 0x02;
        out[4 * i + 2] = id >> 8;
        out[4 * i + 3] = id & 0xff;
      }
      this.acks.length = 0;
      this.socket.write(out);
    }
  }

  private onPacket(header: number, buf: Buffer, start: number, end: number): void {
    const type = header >> 4;
    if (type === PUBLISH) {
      const qos = (header >> 1) & 3;
      if (header & 0x08) this.duplicates++;
      let pos = start + 2 + buf.readUInt16BE(start);
      if (qos > 0) {
        this.acks.push(buf.readUInt16BE(pos));
        pos += 2;
      }
      this.received++;
      if (end - pos >= 8) this.latency.record(this.now - buf.readDoubleBE(pos));
      return;
    }
    const w = this.waiter;
    if (w && w.type === type) {
      this.waiter = null;
      w.resolve();
    }
  }
}
