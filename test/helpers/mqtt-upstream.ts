// A minimal MQTT 5 broker for the shared sink suite: it speaks the real protocol over TCP on
// 127.0.0.1 (CONNECT/CONNACK, PUBLISH/PUBACK with reason codes, PINGREQ) and answers each publish
// as the test says. mosquitto cannot be told to refuse one message or to hang on one; the
// bridge sink's tests against mosquitto are in test/sinks/mqtt-sink.test.ts.

import { createServer, type Server, type Socket } from 'node:net';
import mqttPacket, { type IPublishPacket, type Packet } from 'mqtt-packet';
import type { MqttSinkOptions } from '../../src/sinks/mqtt/mqtt-sink.ts';

/** What the broker does with one PUBLISH. */
export type PublishAnswer = 'accept' | 'retry' | 'refuse' | 'auth' | 'hang';

export interface UpstreamMessage {
  topic: string;
  payload: Buffer;
  userProperties: Record<string, string | string[]>;
}

/** PUBACK reason codes (MQTT 5 §3.4.2.1). */
const PUBACK: Record<'accept' | 'refuse' | 'auth', number> = {
  accept: 0x00,
  refuse: 0x99, // Payload format invalid: the message itself is refused
  auth: 0x87, // Not authorized
};

const PROTOCOL = { protocolVersion: 5 };

export class MqttUpstream {
  /** Decides each PUBLISH; `accept` until set. */
  answer: (msg: UpstreamMessage) => PublishAnswer = () => 'accept';
  /** PUBLISH packets that reached `answer`. */
  publishes = 0;
  readonly accepted: UpstreamMessage[] = [];
  port = 0;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<void> {
    const server = createServer((s) => this.serve(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  /** Stops listening and drops every connection (a broker gone away). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    const parser = mqttPacket.parser(PROTOCOL);
    // Once hung, this connection answers nothing more, as a frozen broker would.
    let hung = false;
    parser.on('packet', (p: Packet) => {
      if (hung || socket.destroyed) return;
      const answer = this.onPacket(socket, p);
      if (answer === 'hang') hung = true;
    });
    parser.on('error', () => socket.destroy());
    socket.on('data', (d: Buffer) => parser.parse(d));
  }

  private onPacket(socket: Socket, p: Packet): PublishAnswer | null {
    const send = (packet: Packet) => socket.write(mqttPacket.generate(packet, PROTOCOL));
    switch (p.cmd) {
      case 'connect':
        send({ cmd: 'connack', reasonCode: 0, sessionPresent: false });
        return null;
      case 'pingreq':
        send({ cmd: 'pingresp' });
        return null;
      case 'disconnect':
        socket.end();
        return null;
      case 'publish':
        return this.onPublish(p, socket, send);
      default:
        return null;
    }
  }

  private onPublish(p: IPublishPacket, socket: Socket, send: (packet: Packet) => void): PublishAnswer {
    this.publishes++;
    const msg: UpstreamMessage = {
      topic: p.topic,
      payload: Buffer.from(p.payload),
      userProperties: (p.properties?.userProperties ?? {}) as Record<string, string | string[]>,
    };
    const answer = this.answer(msg);
    if (answer === 'retry') {
      // A broker that crashed or restarted: the connection ends, the publish unacknowledged.
      socket.destroy();
      return answer;
    }
    if (answer === 'hang') return answer;
    if (answer === 'accept') this.accepted.push(msg);
    if (p.qos > 0) send({ cmd: 'puback', messageId: p.messageId, reasonCode: PUBACK[answer] });
    return answer;
  }
}

/** Bridge sink options for tests: MQTT 5, QoS 1, window 100, the default topic template. */
export function bridgeOptions(url: string, over: Partial<MqttSinkOptions> = {}): MqttSinkOptions {
  return {
    name: 'bridge',
    url,
    node: 'n1',
    clientId: `bridge-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
    protocolVersion: 5,
    topic: 'edge/{node}/{topic}',
    qos: 1,
    retain: false,
    window: 100,
    keepaliveSeconds: 30,
    connectTimeoutMs: 5_000,
    ...over,
  };
}
