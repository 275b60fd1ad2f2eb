// The CoAP server source as the source suite drives it: a device is a UDP endpoint sending CON
// POSTs (acknowledged = 2.04 piggybacked on the ACK), garbage goes in from an endpoint of its own.
// A device honours back-pressure as RFC 7252 §5.9.3.4 has it: a 5.03 whose Max-Age asks for a
// prompt retry (1 s: the journal is catching up) is retried with a new message; it retries
// sooner than Max-Age to keep the suite short, the server does not depend on it. A longer
// Max-Age (the journal refused the record) counts as refused.

import { CoapPeer } from '../helpers/coap-peer.ts';
import type { DaemonHandle } from '../helpers/daemon.ts';
import type { GarbageKind, SourceDevice, SourceDriver } from './source-suite.ts';

const MAX_BUSY_RETRIES = 2000;

class CoapDevice implements SourceDevice {
  private readonly peer: CoapPeer;
  private readonly name: string;

  constructor(peer: CoapPeer, name: string) {
    this.peer = peer;
    this.name = name;
  }

  async send(payload: string): Promise<boolean> {
    for (let i = 0; i < MAX_BUSY_RETRIES; i++) {
      const res = await this.peer.request({
        path: ['t', 'sensors', this.name],
        query: [`d=${this.name}`],
        contentFormat: 0,
        payload,
      });
      if (res === null) return false;
      if (res.code === '2.04') return true;
      if (res.code !== '5.03' || (res.uint(14) ?? 60) > 1) return false;
      await new Promise((r) => setTimeout(r, 10 + Math.random() * 20));
    }
    return false;
  }

  connected(): boolean {
    return this.peer.connected();
  }

  close(): Promise<void> {
    return this.peer.close();
  }
}

export const coapDriver: SourceDriver = {
  protocol: 'coap',

  config({ maxMessageBytes }) {
    return { coap: { host: '127.0.0.1', port: 0, maxPayloadBytes: maxMessageBytes } };
  },

  async connect(daemon: DaemonHandle, name: string) {
    return new CoapDevice(await CoapPeer.open(daemon.coapPort), name);
  },

  async sendGarbage(daemon: DaemonHandle, kind: GarbageKind, maxMessageBytes: number) {
    const peer = await CoapPeer.open(daemon.coapPort);
    peer.maxRetransmit = 2;
    try {
      if (kind === 'malformed') {
        // A CON whose option header says delta 15 (reserved, RFC 7252 §3.1): reset, not parsed.
        const mid = peer.newMessageId();
        const bytes = Buffer.from([0x40, 0x02, mid >> 8, mid & 0xff, 0xf1, 0x00]);
        const res = await peer.exchange(bytes, true, mid, Buffer.alloc(0));
        if (res?.type !== 'RST') throw new Error(`malformed CON not reset (got ${res?.type} ${res?.code})`);
      } else {
        const res = await peer.request({
          path: ['t', 'garbage'],
          payload: Buffer.alloc(maxMessageBytes + 1, 0x61),
        });
        if (res?.code !== '4.13')
          throw new Error(`oversize payload not refused with 4.13 (got ${res?.code})`);
      }
    } finally {
      await peer.close();
    }
  },
};
