// Intake back-pressure against the real daemon: a publisher that never waits (a QoS 0 flood, a
// QoS 1 pipeline far past any in-flight window) is slowed by TCP, not buffered in memory, and
// nothing it sent is lost.

import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { connectPacket, publishPacket } from '../helpers/mqtt-wire.ts';

const daemons: DaemonHandle[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(daemons.splice(0).map((d) => d.kill()));
});

async function daemon(journal: Record<string, unknown>): Promise<DaemonHandle> {
  const dir = tempDir();
  const d = await startDaemon(
    dir,
    writeConfig(dir, baseConfig(dir, { journal: { path: `${dir}/journal`, ...journal } })),
  );
  daemons.push(d);
  return d;
}

async function rawClient(d: DaemonHandle, id: string): Promise<{ socket: Socket; received: () => Buffer }> {
  const socket = connect(d.mqttPort, '127.0.0.1');
  sockets.push(socket);
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.write(connectPacket(id));
  await eventually(() => Buffer.concat(chunks).length >= 4, 'CONNACK');
  chunks.splice(0);
  return { socket, received: () => Buffer.concat(chunks) };
}

/** Writes `packets` in chunks, waiting for 'drain' whenever the socket says its buffer is full. */
async function writeAll(socket: Socket, packets: Buffer[], perChunk = 500): Promise<void> {
  for (let i = 0; i < packets.length; i += perChunk) {
    if (!socket.write(Buffer.concat(packets.slice(i, i + perChunk)))) await once(socket, 'drain');
  }
}

function sourceCounter(status: Awaited<ReturnType<DaemonHandle['status']>>, field: string): number {
  return status.sources.find((s) => s.name === 'mqtt')?.counters[field] ?? 0;
}

const payload = Buffer.alloc(200, 0x61);

describe('intake back-pressure', () => {
  it('a QoS 0 flood beyond maxPendingBytes pauses intake and is journaled whole', async () => {
    const d = await daemon({ maxPendingBytes: '32KiB' });
    const { socket } = await rawClient(d, 'flood-0');
    const N = 60_000;
    const packets = Array.from({ length: N }, (_, i) => publishPacket(`flood/${i % 10}`, payload, 0));
    await writeAll(socket, packets);

    await eventually(async () => (await d.status()).journal.counters.appended === N, `all ${N} journaled`);
    const status = await d.status();
    // Each record under its own seq: N seqs used, N records retained.
    expect(status.journal.lastSeq).toBe(N);
    expect(status.journal.records).toBe(N);
    expect(sourceCounter(status, 'received')).toBe(N);
    expect(sourceCounter(status, 'pauses')).toBeGreaterThan(0);
    expect(await d.metrics()).toMatch(/edgeferry_ingress_pauses_total\{protocol="mqtt"\} [1-9]/);
    expect(socket.destroyed).toBe(false);
  });

  it('a QoS 1 publisher that never waits gets every PUBACK, each after its commit', async () => {
    const d = await daemon({ maxPendingBytes: '64KiB' });
    const { socket, received } = await rawClient(d, 'pipe-1');
    const N = 20_000;
    // Message ids wrap at 65535; 20 000 stay unique.
    const packets = Array.from({ length: N }, (_, i) => publishPacket('pipe/t', payload, 1, i + 1));
    await writeAll(socket, packets);

    // A PUBACK is 4 bytes: 0x40 0x02 id.
    await eventually(() => received().length >= N * 4, `${N} PUBACKs`);
    const acks = received();
    expect(acks.length).toBe(N * 4);
    const ids: number[] = [];
    for (let o = 0; o < acks.length; o += 4) {
      expect(acks[o]).toBe(0x40);
      ids.push(acks.readUInt16BE(o + 2));
    }
    // In order: acks follow commits, and commits follow the connection's order.
    expect(ids).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    const status = await d.status();
    expect(status.journal.counters.appended).toBe(N);
    expect(status.journal.lastSeq).toBe(N);
    expect(status.journal.records).toBe(N);
    expect(sourceCounter(status, 'pauses')).toBeGreaterThan(0);
  });
});
