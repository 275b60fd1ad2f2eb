// One batch on its way through the bridge sink: publishes in journal order, at most `window`
// awaiting PUBACK, and the count of leading records acknowledged in order (what the dispatcher's
// cursor may pass). Its state lives in this object and a byte per record, not in closures.

import { ReasonCodes } from 'mqtt';
import { SinkAuthError, SinkSendError } from '../../core/errors.ts';
import type { OutboundBatch } from '../../core/pipeline.ts';
import { decodeRecord, recordId } from '../../core/record.ts';
import type { Link, MqttSink } from './mqtt-sink.ts';
import { MAX_REMAINING_LENGTH, PublishEncoder } from './publish-packet.ts';
import { topicNameProblem } from './topic-template.ts';

const PENDING = 0;
const SENT = 1;
const DONE = 2;

/** The record's `source` (bytes) that the loop rule looks for. */
const CLIENT_SOURCE = Buffer.from('mqtt-client');
const BROKER_ATTRIBUTE = 'broker';

/**
 * MQTT 5 PUBACK reason codes that refuse the message itself: sending it again cannot succeed, so
 * it is dead-lettered. Others (0x80 unspecified, 0x83 implementation specific, 0x91 packet id in
 * use, 0x97 quota exceeded) may pass later and are retried; 0x87 is the credentials.
 */
const REFUSED = new Set([
  0x90, // Topic Name invalid
  0x95, // Packet too large
  0x99, // Payload format invalid
  0x9a, // Retain not supported
  0x9b, // QoS not supported
]);
const NOT_AUTHORIZED = 0x87;

export class BatchPublish {
  private readonly sink: MqttSink;
  private readonly link: Link;
  private readonly batch: OutboundBatch;
  private readonly signal: AbortSignal;
  private readonly resolve: () => void;
  private readonly reject: (err: Error) => void;
  private readonly state: Uint8Array;
  /** Next record to publish. */
  private next = 0;
  /** Publishing stops before this index: a topic that cannot be rendered, or a failure. */
  private stopAt: number;
  /** Why records stop at `stopAt` when that record cannot be sent (topic, size). */
  private unsendable: string | null = null;
  /** Leading records acknowledged (or skipped) in order. */
  private acked = 0;
  private inflight = 0;
  /** The first record the broker refused (PUBACK reason code), and the error. */
  private failedAt: number;
  private failure: SinkSendError | null = null;
  private settled = false;
  private pumpScheduled = false;

  constructor(
    sink: MqttSink,
    link: Link,
    batch: OutboundBatch,
    signal: AbortSignal,
    resolve: () => void,
    reject: (err: Error) => void,
  ) {
    this.sink = sink;
    this.link = link;
    this.batch = batch;
    this.signal = signal;
    this.resolve = resolve;
    this.reject = reject;
    this.state = new Uint8Array(batch.records.length);
    this.stopAt = batch.records.length;
    this.failedAt = batch.records.length;
  }

  start(): void {
    const link = this.link;
    if (link.aheadEpoch !== this.batch.epoch) {
      link.ahead.clear();
      link.aheadEpoch = this.batch.epoch;
    }
    if (link.closed) {
      this.linkClosed(link.reason);
      return;
    }
    if (this.signal.aborted) {
      this.onAbort();
      return;
    }
    link.batch = this;
    this.signal.addEventListener('abort', this.onAbort, { once: true });
    this.pump();
  }

  /**
   * Publishes while the window has room, all of this turn's packets in one socket write, then
   * settles once nothing is left in flight.
   */
  private pump(): void {
    const sink = this.sink;
    const link = this.link;
    const window = sink.window;
    const records = this.batch.records;
    const spans = sink.spans;
    const f = sink.fields;
    const qos0 = sink.opts.qos === 0;
    const from = this.next;
    const packets: Buffer[] = [];
    while (this.next < this.stopAt && this.inflight < window && !this.settled) {
      const i = this.next;
      const rec = records[i];
      if (link.ahead.size > 0 && link.ahead.delete(rec.seq)) {
        this.done(i);
        this.next++;
        continue;
      }
      const body = rec.body;
      spans.scan(body);
      if (spans.hasAttributes && isLoop(body, spans.sourceStart, spans.sourceEnd, sink.ownBrokerKey)) {
        sink.stats.loopSkipped++;
        this.done(i);
        this.next++;
        continue;
      }
      const topic = sink.template.render(body, spans);
      const problem = topicNameProblem(topic);
      if (problem !== null) {
        this.unsendable = `record ${rec.seq}: topic ${JSON.stringify(topic.slice(0, 200))} ${problem}`;
        this.stopAt = i;
        break;
      }
      const topicBytes = Buffer.byteLength(topic);
      f.topic = topic;
      f.body = body;
      f.payloadStart = spans.payloadStart;
      f.payloadEnd = spans.payloadEnd;
      f.recordId = recordId(this.batch.epoch, rec.seq);
      f.contentType =
        spans.contentTypeEnd > spans.contentTypeStart
          ? body.toString('utf8', spans.contentTypeStart, spans.contentTypeEnd)
          : null;
      const rest = sink.encoder.remainingLength(f, topicBytes);
      const size = PublishEncoder.packetSize(rest);
      const maxPacket = link.maximumPacketSize;
      if (rest > MAX_REMAINING_LENGTH || (maxPacket > 0 && size > maxPacket)) {
        // [MQTT-3.2.2-15] the client must not send a larger packet; sent, the broker would
        // disconnect, and the retry would send it again for ever.
        const limit = maxPacket > 0 ? `the broker's Maximum Packet Size ${maxPacket}` : 'the MQTT maximum';
        this.unsendable = `record ${rec.seq}: a ${size}-byte PUBLISH, over ${limit}`;
        this.stopAt = i;
        break;
      }
      const packetId = qos0 ? 0 : link.allocatePacketId(i);
      packets.push(sink.encoder.encode(f, topicBytes, packetId, rest));
      this.state[i] = SENT;
      this.next++;
      this.inflight++;
      if (this.inflight > sink.stats.maxInflight) sink.stats.maxInflight = this.inflight;
      sink.stats.published++;
    }
    if (packets.length > 0) {
      const bytes = packets.length === 1 ? packets[0] : Buffer.concat(packets);
      // QoS 0 is delivered once written; QoS 1 once its PUBACK comes (onPuback).
      const to = this.next;
      if (qos0) link.client.stream.write(bytes, (err) => this.onWritten(from, to, err));
      else link.client.stream.write(bytes);
    }
    if (!this.settled && this.inflight === 0 && this.next >= this.stopAt) this.finish();
  }

