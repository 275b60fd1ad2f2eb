import { Readable } from 'node:stream';
import aedesPersistence from 'aedes-persistence';

// A CommonJS module whose types declare an ES default export: imported from ESM, the default
// is module.exports itself, the factory function.
const memory = aedesPersistence as unknown as () => unknown;

// aedes' in-memory persistence (aedes-persistence 11) queues every QoS >= 1 message for an
// offline `clean: false` session without limit (about 1.2-2.2 KB a message) and keeps retained
// messages in an unbounded map. Its state is in private class fields, so a subclass cannot trim
// it: this wrapper keeps the outgoing queues itself, bounded, drops the oldest retained messages
// through the inner store's own delete (an empty payload [MQTT-3.3.1-10]), and passes everything
// else (subscriptions, wills, the incoming QoS 2 store) to the inner persistence unchanged.

export interface PersistenceLimits {
  /** Per session: messages queued (offline, or sent and not yet acknowledged). */
  maxQueuedMessages: number;
  /** Per session: bytes (topic + payload) queued. */
  maxQueuedBytes: number;
  /** All sessions together. */
  maxQueuedMessagesTotal: number;
  maxQueuedBytesTotal: number;
  maxRetainedMessages: number;
  /** Bytes (topic + payload) of all retained messages. */
  maxRetainedBytes: number;
}

/** Sampled by the metrics at scrape time; the persistence only adds to the fields. */
export interface PersistenceStats {
  /** Queued messages dropped (oldest first) to stay within the session or total bound. */
  sessionDropped: number;
  /** Retained messages dropped (oldest stored first) to stay within the bound. */
  retainedDropped: number;
  /** Messages queued for sessions now. */
  queuedMessages: number;
  /** Retained messages held now. */
  retainedMessages: number;
}

/** Told of the end of incoming QoS 2 exchanges (see Qos2Dedup). */
export interface IncomingObserver {
  /** A PUBREL for `messageId` arrived from `clientId` [MQTT-4.3.3]. */
  pubrel(clientId: string, messageId: number): void;
  /** The session's incoming state was cleared (clean session start or end, [MQTT-3.1.2-6]). */
  sessionCleared(clientId: string): void;
}

interface Packet {
  cmd: string;
  brokerId?: string;
  brokerCounter?: number;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  dup: boolean;
  messageId?: number;
  clientId?: string;
  nl?: boolean;
  properties?: unknown;
  messageExpiry?: number;
}

interface ClientRef {
  id: string;
}

/** The promise-returning surface of aedes-persistence that aedes 1.x calls. */
type Inner = Record<string, (...args: never[]) => unknown> & {
  setup(broker: unknown): Promise<void>;
  storeRetained(packet: Packet): Promise<void>;
  incomingGetPacket(client: ClientRef, packet: Packet): Promise<Packet>;
  cleanIncoming(client: ClientRef): Promise<void>;
  subscriptionsByTopic(topic: string): Promise<unknown[]>;
};

/**
 * A queued message: the fields aedes reads back (the same ones aedes-packet copies, so each
 * session gets its own object to set a messageId on), plus where it stands in the queue order.
 */
class QueuedPacket {
  cmd: string;
  brokerId: string | undefined;
  brokerCounter: number | undefined;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  dup: boolean;
  messageId: number | undefined;
  clientId?: string;
  nl?: boolean;
  properties?: unknown;
  messageExpiry?: number;
  /** Order of enqueueing across all sessions: the smallest is the oldest message held. */
  readonly order: number;
  readonly bytes: number;
  /** The session queue holding it, and its neighbours in the list of all held messages by `order`. */
  session: SessionQueue | null = null;
  older: QueuedPacket | null = null;
  newer: QueuedPacket | null = null;

  /** `messageId`: none for a message just queued (aedes-packet clears it too), the sent one on a replace. */
  constructor(p: Packet, order: number, messageId: number | undefined) {
    this.cmd = p.cmd || 'publish';
    this.brokerId = p.brokerId;
    this.brokerCounter = p.brokerCounter;
    this.topic = p.topic;
    this.payload = p.payload ?? EMPTY;
    this.qos = p.qos || 0;
    this.retain = p.retain || false;
    this.dup = p.dup || false;
    this.messageId = messageId;
    if (p.clientId !== undefined) this.clientId = p.clientId;
    if (p.nl !== undefined) this.nl = p.nl;
    if (p.properties !== undefined) this.properties = p.properties;
    if (p.messageExpiry !== undefined) this.messageExpiry = p.messageExpiry;
    this.order = order;
    this.bytes = (this.topic ? Buffer.byteLength(this.topic) : 0) + this.payload.length;
  }
}

