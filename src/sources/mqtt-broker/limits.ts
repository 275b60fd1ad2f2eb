// What one device may cost the embedded broker (README: MQTT broker limits). Each limit is a
// plain comparison on a path the broker already takes; nothing here runs per message unless a
// publish rate is configured. The defaults sit far above what a site's devices do, so a gateway
// that hits one is being misused, and the counter and the throttled log line say by whom.

import type { Socket } from 'node:net';
import type { PublishPacket } from 'aedes';
import { type Logger, ThrottledLog } from '../../core/logger.ts';

export type RateExceedAction = 'disconnect' | 'drop';

export interface PublishRateLimit {
  /** Tokens added per second: the sustained rate a client may publish at. */
  messagesPerSecond: number;
  /** The bucket's size: how many messages a client may send at once after a quiet spell. */
  burst: number;
  onExceed: RateExceedAction;
}

export interface BrokerLimitOptions {
  maxConnections: number;
  maxTopicBytes: number;
  maxTopicLevels: number;
  maxInflight: number;
  publishRate?: PublishRateLimit;
}

export interface LimitCounters {
  /** Connections closed at accept: `maxConnections` were open. */
  limitConnections: number;
  /** Publishes over a client's rate (dropped, or the connection closed). */
  limitRate: number;
  /** Connections closed for a topic or filter over `maxTopicBytes` or `maxTopicLevels`. */
  limitTopic: number;
  /** Times a connection was not read because it had `maxInflight` publishes awaiting their ack. */
  limitInflight: number;
}

/** Errors handed to aedes close the connection; the code keeps them out of `protocolErrors`. */
export class LimitError extends Error {
  readonly code = 'EF_LIMIT';
}

/** aedes' own wording when a topic or filter has more than `maxTopicLevels` levels (utils.js). */
const AEDES_TOO_MANY_LEVELS = 'topic has too many levels';

/**
 * A client's publish budget: `burst` tokens, refilled at `messagesPerSecond`, one per publish.
 * Refilled lazily from the clock on each publish: no timer per connection.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly perMs: number;
  private readonly burst: number;

  constructor(limit: PublishRateLimit, now: number) {
    this.burst = limit.burst;
    this.tokens = limit.burst;
    this.perMs = limit.messagesPerSecond / 1000;
    this.last = now;
  }

  take(now: number): boolean {
    if (this.tokens < 1) {
      this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.perMs);
      this.last = now;
      if (this.tokens < 1) return false;
    }
    this.tokens--;
    return true;
  }
}

/** What the broker tells the limits about a connection's acks: the AckGate. */
export interface InflightView {
  readonly pending: number;
}

export type PublishVerdict = 'ok' | 'drop' | LimitError;

/**
 * The limits of one broker: connection count, publish rate, topic size, in-flight window. The
 * source asks at accept, in `authorizePublish`/`authorizeSubscribe`, and after each commit.
 */
export class BrokerLimits {
  readonly opts: BrokerLimitOptions;
  private readonly counters: LimitCounters;
  private readonly log: Logger;
  private readonly throttle = new ThrottledLog();
  private readonly buckets = new Map<Socket, TokenBucket>();
  /** Connections not read until their in-flight window falls below `maxInflight`. */
  private readonly inflightPaused = new Map<InflightView, Socket>();
  private readonly inflightSockets = new Set<Socket>();
  private readonly resume: (socket: Socket) => void;
  /** Byte length checks only above this many UTF-16 units (a unit is at most 3 UTF-8 bytes). */
  private readonly topicUnitsSafe: number;

  constructor(opts: BrokerLimitOptions, counters: LimitCounters, log: Logger, resume: (s: Socket) => void) {
    this.opts = opts;
    this.counters = counters;
    this.log = log;
    this.resume = resume;
    this.topicUnitsSafe = Math.floor(opts.maxTopicBytes / 3);
  }

