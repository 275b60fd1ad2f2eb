import type { ServerWritableStream } from '@grpc/grpc-js';
import type { RecordLog } from '../../core/pipeline.ts';
import { recordPrefix } from '../../core/record.ts';
import type { TopicRouter } from '../../core/topic-filter.ts';
import { encodeGapRecord, type GapReason } from './gap.ts';

const READ_RECORDS = 256;
const DEFAULT_READ_BYTES = 1024 * 1024;

/**
 * One Subscribe stream: walks the journal from `pos` and writes matching records, replay and
 * live alike, through the same read path, so there is no seam to fall into. When the client
 * reads slowly, `write` returns false and the loop waits for 'drain' before reading the journal
 * again: memory stays bounded by the stream's buffer, and ingest never waits for a consumer.
 *
 * The disk budget wins over a subscriber: when the journal no longer has the next record (the
 * oldest were dropped for the budget or the TTL, or trimmed), the stream says so with a gap
 * notice and goes on at the oldest retained record. It never skips a seq without telling.
 */
export class Subscription {
  private readonly call: ServerWritableStream<unknown, Buffer>;
  private readonly log: RecordLog;
  private readonly router: TopicRouter;
  private pos: number;
  /** One read's bytes: a stream holds about this much of the journal at a time. */
  private readonly readBytes: number;
  private ended = false;
  private wake: (() => void) | null = null;
  private waitingFor: 'commit' | 'drain' | null = null;
  /** Records written to this stream. */
  sent = 0;
  /** Gap notices written, and the seqs they covered. */
  gaps = 0;
  missed = 0;
  /** Set when the stream was ended with an error for the client (its consumer was deleted). */
  endedWith: Error | null = null;

  constructor(
    call: ServerWritableStream<unknown, Buffer>,
    log: RecordLog,
    router: TopicRouter,
    afterSeq: number,
    readBytes = DEFAULT_READ_BYTES,
  ) {
    this.readBytes = readBytes;
    this.call = call;
    this.log = log;
    this.router = router;
    this.pos = afterSeq;
  }

  /** Ends the stream: the loop stops and the caller completes the call, with `err` if given. */
  end(err?: Error): void {
    if (err && !this.ended) this.endedWith = err;
    this.ended = true;
    this.wakeUp();
  }

  async run(): Promise<void> {
    const stop = () => this.end();
    this.call.on('cancelled', stop);
    this.call.on('close', stop);
    this.call.on('error', stop);
    this.call.on('drain', this.onDrain);
    this.log.on('commit', this.onCommit);
    try {
      await this.loop();
    } finally {
      this.log.off('commit', this.onCommit);
      this.call.off('drain', this.onDrain);
    }
  }

  private readonly onCommit = (): void => {
    if (this.waitingFor === 'commit') this.wakeUp();
  };

  private readonly onDrain = (): void => {
    if (this.waitingFor === 'drain') this.wakeUp();
  };

  private wakeUp(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async waitFor(what: 'commit' | 'drain'): Promise<void> {
    this.waitingFor = what;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
    });
    this.waitingFor = null;
  }

  private async loop(): Promise<void> {
    while (!this.ended) {
      if (this.pos >= this.log.lastCommittedSeq) {
        await this.waitFor('commit');
        continue;
      }
      // Checked in the same turn as the read starts, so the read cannot begin further on.
      const first = this.log.firstRetainedSeq;
      if (this.pos + 1 < first) {
        await this.sendGap(first - 1, 'not retained');
        continue;
      }
      const { records, next } = await this.log.readBatch(this.pos + 1, READ_RECORDS, this.readBytes);
      for (const r of records) {
        if (this.ended) return;
        // The journal's seqs have no holes: one skipped here failed its checksum.
        if (r.seq > this.pos + 1) await this.sendGap(r.seq - 1, 'corrupt');
        if (this.ended) return;
        this.pos = r.seq;
        // Every record goes through the router, `#` too: it keeps `$` topics from filters that
        // start with a wildcard [MQTT-4.7.2-1] (for `#` from the topic's first byte alone).
        if (!this.router.matchesRecord(r.body)) continue;
        const prefix = recordPrefix(this.log.epoch, r.seq);
        this.sent++;
        if (!this.call.write(Buffer.concat([prefix, r.body], prefix.length + r.body.length))) {
          // Back-pressure: the client is not keeping up. 'drain' (or its going away) wakes us.
          await this.waitFor('drain');
        }
      }
      // Past records that failed their checksum too, never past what the read did not look at.
      if (!this.ended && next - 1 > this.pos) await this.sendGap(next - 1, 'corrupt');
    }
  }

  /** Tells the client it misses `pos + 1 .. toSeq`, and moves past them. */
  private async sendGap(toSeq: number, reason: GapReason): Promise<void> {
    const from = this.pos + 1;
    this.pos = toSeq;
    this.gaps++;
    this.missed += toSeq - from + 1;
    if (!this.call.write(encodeGapRecord(from, toSeq, reason))) await this.waitFor('drain');
  }
}