const EMPTY = Buffer.alloc(0);

/** One session's queue, oldest first from `head` (a moving head instead of Array#shift). */
class SessionQueue {
  items: (QueuedPacket | undefined)[] = [];
  head = 0;
  bytes = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  removeAt(i: number): QueuedPacket {
    const items = this.items;
    const p = items[i]!;
    if (i === this.head) {
      items[i] = undefined;
      this.head++;
      if (this.head === items.length) {
        this.items = [];
        this.head = 0;
      } else if (this.head >= 1024 && this.head * 2 >= items.length) {
        items.splice(0, this.head);
        this.head = 0;
      }
    } else {
      items.splice(i, 1);
    }
    this.bytes -= p.bytes;
    return p;
  }

  live(): QueuedPacket[] {
    return this.items.slice(this.head) as QueuedPacket[];
  }
}

export class BoundedPersistence {
  private readonly inner: Inner;
  private readonly limits: PersistenceLimits;
  private readonly stats: PersistenceStats;
  private readonly observer: IncomingObserver | null;
  private readonly queues = new Map<string, SessionQueue>();
  private order = 0;
  private queuedBytes = 0;
  /**
   * Every held message, oldest first, linked through the messages: the oldest overall is found
   * without visiting every session. At the total bound (reached for good when sessions are
   * abandoned) each enqueue drops one; a scan of all sessions there cost O(sessions) per
   * subscriber, O(sessions^2) per broadcast publish (5000 away sessions: 0.3 s of blocked loop).
   */
  private oldestAll: QueuedPacket | null = null;
  private newestAll: QueuedPacket | null = null;
  /** Retained topics, oldest stored first, with their bytes. */
  private readonly retained = new Map<string, number>();
  private retainedBytes = 0;
  /**
   * Whether a persistent session (clean false) ever subscribed: aedes stores only those
   * subscriptions here. Until one does, no publish can have an offline subscriber, and the
   * per-message topic match in the inner store (a split and a trie walk for every QoS 1/2
   * publish) is skipped. Sticky: unsubscribes are not counted back down.
   */
  private persistentSubscriptions = false;

  constructor(limits: PersistenceLimits, stats: PersistenceStats, observer: IncomingObserver | null = null) {
    this.inner = memory() as unknown as Inner;
    this.limits = limits;
    this.stats = stats;
    this.observer = observer;
  }

  // aedes refuses a persistence whose setup is not an AsyncFunction.
  async setup(broker: unknown): Promise<void> {
    await this.inner.setup(broker);
  }

  // --- retained messages -------------------------------------------------------------------

  storeRetained(packet: Packet): Promise<void> {
    const retained = this.retained;
    const topic = packet.topic;
    const old = retained.get(topic);
    if (old !== undefined) {
      // A newer message for the topic replaces it and becomes the newest.
      retained.delete(topic);
      this.retainedBytes -= old;
    }
    const payload = packet.payload;
    if (payload && payload.length > 0) {
      const bytes = Buffer.byteLength(topic) + payload.length;
      retained.set(topic, bytes);
      this.retainedBytes += bytes;
    }
    // The inner store updates its map synchronously, before any await: the order holds.
    const stored = this.inner.storeRetained(packet);
    const limits = this.limits;
    while (
      retained.size > limits.maxRetainedMessages ||
      (this.retainedBytes > limits.maxRetainedBytes && retained.size > 1)
    ) {
      const [oldest, bytes] = retained.entries().next().value as [string, number];
      retained.delete(oldest);
      this.retainedBytes -= bytes;
      this.stats.retainedDropped++;
      this.inner.storeRetained(deleteRetained(oldest)).catch(noop);
    }
    this.stats.retainedMessages = retained.size;
    return stored;
  }

