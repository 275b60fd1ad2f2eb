import type { Socket } from 'node:net';

// Follows the MQTT packets the broker writes to one connection ([MQTT-2.2]: a type byte, a 1-4
// byte Remaining Length, the body; mqtt-packet writes each packet in several chunks, the topic
// as a string) to know how many PUBLISH packets still sit in the socket's buffer.

const HEADER = 0;
const LENGTH = 1;
const BODY = 2;
const PUBLISH = 3;

export interface OutboundLimits {
  /** PUBLISH packets that may wait in one connection's socket buffer. */
  maxQueuedMessages: number;
  /** Bytes that may wait in one connection's socket buffer. */
  maxQueuedBytes: number;
}

/** Told when a connection's queue is full. */
export interface OutboundOverflow {
  /** A QoS 1/2 PUBLISH found the queue full: the connection is being destroyed. */
  outboundOverflow(socket: Socket, bound: OutboundBound): void;
  /** A QoS 0 PUBLISH found the queue full and was dropped for this connection. */
  outboundDropped(socket: Socket, bound: OutboundBound): void;
}

/**
 * Bounds what the broker queues for one connection, and keeps a subscriber that stops reading
 * from holding back everyone else.
 *
 * aedes 1.x (lib/write.js) waits for 'drain' whenever a write returns false, and a QoS 1/2
 * publish completes, and its publisher's next packet is read, only when every subscriber's
 * write has: one subscriber with a full socket stopped all ingest until aedes' drainTimeout
 * (60 s). Here a write that belongs to a PUBLISH always reports success, so deliveries never
 * wait; instead, before a PUBLISH goes into the socket, the PUBLISH packets and bytes already
 * waiting there (not yet taken by the kernel) are checked against the limits, as mosquitto's
 * max_queued_messages / max_queued_bytes: past them a QoS 0 message is dropped for this
 * connection (at most once [MQTT-4.3.1]) and a QoS 1/2 one closes the connection, which then
 * counts as offline (a `clean: false` session keeps, bounded, what it has not acknowledged).
 * Other packets (SUBACK, PINGRESP...) keep the socket's own result: aedes waits on those for
 * their own connection only.
 *
 * Installed below the AckGate: acks the gate holds back are not in the socket and do not count;
 * once released they pass through here like any write. A packet starts in its own chunk
 * (mqtt-packet writes one packet per call; the gate releases the same chunks), so a dropped
 * PUBLISH is whole chunks; a full queue met in the middle of a chunk closes the connection.
 */
export class OutboundBound {
  private readonly socket: Socket;
  private readonly limits: OutboundLimits;
  private readonly owner: OutboundOverflow;
  private readonly write: Socket['write'];
  private state = HEADER;
  /** MQTT packet type of the packet being written (or last written). */
  private type = 0;
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private bodyLeft = 0;
  /** Offset, in `written` terms, at which the packet being written started. */
  private packetStart = 0;
  private dropping = false;
  private closing = false;
  /** Bytes handed to the socket so far. */
  private written = 0;
  /** Where each PUBLISH still in the socket's buffer ends (a `written` offset), oldest first from `head`. */
  private ends: number[] = [];
  private head = 0;
  /** QoS 0 messages dropped for this connection. */
  dropped = 0;
  /** While the AckGate releases a corked batch: what was queued before it (see `beginBatch`). */
  private batching = false;
  private batchMessages = 0;
  private batchBytes = 0;

  constructor(socket: Socket, limits: OutboundLimits, owner: OutboundOverflow) {
    this.socket = socket;
    this.limits = limits;
    this.owner = owner;
    const write = socket.write;
    this.write = write;
    const bound = this;
    socket.write = function boundedWrite(this: Socket, chunk: unknown, encoding?: unknown, cb?: unknown) {
      return bound.onWrite(chunk, encoding, cb);
    } as Socket['write'];
  }

  /**
   * The AckGate releases a commit's held writes into a corked socket, to go out in one writev on
   * the next tick: until then they all sit in the buffer, though the kernel may take them at
   * once. A client that publishes and subscribes gets every delivery that arrived during its
   * commit in such a batch, so the batch is admitted against what was queued before it; the next
   * PUBLISH after the uncork counts it all.
   */
  beginBatch(): void {
    this.batchMessages = this.queuedMessages;
    this.batchBytes = this.socket.writableLength;
    this.batching = true;
  }

  endBatch(): void {
    this.batching = false;
  }

