// A resent QoS 2 PUBLISH (DUP=1, same packet id, before PUBREL) is the same message
// [MQTT-4.3.3]: journaled once, so upstream never sees it twice under two record ids. aedes 1.x
// runs authorizePublish (where records are appended) before its own duplicate check.

import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/daemon.ts';
import { publishPacket, pubrelPacket } from '../helpers/mqtt-wire.ts';
import { type BrokerHarness, type RawClient, rawClient, startBroker } from './broker-harness.ts';

let broker: BrokerHarness | null = null;
const clients: RawClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.socket.destroy();
  await broker?.stop();
  broker = null;
});

async function client(id: string, clean = true): Promise<RawClient> {
  const c = await rawClient(broker!.port, id, { clean });
  clients.push(c);
  return c;
}

const PUBREC = 5;
const PUBCOMP = 7;

function count(c: RawClient, type: number, messageId: number): number {
  return c.packets().filter((p) => p.type === type && p.body.readUInt16BE(0) === messageId).length;
}

describe('QoS 2 resend before PUBREL', () => {
  it('a DUP resend in the same read is journaled once and still gets its PUBREC', async () => {
    broker = await startBroker();
    const c = await client('dev-q2');
    const first = publishPacket('sensors/q2', Buffer.from('once'), 2, 7);
    const resend = publishPacket('sensors/q2', Buffer.from('once'), 2, 7, { dup: true });
    c.socket.write(Buffer.concat([first, resend]));
    await eventually(() => count(c, PUBREC, 7) === 2, 'a PUBREC for the PUBLISH and one for its resend');
    c.socket.write(pubrelPacket(7));
    await eventually(() => count(c, PUBCOMP, 7) === 1, 'PUBCOMP');
    expect(await broker.journaledPayloads()).toEqual(['once']);
    expect(broker.source.counters.qos2Duplicates).toBe(1);
  });

  it('a resend after the PUBREC and after a reconnect (clean: false) is journaled once; the id is free again after PUBREL', async () => {
    broker = await startBroker();
    const a = await client('dev-q2-persist', false);
    a.socket.write(publishPacket('sensors/q2', Buffer.from('m1'), 2, 42));
    await eventually(() => count(a, PUBREC, 42) === 1, 'PUBREC');
    // The PUBREC was lost on the way, say: the client resends, still on this connection...
    a.socket.write(publishPacket('sensors/q2', Buffer.from('m1'), 2, 42, { dup: true }));
    await eventually(() => count(a, PUBREC, 42) === 2, 'PUBREC for the resend');
    // ...then the connection drops, and the client resends after reconnecting [MQTT-4.4.0-1].
    a.socket.destroy();
    await a.closed;
    const b = await client('dev-q2-persist', false);
    b.socket.write(publishPacket('sensors/q2', Buffer.from('m1'), 2, 42, { dup: true }));
    await eventually(() => count(b, PUBREC, 42) === 1, 'PUBREC after the reconnect');
    b.socket.write(pubrelPacket(42));
    await eventually(() => count(b, PUBCOMP, 42) === 1, 'PUBCOMP');
    // The exchange is over: the same id now carries a new message, journaled.
    b.socket.write(publishPacket('sensors/q2', Buffer.from('m2'), 2, 42));
    await eventually(() => count(b, PUBREC, 42) === 2, 'PUBREC for the new message');
    b.socket.write(pubrelPacket(42));
    await eventually(() => count(b, PUBCOMP, 42) === 2, 'second PUBCOMP');
    expect(await broker.journaledPayloads()).toEqual(['m1', 'm2']);
    expect(broker.source.counters.qos2Duplicates).toBe(2);
  });

  it('a resend on a new connection while the original is still uncommitted gets its PUBREC only after the commit', async () => {
    // The first append of an idle journal waits a second for company: the original stays
    // uncommitted while the client reconnects and resends.
    broker = await startBroker({}, { groupCommit: { maxRecords: 4096, maxDelayMs: 1000 } });
    const a = await client('dev-q2-slow', false);
    a.socket.write(publishPacket('sensors/q2', Buffer.from('slow'), 2, 5));
    await eventually(() => broker!.source.counters.received === 1, 'the PUBLISH appended');
    a.socket.destroy();
    await a.closed;
    const b = await client('dev-q2-slow', false);
    let committedAtPubrec = -1;
    b.socket.on('data', () => {
      if (committedAtPubrec < 0 && count(b, PUBREC, 5) > 0)
        committedAtPubrec = broker!.journal.lastCommittedSeq;
    });
    expect(broker.journal.lastCommittedSeq).toBe(0);
    b.socket.write(publishPacket('sensors/q2', Buffer.from('slow'), 2, 5, { dup: true }));
    await eventually(() => committedAtPubrec >= 0, 'PUBREC on the new connection');
    expect(committedAtPubrec).toBe(1);
    expect(await broker.journaledPayloads()).toEqual(['slow']);
    expect(broker.source.counters.qos2Duplicates).toBe(1);
  });

  it('a clean session starts afresh: the same id after a clean reconnect is a new message', async () => {
    broker = await startBroker();
    const a = await client('dev-q2-clean');
    a.socket.write(publishPacket('sensors/q2', Buffer.from('c1'), 2, 9));
    await eventually(() => count(a, PUBREC, 9) === 1, 'PUBREC');
    a.socket.destroy();
    await a.closed;
    // [MQTT-3.1.2-6]: the session, and with it the unfinished exchange, ended with the connection.
    const b = await client('dev-q2-clean');
    b.socket.write(publishPacket('sensors/q2', Buffer.from('c2'), 2, 9));
    await eventually(() => count(b, PUBREC, 9) === 1, 'PUBREC');
    expect(await broker.journaledPayloads()).toEqual(['c1', 'c2']);
  });
});
