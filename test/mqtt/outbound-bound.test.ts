// OutboundBound on a real loopback TCP connection, with packets written by mqtt-packet exactly as
// aedes writes them (several chunks per packet, the topic as a string). A cork on the socket keeps
// everything in its buffer, so what counts as queued is known without racing the kernel.

import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { writeToStream } from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { AckGate } from '../../src/sources/mqtt-broker/ack-gate.ts';
import { OutboundBound, type OutboundOverflow } from '../../src/sources/mqtt-broker/outbound-bound.ts';
import { splitPackets } from '../helpers/mqtt-wire.ts';

let server: Server | null = null;
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
  server = null;
});

/** The server side of a fresh loopback connection, and everything its peer receives. */
async function pair(): Promise<{ socket: Socket; received: () => Buffer; peerClosed: Promise<unknown> }> {
  server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  sockets.push(client);
  client.on('error', () => {});
  const chunks: Buffer[] = [];
  client.on('data', (c: Buffer) => chunks.push(c));
  const peerClosed = once(client, 'close');
  const [socket] = (await accepted) as [Socket];
  sockets.push(socket);
  socket.on('error', () => {});
  return { socket, received: () => Buffer.concat(chunks), peerClosed };
}

class Owner implements OutboundOverflow {
  overflows = 0;
  drops = 0;
  outboundOverflow(): void {
    this.overflows++;
  }
  outboundDropped(): void {
    this.drops++;
  }
}

const payload = Buffer.alloc(100, 0x61);

function publish(socket: Socket, qos: 0 | 1, messageId: number, text = ''): boolean {
  const body = text ? Buffer.from(text) : payload;
  return writeToStream(
    { cmd: 'publish', topic: 'sensors/t', payload: body, qos, messageId, retain: false, dup: false },
    socket,
  );
}