  createRetainedStream(pattern: string): Readable {
    return this.inner.createRetainedStream(pattern as never) as Readable;
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    return this.inner.createRetainedStreamCombi(patterns as never) as Readable;
  }

  // --- outgoing queues ---------------------------------------------------------------------

  async outgoingEnqueue(sub: { clientId: string }, packet: Packet): Promise<void> {
    this.enqueue(sub.clientId, packet);
  }

  outgoingEnqueueCombi(subs: { clientId: string }[], packet: Packet): Promise<void> {
    for (let i = 0; i < subs.length; i++) this.enqueue(subs[i].clientId, packet);
    return DONE;
  }

  private enqueue(clientId: string, packet: Packet): void {
    let q = this.queues.get(clientId);
    if (q === undefined) {
      q = new SessionQueue();
      this.queues.set(clientId, q);
    }
    const p = new QueuedPacket(packet, ++this.order, undefined);
    p.session = q;
    this.link(p);
    q.items.push(p);
    q.bytes += p.bytes;
    this.queuedBytes += p.bytes;
    this.stats.queuedMessages++;
    const limits = this.limits;
    // mosquitto applies max_queued_messages to offline sessions: past it the oldest goes.
    while (q.length > limits.maxQueuedMessages || (q.bytes > limits.maxQueuedBytes && q.length > 1)) {
      this.drop(q, q.head);
    }
    if (
      this.stats.queuedMessages > limits.maxQueuedMessagesTotal ||
      (this.queuedBytes > limits.maxQueuedBytesTotal && this.stats.queuedMessages > 1)
    ) {
      this.dropOldestOverall();
    }
  }

  /**
   * Over the total: drop the oldest message held for any session until back within it. A
   * session's queue is in `order` too, so the oldest overall is at the head of its own queue.
   */
  private dropOldestOverall(): void {
    const limits = this.limits;
    while (
      this.stats.queuedMessages > limits.maxQueuedMessagesTotal ||
      (this.queuedBytes > limits.maxQueuedBytesTotal && this.stats.queuedMessages > 1)
    ) {
      const oldest = this.oldestAll;
      if (oldest === null) return;
      const q = oldest.session!;
      const i = q.items[q.head] === oldest ? q.head : q.items.indexOf(oldest, q.head);
      this.drop(q, i);
    }
  }

  private link(p: QueuedPacket): void {
    const newest = this.newestAll;
    p.older = newest;
    if (newest === null) this.oldestAll = p;
    else newest.newer = p;
    this.newestAll = p;
  }

  private unlink(p: QueuedPacket): void {
    const { older, newer } = p;
    if (older === null) this.oldestAll = newer;
    else older.newer = newer;
    if (newer === null) this.newestAll = older;
    else newer.older = older;
    p.older = null;
    p.newer = null;
    p.session = null;
  }

  /** `next` takes the place of `p` (same order) in the list of all held messages. */
  private relink(p: QueuedPacket, next: QueuedPacket): void {
    next.session = p.session;
    next.older = p.older;
    next.newer = p.newer;
    if (p.older === null) this.oldestAll = next;
    else p.older.newer = next;
    if (p.newer === null) this.newestAll = next;
    else p.newer.older = next;
    p.older = null;
    p.newer = null;
    p.session = null;
  }

  private drop(q: SessionQueue, i: number): void {
    this.remove(q, i);
    this.stats.sessionDropped++;
  }

  private remove(q: SessionQueue, i: number): QueuedPacket {
    const p = q.removeAt(i);
    this.unlink(p);
    this.queuedBytes -= p.bytes;
    this.stats.queuedMessages--;
    return p;
  }

