// The load generator's counterpart for `loadgen-ceiling`: a TCP server that speaks just enough
// MQTT to keep a publisher going (CONNACK, PUBACK, SUBACK, PINGRESP) and does nothing else.
// Usage: node bench/baselines/null-broker.ts PORT [--ack-each]. PUBACKs of one socket read go
// out in one write, or with --ack-each one write per PUBACK (as mosquitto does), which costs the
// generator one read per ack. Prints one JSON line when listening; exits on SIGTERM or when its
// stdin closes.

import { createServer, type Socket } from 'node:net';
import {
  CONNACK_OK_PACKET,
  CONNECT,
  DISCONNECT,
  MqttFramer,
  PINGREQ,
  PINGRESP_PACKET,
  PUBLISH,
  SUBSCRIBE,
  subackPacket,
} from '../lib/mqtt-codec.ts';

const port = Number(process.argv[2]);
const ackEach = process.argv.includes('--ack-each');
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('usage: null-broker.ts PORT [--ack-each]\n');
  process.exit(2);
}

function serve(socket: Socket): void {
  socket.setNoDelay(true);
  const pubacks: number[] = [];
  const other: Buffer[] = [];
  let closing = false;
  const framer = new MqttFramer((header, buf, start) => {
    switch (header >> 4) {
      case PUBLISH:
        // PUBACKs stay in order with the PINGRESP a QoS 0 publisher waits for: flush them first.
        if ((header >> 1) & 3) pubacks.push(buf.readUInt16BE(start + 2 + buf.readUInt16BE(start)));
        return;
      case CONNECT:
        other.push(CONNACK_OK_PACKET);
        return;
      case SUBSCRIBE:
        other.push(subackPacket(buf.readUInt16BE(start), 0));
        return;
      case PINGREQ:
        other.push(PINGRESP_PACKET);
        return;
      case DISCONNECT:
        closing = true;
        return;
    }
  });
  socket.on('data', (chunk: Buffer) => {
    try {
      framer.push(chunk);
    } catch {
      socket.destroy();
      return;
    }
    if (ackEach) {
      for (const id of pubacks) socket.write(Buffer.from([0x40, 0x02, id >> 8, id & 0xff]));
      pubacks.length = 0;
    } else if (pubacks.length > 0) {
      const out = Buffer.allocUnsafe(4 * pubacks.length);
      for (let i = 0; i < pubacks.length; i++) {
        out[4 * i] = 0x40;
        out[4 * i + 1] = 0x02;
        out[4 * i + 2] = pubacks[i] >> 8;
        out[4 * i + 3] = pubacks[i] & 0xff;
      }
      pubacks.length = 0;
      socket.write(out);
    }
    for (const b of other) socket.write(b);
    other.length = 0;
    if (closing) socket.end();
  });
  socket.on('error', () => socket.destroy());
}

const server = createServer(serve);
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
});

const shutdown = () => process.exit(0);
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();
