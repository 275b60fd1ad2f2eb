// The MQTT broker source as the source suite drives it: a device is an mqtt.js client publishing
// QoS 1 (acknowledged = PUBACK), garbage goes in on a raw TCP connection.

import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt, { type MqttClient } from 'mqtt';
import type { DaemonHandle } from '../helpers/daemon.ts';
import { connectPacket, varint } from '../helpers/mqtt-wire.ts';
import type { GarbageKind, SourceDevice, SourceDriver } from './source-suite.ts';

export class MqttDevice implements SourceDevice {
  private readonly client: MqttClient;
  private readonly topic: string;
  private readonly closed: Promise<false>;

  constructor(client: MqttClient, name: string) {
    this.client = client;
    this.topic = `sensors/${name}`;
    this.closed = new Promise((resolve) => {
      if (!client.connected) resolve(false);
      else client.once('close', () => resolve(false));
    });
  }

  send(payload: string): Promise<boolean> {
    if (!this.client.connected) return Promise.resolve(false);
    // A refused publish gets no PUBACK and the connection closes (MQTT 3.1.1 has no negative ack).
    return Promise.race([
      this.client.publishAsync(this.topic, payload, { qos: 1 }).then(
        () => true,
        () => false,
      ),
      this.closed,
    ]);
  }

  connected(): boolean {
    return this.client.connected;
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

/**
 * Writes `bytes` on a connection `open` makes (plain TCP: 'connect'; TLS: 'secureConnect' as
 * `ready`) and resolves when the daemon closes it.
 */
export async function refusedConnection(
  open: () => Socket,
  ready: 'connect' | 'secureConnect',
  bytes: Buffer[],
  what: string,
): Promise<void> {
  const socket = open();
  socket.on('error', () => {});
  try {
    await once(socket, ready);
    socket.on('data', () => {});
    const closed = once(socket, 'close');
    for (const b of bytes) socket.write(b);
    await Promise.race([
      closed,
      sleep(10_000, undefined, { ref: false }).then(() => {
        throw new Error(`the daemon did not close the connection after ${what}`);
      }),
    ]);
  } finally {
    socket.destroy();
  }
}

export const mqttDriver: SourceDriver = {
  protocol: 'mqtt',

  config({ maxMessageBytes }) {
    return { mqtt: { host: '127.0.0.1', port: 0, maxPacketBytes: maxMessageBytes } };
  },

  async connect(daemon: DaemonHandle, name: string) {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${daemon.mqttPort}`, {
      clientId: name,
      reconnectPeriod: 0,
    });
    // A closed connection is an outcome the suite checks, not an uncaught 'error' event.
    client.on('error', () => {});
    return new MqttDevice(client, name);
  },

  async sendGarbage(daemon: DaemonHandle, kind: GarbageKind, maxMessageBytes: number) {
    const hello = connectPacket(`garbage-${kind}`);
    if (kind === 'malformed') {
      // A Remaining Length whose fourth byte still says "more" [MQTT-2.2.3]: no such packet.
      await refusedConnection(
        () => connect(daemon.mqttPort, '127.0.0.1'),
        'connect',
        [hello, Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])],
        kind,
      );
    } else {
      // A PUBLISH announcing 100 times the limit: refused at its header, before it is buffered.
      const announced = maxMessageBytes * 100;
      await refusedConnection(
        () => connect(daemon.mqttPort, '127.0.0.1'),
        'connect',
        [hello, Buffer.concat([Buffer.from([0x32]), varint(announced), Buffer.from([0, 1, 0x74, 0, 1])])],
        kind,
      );
    }
  },
};
