import { status } from '@grpc/grpc-js';
import type { ConsumerDirectory, ConsumerInfo } from '../../core/consumers.ts';
import type { Logger } from '../../core/logger.ts';
import type { RecordLog } from '../../core/pipeline.ts';

const CURSOR_PREFIX = 'consumer/';

export function consumerCursor(name: string): string {
  return `${CURSOR_PREFIX}${name}`;
}

/** What the directory needs of a Subscribe stream: a way to end it. */
export interface ConsumerStream {
  end(err?: Error): void;
}

interface ConsumerState {
  leases: Set<StreamLease>;
  lastActivityAt: number;
}

/**
 * One Subscribe stream's hold on its consumer, taken before the cursor is opened, so the consumer
 * cannot expire between the request and the stream's first record. Deleting the consumer revokes
 * it and ends the stream.
 */
export class StreamLease {
  private stream: ConsumerStream | null = null;
  private readonly state: ConsumerState;
  revoked: Error | null = null;

  constructor(state: ConsumerState) {
    this.state = state;
  }

  bind(stream: ConsumerStream): void {
    if (this.revoked) stream.end(this.revoked);
    else this.stream = stream;
  }

  revoke(err: Error): void {
    this.revoked = err;
    this.stream?.end(err);
  }

  /** The stream is over: the consumer's inactivity clock starts now (unless another is open). */
  release(now = Date.now()): void {
    if (this.state.leases.delete(this) && this.state.leases.size === 0) this.state.lastActivityAt = now;
  }
}

/**
 * The durable consumers of the Gateway API and their activity. A consumer is a journal cursor
 * `consumer/<name>`; one that nobody streams from or acks for `expireAfterMs` is removed, since
 * its cursor would otherwise hold back trimming for ever (under `onFull: reject` the journal
 * fills and devices are refused). Activity is kept in memory only: after a restart every
 * consumer's clock starts anew, which errs on the side of keeping it.
 */
export class Consumers implements ConsumerDirectory {
  readonly removed = { expired: 0, deleted: 0 };
  private readonly expireAfterMs: number;
  private readonly log: Logger;
  private records: RecordLog | null = null;
  private readonly states = new Map<string, ConsumerState>();
  /** Cursor removals in flight: a Subscribe of the same name waits for it and starts afresh. */
  private readonly removals = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private sweeping = false;

  constructor(expireAfterMs: number, log: Logger) {
    this.expireAfterMs = expireAfterMs;
    this.log = log;
  }

  attach(records: RecordLog, now = Date.now()): void {
    this.records = records;
    for (const name of this.names()) this.stateOf(name, now);
    // One coarse timer for every consumer; expiry is late by at most a quarter of expireAfter
    // (a minute at most), which does not matter at the scale expiry is meant for.
    const every = Math.min(60_000, Math.max(10, Math.floor(this.expireAfterMs / 4)));
    this.timer = setInterval(this.onTimer, every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Takes a lease for a Subscribe stream of `name`, once any removal of that name is done. */
  async open(name: string): Promise<StreamLease> {
    await this.removals.get(name);
    const state = this.stateOf(name);
    const lease = new StreamLease(state);
    state.leases.add(lease);
    state.lastActivityAt = Date.now();
    return lease;
  }

  /** An Ack: the consumer is alive. */
  acked(name: string, now = Date.now()): void {
    this.stateOf(name, now).lastActivityAt = now;
  }

  list(now = Date.now()): ConsumerInfo[] {
    const records = this.records;
    if (!records) return [];
    const first = records.firstRetainedSeq;
    const last = records.lastCommittedSeq;
    return this.names()
      .sort()
      .map((name) => {
        const position = records.cursor(consumerCursor(name)) ?? 0;
        const st = this.stateOf(name, now);
        const open = st.leases.size;
        return {
          name,
          position,
          backlog: Math.max(0, last - Math.max(position, first - 1)),
          openStreams: open,
          lastActivityAt: st.lastActivityAt,
          expiresAt: open > 0 ? null : st.lastActivityAt + this.expireAfterMs,
        };
      });
  }

  async delete(name: string): Promise<{ endedStreams: number } | null> {
    const position = this.records?.cursor(consumerCursor(name));
    if (position === undefined) return null;
    const endedStreams = await this.remove(name);
    this.removed.deleted++;
    this.log.info({ consumer: name, position, endedStreams }, 'consumer deleted');
    return { endedStreams };
  }

  /** Removes every consumer inactive for expireAfterMs. */
  async sweep(now = Date.now()): Promise<void> {
    if (this.sweeping || !this.records) return;
    this.sweeping = true;
    try {
      for (const info of this.list(now)) {
        if (info.expiresAt === null || info.expiresAt > now) continue;
        // A Subscribe or Ack may have come in while an earlier removal was awaited.
        const st = this.states.get(info.name);
        if (!st || st.leases.size > 0 || now - st.lastActivityAt < this.expireAfterMs) continue;
        await this.remove(info.name);
        this.removed.expired++;
        this.log.warn(
          {
            consumer: info.name,
            position: info.position,
            backlog: info.backlog,
            idleMs: now - info.lastActivityAt,
            expireAfterMs: this.expireAfterMs,
          },
          'consumer expired: no stream and no Ack for expireAfter, removed its cursor',
        );
      }
    } finally {
      this.sweeping = false;
    }
  }

  private readonly onTimer = (): void => {
    this.sweep().catch((err) => this.log.warn({ err: (err as Error).message }, 'consumer expiry failed'));
  };

  /** Ends the consumer's streams and removes its cursor; resolves with the streams ended. */
  private async remove(name: string): Promise<number> {
    const st = this.states.get(name);
    this.states.delete(name);
    let ended = 0;
    if (st) {
      const err = Object.assign(new Error(`consumer ${JSON.stringify(name)} was deleted`), {
        code: status.ABORTED,
        details: `consumer ${JSON.stringify(name)} was deleted`,
      });
      for (const lease of st.leases) {
        lease.revoke(err);
        ended++;
      }
    }
    const removal = (this.records as RecordLog)
      .removeCursor(consumerCursor(name))
      .catch((err) => {
        // The cursor is gone from memory (trimming no longer waits for it); only its key stayed
        // on disk, and at the next start it comes back and expires again.
        this.log.warn(
          { consumer: name, err: (err as Error).message },
          'consumer removed, but deleting its cursor from disk failed',
        );
      })
      .finally(() => {
        if (this.removals.get(name) === removal) this.removals.delete(name);
      });
    this.removals.set(name, removal);
    await removal;
    return ended;
  }

  private names(): string[] {
    if (!this.records) return [];
    const out: string[] = [];
    for (const c of this.records.cursorNames()) {
      if (c.startsWith(CURSOR_PREFIX)) out.push(c.slice(CURSOR_PREFIX.length));
    }
    return out;
  }

  private stateOf(name: string, now = Date.now()): ConsumerState {
    let st = this.states.get(name);
    if (!st) {
      st = { leases: new Set(), lastActivityAt: now };
      this.states.set(name, st);
    }
    return st;
  }
}
