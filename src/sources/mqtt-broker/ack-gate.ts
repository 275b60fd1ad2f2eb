import type { Socket } from 'node:net';

/** What sits below the gate and wants to know when a released batch is corked (OutboundBound). */
export interface BatchObserver {
  beginBatch(): void;
  endBatch(): void;
}

interface HeldWrite {
  /** Released once this many of the connection's appended records are committed. */
  upTo: number;
  chunk: unknown;
  encoding: unknown;
  cb: unknown;
}

/**
 * Keeps a connection's acks behind its commits without stopping its input.
 *
 * The broker is told a QoS 1/2 publish is accepted as soon as it is appended, so it goes on
 * parsing and journaling the connection's next packets (a publisher's whole in-flight window
 * shares one group commit). Whatever the broker then writes to the socket (the PUBACK/PUBREC,
 * and anything after it, in order) is held here until every record the connection had appended
 * by then is committed. A refused record destroys the connection with its acks unsent.
 *
 * Records of one connection commit in append order, so two counters say what may go.
 */
export class AckGate {
  private appended = 0;
  private committed = 0;
  private held: HeldWrite[] = [];
  private next = 0;
  private corked = false;
  private refused = false;
  private readonly socket: Socket;
  private readonly write: Socket['write'];
  private readonly below: BatchObserver | null;

  constructor(socket: Socket, below: BatchObserver | null = null) {
    this.socket = socket;
    this.below = below;
    const write = socket.write;
    this.write = write;
    const gate = this;
    socket.write = function gatedWrite(this: Socket, chunk: unknown, encoding?: unknown, cb?: unknown) {
      if (gate.refused) return true;
      if (gate.committed === gate.appended && gate.next === gate.held.length) {
        return write.call(this, chunk as Buffer, encoding as BufferEncoding, cb as () => void);
      }
      gate.held.push({ upTo: gate.appended, chunk, encoding, cb });
      // Held bytes are bounded by the journal's pending limit (the source pauses reading).
      return true;
    } as Socket['write'];
  }

  /** Nothing of this connection waits for a commit: what it writes now goes out at once. */
  get idle(): boolean {
    return this.committed === this.appended;
  }

  /** Records of this connection appended and not yet committed: its acks still held. */
  get pending(): number {
    return this.appended - this.committed;
  }

  /** A record of this connection went into the journal's queue. */
  appendedOne(): void {
    this.appended++;
  }

  /** The oldest uncommitted record of this connection is committed: release what waited for it. */
  committedOne(): void {
    this.committed++;
    const held = this.held;
    if (this.next < held.length && held[this.next].upTo <= this.committed && !this.corked) {
      // One group commit releases many acks: send them in one writev, not a syscall each.
      this.corked = true;
      this.socket.cork();
      this.below?.beginBatch();
      process.nextTick(uncork, this);
    }
    while (this.next < held.length && held[this.next].upTo <= this.committed) {
      const w = held[this.next];
      held[this.next++] = undefined as unknown as HeldWrite;
      if (!this.socket.destroyed) {
        this.write.call(this.socket, w.chunk as Buffer, w.encoding as BufferEncoding, w.cb as () => void);
      }
    }
    if (this.next === held.length) {
      this.held = [];
      this.next = 0;
    }
  }

  uncork(): void {
    this.corked = false;
    this.socket.uncork();
    this.below?.endBatch();
  }

  /**
   * A record was refused: nothing written after it may leave; the publisher resends. Acks
   * already released still go out (a close with unread input would reset them away), then the
   * connection closes.
   */
  refuse(): void {
    if (this.refused) return;
    this.refused = true;
    this.held = [];
    this.next = 0;
    const socket = this.socket;
    if (this.corked) this.uncork();
    socket.end(() => socket.destroy());
    // A peer that stops reading must not keep the half-closed socket forever.
    setTimeout(() => socket.destroy(), 2000).unref();
  }
}

function uncork(gate: AckGate): void {
  gate.uncork();
}
