// AckGate on a real loopback TCP connection: what the broker writes after a record was appended
// reaches the socket only once that record is committed, in order, and never after a refusal.

import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AckGate } from '../../src/sources/mqtt-broker/ack-gate.ts';

let server: Server | null = null;
const clients: Socket[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
  server = null;
});

/** The server side of a fresh loopback connection, gated, and the bytes its peer receives. */
async function gatedPair(): Promise<{
  socket: Socket;
  gate: AckGate;
  received: () => string;
  peerClosed: Promise<unknown>;
}> {
  server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const accepted = once(server, 'connection');
  const client = connect(port, '127.0.0.1');
  clients.push(client);
  let got = '';
  client.setEncoding('utf8');
  client.on('data', (c: string) => {
    got += c;
  });
  const peerClosed = once(client, 'close');
  const [socket] = (await accepted) as [Socket];
  clients.push(socket);
  return { socket, gate: new AckGate(socket), received: () => got, peerClosed };
}

describe('AckGate', () => {
  it('passes writes straight through while nothing is uncommitted', async () => {
    const { socket, received } = await gatedPair();
    socket.write('hello');
    expect(socket.bytesWritten).toBe(5);
    await expect.poll(received).toBe('hello');
  });

  it('holds every write after an append until that record commits, then releases in order', async () => {
    const { socket, gate, received } = await gatedPair();
    gate.appendedOne();
    socket.write('ack1;');
    gate.appendedOne();
    socket.write('ack2;');
    socket.write('other;');
    gate.appendedOne();
    socket.write('ack3;');
    // Nothing has reached the socket: bytesWritten counts what was handed to it.
    expect(socket.bytesWritten).toBe(0);

    gate.committedOne();
    expect(socket.bytesWritten).toBe('ack1;'.length);
    gate.committedOne();
    expect(socket.bytesWritten).toBe('ack1;ack2;other;'.length);
    gate.committedOne();
    await expect.poll(received).toBe('ack1;ack2;other;ack3;');
    // All committed: writes pass straight through again.
    socket.write('after;');
    expect(socket.bytesWritten).toBe('ack1;ack2;other;ack3;after;'.length);
  });

  it('a refused record drops the held acks and what follows, sends what was released, and closes', async () => {
    const { socket, gate, received, peerClosed } = await gatedPair();
    gate.appendedOne();
    socket.write('ack1;');
    gate.appendedOne();
    socket.write('ack2;');
    gate.committedOne();
    gate.refuse();
    socket.write('later;');
    // The committed record's ack had been released; the refused one's, and what followed, never.
    gate.committedOne();
    await peerClosed;
    expect(received()).toBe('ack1;');
    expect(socket.destroyed).toBe(true);
  });
});