  /** Whether one more connection may be served: refused ones are closed before their CONNECT. */
  admit(socket: Socket, open: number): boolean {
    if (open < this.opts.maxConnections) {
      if (this.opts.publishRate) {
        this.buckets.set(socket, new TokenBucket(this.opts.publishRate, Date.now()));
        socket.once('close', () => this.buckets.delete(socket));
      }
      return true;
    }
    this.counters.limitConnections++;
    this.warn(
      { remote: socket.remoteAddress, maxConnections: this.opts.maxConnections },
      'maxConnections open: new connection closed before its CONNECT',
    );
    return false;
  }

  /** A PUBLISH from a device, before it is journaled. */
  checkPublish(
    socket: Socket | undefined,
    clientId: string | undefined,
    packet: PublishPacket,
  ): PublishVerdict {
    const topic = packet.topic;
    if (topic.length > this.topicUnitsSafe && Buffer.byteLength(topic) > this.opts.maxTopicBytes) {
      return this.topicTooLong(clientId, topic);
    }
    const rate = this.opts.publishRate;
    if (rate === undefined || socket === undefined) return 'ok';
    const bucket = this.buckets.get(socket);
    if (bucket === undefined || bucket.take(Date.now())) return 'ok';
    this.counters.limitRate++;
    const disconnect = rate.onExceed === 'disconnect';
    this.warn(
      { client: clientId ?? null, messagesPerSecond: rate.messagesPerSecond, burst: rate.burst, topic },
      disconnect
        ? 'publish rate over the limit: connection closed'
        : 'publish rate over the limit: messages dropped',
    );
    return disconnect ? new LimitError(`publish rate over ${rate.messagesPerSecond}/s`) : 'drop';
  }

  /** A SUBSCRIBE filter: the same size limit as a topic (aedes counts its levels). */
  checkFilter(clientId: string | undefined, filter: string): LimitError | null {
    if (filter.length > this.topicUnitsSafe && Buffer.byteLength(filter) > this.opts.maxTopicBytes) {
      return this.topicTooLong(clientId, filter);
    }
    return null;
  }

  /** aedes closed a connection for a topic with too many levels: counted as a limit hit. */
  isTooManyLevels(err: Error): boolean {
    if (err.message !== AEDES_TOO_MANY_LEVELS) return false;
    this.counters.limitTopic++;
    this.warn(
      { maxTopicLevels: this.opts.maxTopicLevels },
      'topic or filter over maxTopicLevels: connection closed',
    );
    return true;
  }

  /** After a QoS 1/2 publish is appended: past `maxInflight` awaiting acks, stop reading it. */
  afterAppend(socket: Socket, gate: InflightView): void {
    if (gate.pending < this.opts.maxInflight || this.inflightPaused.has(gate)) return;
    this.inflightPaused.set(gate, socket);
    this.inflightSockets.add(socket);
    this.counters.limitInflight++;
  }

  /** After one of the connection's records is committed (its ack released). */
  afterCommit(gate: InflightView): void {
    if (this.inflightPaused.size === 0 || gate.pending >= this.opts.maxInflight) return;
    const socket = this.inflightPaused.get(gate);
    if (socket === undefined) return;
    this.inflightPaused.delete(gate);
    this.inflightSockets.delete(socket);
    this.resume(socket);
  }

  /** Whether the connection is held back by its in-flight window. */
  inflightFull(socket: Socket): boolean {
    return this.inflightSockets.size !== 0 && this.inflightSockets.has(socket);
  }

  /** A closed connection. */
  forget(socket: Socket, gate: InflightView): void {
    this.inflightPaused.delete(gate);
    this.inflightSockets.delete(socket);
  }

  private topicTooLong(clientId: string | undefined, topic: string): LimitError {
    this.counters.limitTopic++;
    this.warn(
      {
        client: clientId ?? null,
        topicBytes: Buffer.byteLength(topic),
        maxTopicBytes: this.opts.maxTopicBytes,
      },
      'topic or filter over maxTopicBytes: connection closed',
    );
    return new LimitError(`topic over ${this.opts.maxTopicBytes} bytes`);
  }

  private warn(obj: object, what: string): void {
    const suppressed = this.throttle.take();
    if (suppressed >= 0) this.log.warn({ ...obj, suppressed }, `mqtt limit hit: ${what}`);
  }
}