describe('OutboundBound', () => {
  it('a QoS 1 PUBLISH past maxQueuedMessages closes the connection; no PUBLISH write ever reports a full socket', async () => {
    const { socket, peerClosed } = await pair();
    const owner = new Owner();
    const bound = new OutboundBound(socket, { maxQueuedMessages: 5, maxQueuedBytes: 1 << 20 }, owner);
    socket.cork();
    for (let i = 1; i <= 5; i++) expect(publish(socket, 1, i)).toBe(true);
    expect(bound.queuedMessages).toBe(5);
    expect(owner.overflows).toBe(0);
    expect(publish(socket, 1, 6)).toBe(true);
    expect(owner.overflows).toBe(1);
    expect(socket.destroyed).toBe(true);
    // Later writes (aedes does not know yet) are swallowed, not errors.
    expect(publish(socket, 1, 7)).toBe(true);
    await peerClosed;
  });

  it('counts bytes waiting in the socket against maxQueuedBytes', async () => {
    const { socket } = await pair();
    const owner = new Owner();
    new OutboundBound(socket, { maxQueuedMessages: 1000, maxQueuedBytes: 1000 }, owner);
    socket.cork();
    // A PUBLISH here is 2 + 2 + 9 + 2 + 100 = 115 bytes: 9 of them make 1035 >= 1000.
    for (let i = 1; i <= 9; i++) publish(socket, 1, i);
    expect(owner.overflows).toBe(0);
    publish(socket, 1, 10);
    expect(owner.overflows).toBe(1);
  });

  it('past the bound a QoS 0 PUBLISH is dropped whole for this connection, which stays open', async () => {
    const { socket, received } = await pair();
    const owner = new Owner();
    const bound = new OutboundBound(socket, { maxQueuedMessages: 3, maxQueuedBytes: 1 << 20 }, owner);
    socket.cork();
    for (let i = 0; i < 6; i++) expect(publish(socket, 0, 0, `m${i}`)).toBe(true);
    expect(owner.drops).toBe(3);
    expect(bound.dropped).toBe(3);
    expect(owner.overflows).toBe(0);
    // A PINGRESP after the drops is framed correctly: the dropped packets left no bytes behind.
    writeToStream({ cmd: 'pingresp' }, socket);
    socket.uncork();
    await expect.poll(() => splitPackets(received()).packets.length).toBe(4);
    const { packets, rest } = splitPackets(received());
    expect(rest.length).toBe(0);
    expect(packets.map((p) => p.type)).toEqual([3, 3, 3, 13]);
    expect(packets.slice(0, 3).map((p) => p.body.subarray(2 + 9).toString())).toEqual(['m0', 'm1', 'm2']);
    expect(socket.destroyed).toBe(false);
    // Once the kernel took them, nothing counts as queued: the next one goes out.
    await expect.poll(() => bound.queuedMessages).toBe(0);
    publish(socket, 0, 0, 'm6');
    await expect.poll(() => splitPackets(received()).packets.length).toBe(5);
  });

  it('a topic with multi-byte characters counts each queued PUBLISH once (the socket counts a string in characters)', async () => {
    const { socket } = await pair();
    const owner = new Owner();
    const bound = new OutboundBound(socket, { maxQueuedMessages: 5, maxQueuedBytes: 1 << 20 }, owner);
    socket.cork();
    const topic = '温度/传感器/一号/读数';
    for (let i = 0; i < 10; i++)
      writeToStream(
        { cmd: 'publish', topic, payload: Buffer.from('x'), qos: 0, retain: false, dup: false },
        socket,
      );
    expect(bound.queuedMessages).toBe(5);
    expect(owner.drops).toBe(5);
  });

  it('acks the AckGate holds do not count and stay held', async () => {
    const { socket } = await pair();
    const owner = new Owner();
    const bound = new OutboundBound(socket, { maxQueuedMessages: 2, maxQueuedBytes: 1 << 20 }, owner);
    const gate = new AckGate(socket, bound);
    gate.appendedOne();
    writeToStream({ cmd: 'puback', messageId: 7 }, socket);
    for (let i = 1; i <= 4; i++) publish(socket, 1, i);
    // All held behind the uncommitted record: nothing reached the socket, nothing counted.
    expect(socket.bytesWritten).toBe(0);
    expect(bound.queuedMessages).toBe(0);
    expect(owner.overflows).toBe(0);
  });

  it('a released batch is admitted against what was queued before it; the next PUBLISH counts it all', async () => {
    const { socket, received } = await pair();
    const owner = new Owner();
    const bound = new OutboundBound(socket, { maxQueuedMessages: 2, maxQueuedBytes: 1 << 20 }, owner);
    const gate = new AckGate(socket, bound);
    gate.appendedOne();
    writeToStream({ cmd: 'puback', messageId: 7 }, socket);
    for (let i = 1; i <= 4; i++) publish(socket, 1, i);
    // The commit releases a PUBACK and four PUBLISH (say, deliveries that arrived meanwhile to a
    // client that publishes and subscribes) in one corked batch: more than the bound, all sent.
    gate.committedOne();
    expect(owner.overflows).toBe(0);
    await expect.poll(() => splitPackets(received()).packets.length).toBe(5);
    expect(socket.destroyed).toBe(false);

    // Had they stayed in the socket (a peer that does not read: here a cork of the test's own),
    // the next PUBLISH finds four queued and closes the connection.
    socket.cork();
    gate.appendedOne();
    for (let i = 5; i <= 8; i++) publish(socket, 1, i);
    gate.committedOne();
    await new Promise((r) => process.nextTick(r));
    expect(owner.overflows).toBe(0);
    expect(bound.queuedMessages).toBe(4);
    publish(socket, 1, 9);
    expect(owner.overflows).toBe(1);
    expect(socket.destroyed).toBe(true);
  });

  it('acks released after a commit reach the peer in order when under the bound', async () => {
    const { socket, received } = await pair();
    const owner = new Owner();
    new OutboundBound(socket, { maxQueuedMessages: 100, maxQueuedBytes: 1 << 20 }, owner);
    const gate = new AckGate(socket);
    gate.appendedOne();
    writeToStream({ cmd: 'puback', messageId: 1 }, socket);
    publish(socket, 1, 9, 'live');
    gate.appendedOne();
    writeToStream({ cmd: 'puback', messageId: 2 }, socket);
    expect(socket.bytesWritten).toBe(0);
    gate.committedOne();
    gate.committedOne();
    await expect.poll(() => splitPackets(received()).packets.length).toBe(3);
    const { packets } = splitPackets(received());
    expect(packets.map((p) => [p.type, p.body.readUInt16BE(p.type === 3 ? 11 : 0)])).toEqual([
      [4, 1],
      [3, 9],
      [4, 2],
    ]);
    expect(owner.overflows + owner.drops).toBe(0);
  });

  it('other packets keep the socket’s own answer (aedes waits on it for that connection only)', async () => {
    const { socket } = await pair();
    new OutboundBound(socket, { maxQueuedMessages: 1000, maxQueuedBytes: 1 << 30 }, new Owner());
    socket.cork();
    let full = false;
    const pingresp = Buffer.from([0xd0, 0]);
    for (let i = 0; i < 200_000 && !full; i++) full = !socket.write(pingresp);
    // A highWaterMark (64 KiB on Node 24) of PINGRESPs: the socket said it is full...
    expect(full).toBe(true);
    // ...while a PUBLISH, which the whole broker would wait on, does not say so.
    expect(publish(socket, 0, 0)).toBe(true);
  });
});
