// The MQTT broker source over its TLS listener (no plain TCP one), as the source suite drives
// it: the same suite as over TCP proves that a TLS connection gets the same read guard, ack gate
// and back-pressure. Devices use mqtt.js over mqtts; garbage goes in on a raw TLS connection.

import { connect as tlsConnect } from 'node:tls';
import mqtt from 'mqtt';
import { generatePki, type TestPki } from '../grpc/certs.ts';
import { type DaemonHandle, tempDir } from '../helpers/daemon.ts';
import { connectPacket, varint } from '../helpers/mqtt-wire.ts';
import { tlsPort } from '../mqtt/security-helpers.ts';
import { MqttDevice, refusedConnection } from './mqtt-driver.ts';
import type { SourceDriver } from './source-suite.ts';

let pkiOnce: TestPki | null = null;
const pki = (): TestPki => {
  pkiOnce ??= generatePki(tempDir('edgeferry-suite-pki-'));
  return pkiOnce;
};

export const mqttTlsDriver: SourceDriver = {
  protocol: 'mqtt',

  config({ maxMessageBytes }) {
    const p = pki();
    return {
      mqtt: {
        host: '127.0.0.1',
        port: false,
        maxPacketBytes: maxMessageBytes,
        tls: { port: 0, certFile: p.serverCertFile, keyFile: p.serverKeyFile },
      },
    };
  },

  async connect(daemon: DaemonHandle, name: string) {
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${tlsPort(daemon)}`, {
      clientId: name,
      reconnectPeriod: 0,
      ca: pki().ca,
      servername: 'localhost',
    });
    client.on('error', () => {});
    return new MqttDevice(client, name);
  },

  async sendGarbage(daemon, kind, maxMessageBytes) {
    const hello = connectPacket(`garbage-${kind}`);
    const bad =
      kind === 'malformed'
        ? Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])
        : Buffer.concat([
            Buffer.from([0x32]),
            varint(maxMessageBytes * 100),
            Buffer.from([0, 1, 0x74, 0, 1]),
          ]);
    await refusedConnection(
      () => tlsConnect({ host: '127.0.0.1', port: tlsPort(daemon), ca: pki().ca, servername: 'localhost' }),
      'secureConnect',
      [hello, bad],
      kind,
    );
  },
};