  /** QoS 0: the socket took records `from..to` (or failed, when the connection is going). */
  private onWritten(from: number, to: number, err: Error | null | undefined): void {
    if (this.settled || err) return;
    for (let i = from; i < to; i++) {
      if (this.state[i] === SENT) {
        this.inflight--;
        this.done(i);
      }
    }
    this.schedulePump();
  }

  /**
   * Refills the window once the acks of one socket read are all handled, not after each: the
   * publishes then leave in one write, where refilling per PUBACK made one syscall per record.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(this.deferredPump);
  }

  private readonly deferredPump = (): void => {
    this.pumpScheduled = false;
    this.pump();
  };

  private done(i: number): void {
    this.state[i] = DONE;
    const state = this.state;
    let k = this.acked;
    while (k < state.length && state[k] === DONE) k++;
    this.acked = k;
  }

  /** The PUBACK of record `i`, with its reason code (0 for MQTT 3.1.1). */
  onPuback(i: number, rc: number): void {
    if (this.settled || this.state[i] !== SENT) return;
    this.inflight--;
    // [MQTT-3.4.2.1] codes below 0x80 are success (0x10: no matching subscribers).
    if (rc < 0x80) {
      this.done(i);
      this.schedulePump();
      return;
    }
    this.state[i] = PENDING;
    if (i < this.failedAt) {
      const seq = this.batch.records[i].seq;
      const what =
        `publish of record ${seq} to ${this.sink.opts.url}: PUBACK ` +
        `${ReasonCodes[rc as keyof typeof ReasonCodes] ?? 'error'} (reason code 0x${rc.toString(16)})`;
      this.failedAt = i;
      this.failure =
        rc === NOT_AUTHORIZED ? new SinkAuthError(what) : new SinkSendError(what, !REFUSED.has(rc));
    }
    // Nothing more goes out; those already out are waited for, so the ones the broker took
    // are known (Link.ahead) and not published again on this connection.
    this.stopAt = Math.min(this.stopAt, this.next);
    this.pump();
  }

  private finish(): void {
    const n = this.state.length;
    if (this.failure !== null) {
      const failure = this.failure;
      for (let k = this.failedAt + 1; k < n; k++) {
        if (this.state[k] === DONE) this.link.ahead.add(this.batch.records[k].seq);
      }
      const acked = Math.min(this.acked, this.failedAt);
      const refused = failure.retryable ? undefined : 1;
      this.settle(
        failure instanceof SinkAuthError
          ? new SinkAuthError(failure.message, { acked })
          : new SinkSendError(failure.message, failure.retryable, undefined, { acked, refused }),
      );
      return;
    }
    if (this.unsendable !== null) {
      this.settle(
        new SinkSendError(`${this.sink.opts.url}: ${this.unsendable}`, false, undefined, {
          acked: this.acked,
          refused: 1,
        }),
      );
      return;
    }
    this.settle(null);
  }

  /** The connection died under the batch: what was acknowledged in order counts, the rest is retried. */
  linkClosed(reason: string): void {
    if (this.settled) return;
    this.settle(
      new SinkSendError(`publish to ${this.sink.opts.url}: ${reason}`, true, undefined, {
        acked: this.acked,
      }),
    );
  }

  private readonly onAbort = (): void => {
    if (this.settled) return;
    const reason = String((this.signal.reason as Error)?.message ?? this.signal.reason);
    // Publishes still out may yet be taken by the broker: the retry must not repeat them on
    // this connection, so it gets a new one.
    if (this.inflight > 0) this.sink.drop(this.link, `batch abandoned: ${reason}`);
    this.settle(
      new SinkSendError(`publish to ${this.sink.opts.url}: ${reason}`, true, undefined, {
        acked: this.acked,
      }),
    );
  };

  private settle(err: Error | null): void {
    if (this.settled) return;
    this.settled = true;
    this.signal.removeEventListener('abort', this.onAbort);
    if (this.link.batch === this) this.link.batch = null;
    if (err) this.reject(err);
    else this.resolve();
  }
}

/** The loop rule: a record the client source took from the broker this sink publishes to. */
function isLoop(body: Buffer, sourceStart: number, sourceEnd: number, ownBrokerKey: string): boolean {
  if (sourceEnd - sourceStart !== CLIENT_SOURCE.length) return false;
  if (body.compare(CLIENT_SOURCE, 0, CLIENT_SOURCE.length, sourceStart, sourceEnd) !== 0) return false;
  // Only records of the client source get here: decoding their attributes is off the common path.
  return decodeRecord(body).attributes[BROKER_ATTRIBUTE] === ownBrokerKey;
}
