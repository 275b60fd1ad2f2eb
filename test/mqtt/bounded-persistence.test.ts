// BoundedPersistence on its own, through the methods aedes calls (see aedes lib/client.js,
// lib/handlers/*.js), for what a broker test cannot see: which message the total bound drops
// after acknowledgements and PUBREL replacements in the middle of queues, and that finding it
// does not visit every session.

import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  BoundedPersistence,
  type PersistenceLimits,
  type PersistenceStats,
} from '../../src/sources/mqtt-broker/bounded-persistence.ts';

interface Held {
  cmd: string;
  payload: Buffer;
  messageId?: number;
}

function make(limits: Partial<PersistenceLimits>): { p: BoundedPersistence; stats: PersistenceStats } {
  const stats: PersistenceStats = {
    sessionDropped: 0,
    retainedDropped: 0,
    queuedMessages: 0,
    retainedMessages: 0,
  };
  const p = new BoundedPersistence(
    {
      maxQueuedMessages: 1000,
      maxQueuedBytes: 1 << 20,
      maxQueuedMessagesTotal: 100_000,
      maxQueuedBytesTotal: 64 << 20,
      maxRetainedMessages: 1000,
      maxRetainedBytes: 1 << 20,
      ...limits,
    },
    stats,
  );
  return { p, stats };
}

let counter = 0;
function msg(text: string) {
  return {
    cmd: 'publish',
    brokerId: 'b',
    brokerCounter: ++counter,
    topic: 't',
    payload: Buffer.from(text),
    qos: 1,
    retain: false,
    dup: false,
  };
}

async function held(p: BoundedPersistence, id: string): Promise<string[]> {
  const out: string[] = [];
  for await (const h of p.outgoingStream({ id }) as Readable) {
    const x = h as Held;
    out.push(x.cmd === 'pubrel' ? `pubrel:${x.messageId}` : x.payload.toString());
  }
  return out;
}

describe('BoundedPersistence', () => {
  it('the total bound drops the oldest message still held, after acks and PUBREL replacements elsewhere', async () => {
    const { p, stats } = make({ maxQueuedMessagesTotal: 3 });
    const m1 = msg('m1');
    const m2 = msg('m2');
    await p.outgoingEnqueue({ clientId: 'a' }, m1);
    await p.outgoingEnqueue({ clientId: 'b' }, m2);
    await p.outgoingEnqueue({ clientId: 'a' }, msg('m3'));
    // m1 sent and acknowledged (PUBACK); m2 sent, PUBREC'd and replaced by its PUBREL.
    await p.outgoingUpdate({ id: 'a' }, { ...m1, messageId: 10 });
    expect(await p.outgoingClearMessageId({ id: 'a' }, { ...m1, messageId: 10 })).toBeDefined();
    await p.outgoingUpdate({ id: 'b' }, { ...m2, messageId: 20 });
    await p.outgoingUpdate({ id: 'b' }, { cmd: 'pubrel', messageId: 20 } as never);
    await p.outgoingEnqueue({ clientId: 'b' }, msg('m4'));
    expect(stats.queuedMessages).toBe(3);
    // Over the total: the PUBREL (it took m2's place) is the oldest held, then m3.
    await p.outgoingEnqueue({ clientId: 'a' }, msg('m5'));
    expect(await held(p, 'a')).toEqual(['m3', 'm5']);
    expect(await held(p, 'b')).toEqual(['m4']);
    await p.outgoingEnqueue({ clientId: 'b' }, msg('m6'));
    expect(await held(p, 'a')).toEqual(['m5']);
    expect(await held(p, 'b')).toEqual(['m4', 'm6']);
    expect(stats.sessionDropped).toBe(2);
    expect(stats.queuedMessages).toBe(3);
  });

  it('a PUBREC finds its own message, not an earlier PUBREL (outgoing QoS 2 to a clean: false session)', async () => {
    const { p, stats } = make({});
    const a = msg('a');
    const b = msg('b');
    // As aedes does: enqueue (client.publish), outgoingUpdate with the id it was sent with
    // (deliverQoS), outgoingUpdate with a PUBREL at the PUBREC (handlers/pubrec.js),
    // outgoingClearMessageId at the PUBCOMP (handlers/puback.js).
    await p.outgoingEnqueue({ clientId: 'c' }, a);
    await p.outgoingEnqueue({ clientId: 'c' }, b);
    await p.outgoingUpdate({ id: 'c' }, { ...a, messageId: 1 });
    await p.outgoingUpdate({ id: 'c' }, { ...b, messageId: 2 });
    await p.outgoingUpdate({ id: 'c' }, { cmd: 'pubrel', messageId: 1 } as never);
    // PUBREC 2 arrives before PUBCOMP 1.
    await p.outgoingUpdate({ id: 'c' }, { cmd: 'pubrel', messageId: 2 } as never);
    expect(await held(p, 'c')).toEqual(['pubrel:1', 'pubrel:2']);
    await p.outgoingClearMessageId({ id: 'c' }, { cmd: 'pubcomp', messageId: 1 } as never);
    await p.outgoingClearMessageId({ id: 'c' }, { cmd: 'pubcomp', messageId: 2 } as never);
    // Both exchanges over: nothing left to resend on the next connection.
    expect(await held(p, 'c')).toEqual([]);
    expect(stats.queuedMessages).toBe(0);
  });

  it('at the total, a broadcast to many away sessions does not visit every session per message', async () => {
    const sessions = 2000;
    const { p, stats } = make({ maxQueuedMessagesTotal: sessions });
    const subs = Array.from({ length: sessions }, (_, i) => ({ clientId: `dev-${i}` }));
    await p.outgoingEnqueueCombi(subs, msg('first'));
    expect(stats.queuedMessages).toBe(sessions);
    // Count the sessions visited from here on.
    const queues = (p as unknown as { queues: Map<string, unknown> }).queues;
    let visited = 0;
    const values = queues.values.bind(queues);
    queues.values = () => {
      const it = values();
      return {
        next: () => {
          visited++;
          return it.next();
        },
        [Symbol.iterator]() {
          return this;
        },
      } as ReturnType<typeof values>;
    };
    await p.outgoingEnqueueCombi(subs, msg('second'));
    expect(stats.queuedMessages).toBe(sessions);
    expect(stats.sessionDropped).toBe(sessions);
    for (const id of ['dev-0', 'dev-999', 'dev-1999']) expect(await held(p, id)).toEqual(['second']);
    // A scan of every session for each of the 2000 drops visited 4 million.
    expect(visited).toBeLessThan(sessions * 10);
  });

  it('finds an offline subscriber only once a persistent session has subscribed, and then every time', async () => {
    const { p } = make({});
    await p.setup({});
    // No persistent session yet: the short cut answers, and answers the same each time.
    expect(await p.subscriptionsByTopic('plant/line-1/temp')).toEqual([]);
    const client = { id: 'away-1' };
    await p.addSubscriptions(client, [{ topic: 'plant/+/temp', qos: 1 }]);
    const subs = (await p.subscriptionsByTopic('plant/line-1/temp')) as { clientId: string }[];
    expect(subs.map((s) => s.clientId)).toEqual(['away-1']);
    expect(await p.subscriptionsByTopic('plant/line-1/humidity')).toEqual([]);
  });
});