  /**
   * Records the messageId a queued message was sent with (or replaces a PUBLISH by its PUBREL),
   * as aedes-persistence does. A message the bound dropped meanwhile is not found: it is sent
   * anyway (the client is online), just no longer kept for a resend after a reconnect.
   */
  async outgoingUpdate(client: ClientRef, packet: Packet): Promise<void> {
    const q = this.queues.get(client.id);
    if (q === undefined) return;
    const items = q.items;
    // A PUBREL (aedes' handlers/pubrec.js) has no brokerId, nor do the PUBRELs held before it: it
    // is found by its messageId only. (aedes-persistence compares brokerId and brokerCounter
    // first, so a PUBREC took the id of an earlier PUBREL still awaiting its PUBCOMP, and left
    // its own PUBLISH to be sent again, as new, on the next connection.)
    const publish = packet.brokerId !== undefined;
    for (let i = q.head; i < items.length; i++) {
      const p = items[i]!;
      if (publish && p.brokerId === packet.brokerId) {
        if (p.brokerCounter === packet.brokerCounter) {
          p.messageId = packet.messageId;
          return;
        }
      } else if (p.messageId === packet.messageId) {
        const replaced = new QueuedPacket(packet, p.order, packet.messageId);
        this.relink(p, replaced);
        items[i] = replaced;
        q.bytes += replaced.bytes - p.bytes;
        this.queuedBytes += replaced.bytes - p.bytes;
        return;
      }
    }
  }

  async outgoingClearMessageId(client: ClientRef, packet: Packet): Promise<Packet | undefined> {
    const q = this.queues.get(client.id);
    if (q === undefined) return undefined;
    const items = q.items;
    for (let i = q.head; i < items.length; i++) {
      if (items[i]!.messageId === packet.messageId) return this.remove(q, i);
    }
    return undefined;
  }

  outgoingStream(client: ClientRef): Readable {
    // A copy: aedes clears entries while it streams them.
    return Readable.from(this.queues.get(client.id)?.live() ?? []);
  }

  // --- incoming QoS 2 (the inner store; observed for Qos2Dedup) ------------------------------

  incomingGetPacket(client: ClientRef, packet: Packet): Promise<Packet> {
    // aedes looks a PUBREL's packet up here (handlers/pubrel.js) whether or not it stored it.
    if (packet.cmd === 'pubrel' && this.observer && client.id) {
      this.observer.pubrel(client.id, packet.messageId as number);
    }
    return this.inner.incomingGetPacket(client, packet);
  }

  cleanIncoming(client: ClientRef): Promise<void> {
    if (this.observer && client.id) this.observer.sessionCleared(client.id);
    return this.inner.cleanIncoming(client);
  }

  // --- the rest, unchanged -----------------------------------------------------------------

  incomingStorePacket(...args: unknown[]): unknown {
    return this.call('incomingStorePacket', args);
  }
  incomingDelPacket(...args: unknown[]): unknown {
    return this.call('incomingDelPacket', args);
  }
  addSubscriptions(...args: unknown[]): unknown {
    this.persistentSubscriptions = true;
    return this.call('addSubscriptions', args);
  }
  removeSubscriptions(...args: unknown[]): unknown {
    return this.call('removeSubscriptions', args);
  }
  subscriptionsByClient(...args: unknown[]): unknown {
    return this.call('subscriptionsByClient', args);
  }
  subscriptionsByTopic(topic: string): Promise<unknown[]> {
    if (!this.persistentSubscriptions) return NO_SUBSCRIPTIONS;
    return this.inner.subscriptionsByTopic(topic);
  }
  cleanSubscriptions(...args: unknown[]): unknown {
    return this.call('cleanSubscriptions', args);
  }
  countOffline(...args: unknown[]): unknown {
    return this.call('countOffline', args);
  }
  putWill(...args: unknown[]): unknown {
    return this.call('putWill', args);
  }
  getWill(...args: unknown[]): unknown {
    return this.call('getWill', args);
  }
  delWill(...args: unknown[]): unknown {
    return this.call('delWill', args);
  }
  streamWill(...args: unknown[]): unknown {
    return this.call('streamWill', args);
  }
  getClientList(...args: unknown[]): unknown {
    return this.call('getClientList', args);
  }
  destroy(...args: unknown[]): unknown {
    return this.call('destroy', args);
  }

  private call(method: string, args: unknown[]): unknown {
    return (this.inner[method] as (...a: unknown[]) => unknown).apply(this.inner, args);
  }
}

// Shared settled promises: aedes only chains on them (and copies the list before filtering it).
const DONE: Promise<void> = Promise.resolve();
const NO_SUBSCRIPTIONS: Promise<unknown[]> = Promise.resolve(Object.freeze([]) as unknown as unknown[]);

function deleteRetained(topic: string): Packet {
  return { cmd: 'publish', topic, payload: EMPTY, qos: 0, retain: true, dup: false };
}

function noop(): void {}