  /** PUBLISH packets handed to the socket that it has not yet passed to the kernel. */
  get queuedMessages(): number {
    this.forgetFlushed();
    return this.ends.length - this.head;
  }

  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  private onWrite(chunk: unknown, encoding: unknown, cb: unknown): boolean {
    const socket = this.socket;
    if (this.closing || socket.destroyed) {
      if (typeof cb === 'function') process.nextTick(cb as () => void);
      return true;
    }
    if (typeof chunk === 'string') {
      // mqtt-packet writes a topic as a string: always inside a packet's body.
      const n = Buffer.byteLength(chunk, encoding as BufferEncoding);
      // The socket counts a string in its writableLength by characters (decodeStrings is off),
      // `written` by bytes: a topic with multi-byte characters goes as bytes, or the PUBLISH
      // packets still queued would look flushed.
      if (this.state === BODY && n <= this.bodyLeft && n === chunk.length)
        return this.passBody(n, chunk, encoding, cb);
      return this.onWrite(Buffer.from(chunk, encoding as BufferEncoding), undefined, cb);
    }
    const buf = chunk as Buffer;
    if (this.state === BODY && buf.length <= this.bodyLeft)
      return this.passBody(buf.length, chunk, encoding, cb);
    return this.scan(buf, cb);
  }

  /** A chunk wholly inside the current packet's body: no header to read. */
  private passBody(n: number, chunk: unknown, encoding: unknown, cb: unknown): boolean {
    this.bodyLeft -= n;
    if (this.bodyLeft === 0) this.state = HEADER;
    if (this.dropping) {
      if (this.bodyLeft === 0) this.dropping = false;
      if (typeof cb === 'function') process.nextTick(cb as () => void);
      return true;
    }
    this.written += n;
    const ok = this.write.call(this.socket, chunk as Buffer, encoding as BufferEncoding, cb as () => void);
    return this.type === PUBLISH || ok;
  }

  /** A chunk with packet boundaries in it: walk the headers, skip the bodies. */
  private scan(buf: Buffer, cb: unknown): boolean {
    const base = this.written;
    let i = 0;
    while (i < buf.length) {
      if (this.state === BODY) {
        const take = Math.min(this.bodyLeft, buf.length - i);
        this.bodyLeft -= take;
        i += take;
        if (this.bodyLeft === 0) {
          this.state = HEADER;
          if (this.dropping) {
            // Only the start of a chunk is ever dropped (see `admit`), so the dropped packet
            // began at 0; what follows it in this chunk goes on as a chunk of its own.
            this.dropping = false;
            if (i === buf.length) {
              if (typeof cb === 'function') process.nextTick(cb as () => void);
              return true;
            }
            return this.onWrite(buf.subarray(i), undefined, cb);
          }
        }
        continue;
      }
      const b = buf[i];
      if (this.state === HEADER) {
        this.type = b >> 4;
        this.packetStart = base + i;
        this.state = LENGTH;
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
        if (this.type === PUBLISH && !this.admit(b, i)) {
          if (this.closing) {
            if (typeof cb === 'function') process.nextTick(cb as () => void);
            return true;
          }
          this.dropping = true;
        }
        i++;
        continue;
      }
      // LENGTH
      this.length += (b & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.lengthBytes++;
      i++;
      if (b & 0x80) continue;
      this.bodyLeft = this.length;
      if (this.type === PUBLISH && !this.dropping) {
        this.ends.push(this.packetStart + 1 + this.lengthBytes + this.length);
      }
      if (this.length === 0) {
        this.state = HEADER;
        if (this.dropping) this.dropping = false;
      } else {
        this.state = BODY;
      }
    }
    if (this.dropping && i === buf.length && this.packetStart === base) {
      // The whole chunk was (the start of) a dropped packet.
      if (typeof cb === 'function') process.nextTick(cb as () => void);
      return true;
    }
    this.written += buf.length;
    const ok = this.write.call(this.socket, buf, undefined, cb as () => void);
    return this.type === PUBLISH || ok;
  }

  /** Whether a PUBLISH whose first byte is `first`, at offset `at` of its chunk, may go into the socket. */
  private admit(first: number, at: number): boolean {
    const limits = this.limits;
    const messages = this.batching ? this.batchMessages : this.queuedMessages;
    const bytes = this.batching ? this.batchBytes : this.socket.writableLength;
    if (messages < limits.maxQueuedMessages && bytes < limits.maxQueuedBytes) return true;
    const qos = (first >> 1) & 3;
    if (qos === 0 && at === 0) {
      this.dropped++;
      this.owner.outboundDropped(this.socket, this);
      return false;
    }
    this.closing = true;
    this.owner.outboundOverflow(this.socket, this);
    this.socket.destroy();
    return false;
  }

  /** Forgets the PUBLISH packets the kernel has taken (the socket's buffer shrank past their end). */
  private forgetFlushed(): void {
    const ends = this.ends;
    const flushed = this.written - this.socket.writableLength;
    let head = this.head;
    while (head < ends.length && ends[head] <= flushed) head++;
    if (head === ends.length) {
      if (ends.length > 0) this.ends = [];
      head = 0;
    } else if (head >= 1024 && head * 2 >= ends.length) {
      ends.splice(0, head);
      head = 0;
    }
    this.head = head;
  }
}
