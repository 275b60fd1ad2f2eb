import { createServer, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  Aedes,
  type AedesPublishPacket,
  type AuthorizePublishHandler,
  type AuthorizeSubscribeHandler,
  type Client,
  type PublishPacket,
} from 'aedes';
import mqttPacket from 'mqtt-packet';
import { type Logger, ThrottledLog } from '../../core/logger.ts';
import type { Downlink, RecordAppender, Source } from '../../core/pipeline.ts';
import type { RecordInput } from '../../core/record.ts';
import { AckGate } from './ack-gate.ts';
import { BoundedPersistence, type PersistenceLimits, type PersistenceStats } from './bounded-persistence.ts';
import type { Violation } from './conformance.ts';
import { DENIED_TOPIC, DeviceSecurity, type SecurityCounters } from './device-security.ts';
import { type BrokerLimitOptions, BrokerLimits, type LimitCounters } from './limits.ts';
import { address, listen } from './listen.ts';
import { OutboundBound, type OutboundOverflow } from './outbound-bound.ts';
import { PacketSizeGuard } from './packet-size-guard.ts';
import { Qos2Dedup, type Qos2Limits, type Qos2Pending } from './qos2-dedup.ts';
import { loadTlsOptions, type MqttTlsOptions, type TlsCounters, TlsListener } from './tls-listener.ts';

// mqtt-packet's first write builds a Buffer for every two-byte number (65 536 of them, about 8 MB
// of V8 heap for the life of the process, found in a heap snapshot of the paced bench) to spare a
// 2-byte allocation per packet id. Off before aedes writes its first packet; mqtt.js (client
// source, bridge sink) shares the module and the setting.
mqttPacket.writeToStream.cacheNumbers = false;

/**
 * `maxQueuedMessages` / `maxQueuedBytes` bound, per client, both what waits in its socket
 * (OutboundBound) and what its session keeps while it is away (BoundedPersistence).
 */
export interface MqttBrokerOptions extends PersistenceLimits, Qos2Limits {
  host: string;
  /** false: no plain TCP listener. */
  port: number | false;
  maxPacketBytes: number;
  tls?: MqttTlsOptions;
  passwordFile?: string;
  aclFile?: string;
  reloadCheckMs: number;
  limits: BrokerLimitOptions;
}

export interface MqttSourceCounters extends PersistenceStats, SecurityCounters, TlsCounters, LimitCounters {
  received: number;
  /** Publishes the journal refused (full under `reject`, write error): never acknowledged. */
  refused: number;
  /** Connections closed for a malformed or oversize packet. */
  protocolErrors: number;
  /** Of those, the ones that broke a rule of MQTT 3.1.1 (conformance.ts), by rule. */
  protocolErrorRules: Record<string, number>;
  connections: number;
  /** Times intake paused because too much waited for the journal's commit. */
  pauses: number;
  /** Subscribers disconnected because a QoS 1/2 message found their queue full. */
  slowSubscriberDisconnects: number;
  /** QoS 0 messages not sent to a subscriber whose queue was full. */
  slowSubscriberDropped: number;
  /** Resent QoS 2 PUBLISH packets (same id, before PUBREL) not journaled again. */
  qos2Duplicates: number;
}

/**
 * The embedded MQTT broker (aedes) on a TCP port. Every device PUBLISH becomes a record.
 *
 * Durability: records are appended in `authorizePublish`, which aedes runs before it writes the
 * PUBACK/PUBREC. The broker goes on at once (parsing the connection's next packets, delivering
 * to local subscribers) while the connection's `AckGate` holds the ack, and every later write to
 * that socket, until the record is committed: an ack [MQTT-4.3.2-2] leaves only for a committed
 * record, and a publisher's in-flight window is journaled without waiting one commit per socket
 * read. QoS 0 is appended without an ack to hold. A refused append closes the connection with
 * its acks unsent (MQTT 3.1.1 has no negative PUBACK); the publisher resends after reconnecting.
 *
 * Back-pressure: while the journal is saturated, connections that publish are paused (their
 * sockets are not read), so a flood fills TCP windows instead of memory.
 *
 * Local delivery never holds back that path, and what the broker keeps for clients is bounded:
 * a subscriber's socket queue (OutboundBound), the sessions of clients that are away and the
 * retained messages (BoundedPersistence), the QoS 2 exchanges awaiting PUBREL, whose resends
 * are not journaled twice (Qos2Dedup).
 */
export class MqttBrokerSource implements Source, Downlink, OutboundOverflow {
  readonly name = 'mqtt';
  readonly counters: MqttSourceCounters = {
    received: 0,
    refused: 0,
    protocolErrors: 0,
    protocolErrorRules: {},
    connections: 0,
    pauses: 0,
    slowSubscriberDisconnects: 0,
    slowSubscriberDropped: 0,
    qos2Duplicates: 0,
    sessionDropped: 0,
    retainedDropped: 0,
    queuedMessages: 0,
    retainedMessages: 0,
    authBadCredentials: 0,
    authNotAuthorized: 0,
    authBusy: 0,
    tlsRefused: 0,
    aclPublishDenied: 0,
    aclSubscribeDenied: 0,
    tlsReloads: 0,
    tlsReloadErrors: 0,
    limitConnections: 0,
    limitRate: 0,
    limitTopic: 0,
    limitInflight: 0,
  };
  private readonly opts: MqttBrokerOptions;
  private readonly appender: RecordAppender;
  private readonly log: Logger;
  private broker: Aedes | null = null;
  private server: Server | null = null;
  private tls: TlsListener | null = null;
  private security: DeviceSecurity | null = null;
  private readonly sockets = new Map<Socket, AckGate>();
  private readonly qos2: Qos2Dedup;
  private readonly limits: BrokerLimits;
  /** Connections not read until the journal catches up (see `pauseReading`). */
  private readonly paused = new Set<Socket>();
  private readonly refusedLog = new ThrottledLog();
  private readonly protocolLog = new ThrottledLog();
  private readonly slowLog = new ThrottledLog();
  private accepting = false;

  constructor(opts: MqttBrokerOptions, appender: RecordAppender, log: Logger) {
    this.opts = opts;
    this.appender = appender;
    this.log = log;
    this.qos2 = new Qos2Dedup(opts);
    this.limits = new BrokerLimits(opts.limits, this.counters, log, resumeSocket);
  }

  /** The broker, for local delivery (gRPC Publish downlinks) once started. */
  get aedes(): Aedes | null {
    return this.broker;
  }

  /**
   * Downlink: hands a message to the broker for delivery to current subscribers. It does not go
   * through `authorizePublish`, so commands to devices are not journaled as telemetry.
   */
  publish(topic: string, payload: Buffer, qos: 0 | 1 | 2, retain: boolean): Promise<void> {
    const broker = this.broker;
    if (!broker || !this.accepting) return Promise.reject(new Error('the MQTT broker is not running'));
    return new Promise((resolve, reject) => {
      broker.publish({ cmd: 'publish', topic, payload, qos, retain, dup: false }, (err?: Error | null) =>
        err ? reject(err) : resolve(),
      );
    });
  }

  async start(): Promise<void> {
    const o = this.opts;
    // Files are read before anything listens: a bad one fails start-up with its name.
    const tlsFiles = o.tls ? loadTlsOptions(o.tls) : null;
    const security = new DeviceSecurity(
      { ...o, requireClientCert: o.tls?.requireClientCert ?? false },
      this.counters,
      this.log,
    );
    this.security = security.active ? security : null;
    const broker = await Aedes.createBroker({
      ...security.hooks(),
      authorizePublish: this.authorizePublish,
      authorizeSubscribe: this.authorizeSubscribe,
      authorizeForward: this.authorizeForward,
      // aedes closes a connection whose topic or filter has more levels (counted in onClientError).
      maxTopicLevels: this.opts.limits.maxTopicLevels,
      persistence: new BoundedPersistence(this.opts, this.counters, this.qos2) as never,
      // aedes disconnects a client with more QoS 2 messages awaiting PUBREL; Qos2Dedup tracks as many.
      maxInflightInbound: this.opts.maxAwaitingRel,
    });
    broker.on('clientError', this.onClientError);
    broker.on('connectionError', this.onClientError);
    this.broker = broker;
    this.accepting = true;
    if (o.port !== false) {
      this.server = createServer(this.onConnection);
      await listen(this.server, o.port, o.host);
      this.log.info(this.addresses(), 'mqtt listening');
    }
    if (o.tls && tlsFiles) {
      const t = o.tls;
      this.tls = new TlsListener(t, tlsFiles, this.counters, this.log, this.onTlsConnection);
      await listen(this.tls.server, t.port, t.host ?? o.host);
      this.tls.watchFiles(o.reloadCheckMs);
      const where = address(this.tls.server);
      this.log.info({ ...where, mtls: t.requireClientCert, identity: t.identity }, 'mqtt tls listening');
    }
    security.watchFiles(o.reloadCheckMs);
  }

  addresses(): Record<string, string | number> {
    const tls = address(this.tls?.server);
    return { ...address(this.server), ...(tls.port !== undefined ? { tlsPort: tls.port } : {}) };
  }

  async stop(): Promise<void> {
    this.accepting = false;
    this.security?.stop();
    this.tls?.stop();
    // net.Server#close waits for every open connection to end, and idle devices never end
    // theirs: destroy them first, then wait.
    const closed = [this.server, this.tls?.server].map((server) =>
      server ? new Promise<void>((resolve) => server.close(() => resolve())) : undefined,
    );
    for (const s of this.sockets.keys()) s.destroy();
    await Promise.all(closed);
    const broker = this.broker;
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
  }

  private readonly onConnection = (socket: Socket): void => {
    if (!this.accepting || !this.broker) {
      socket.destroy();
      return;
    }
    if (!this.limits.admit(socket, this.sockets.size)) {
      socket.destroy();
      return;
    }
    this.counters.connections++;
    // The bound wraps socket.write first, so the gate's released writes pass through it and the
    // acks the gate holds never count as queued (see OutboundBound).
    const gate = new AckGate(socket, new OutboundBound(socket, this.opts, this));
    this.sockets.set(socket, gate);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.limits.forget(socket, gate);
    });
    socket.setNoDelay(true);
    gateReads(socket, new PacketSizeGuard(this.opts.maxPacketBytes), this);
    this.broker.handle(socket);
  };

  /**
   * A TLS connection is wired exactly as a TCP one (its TLSSocket is a net.Socket: the read
   * guard, the outbound bound and the ack gate wrap its read and write), once its verified
   * certificate, if any, has given the device its identity.
   */
  private readonly onTlsConnection = (socket: TLSSocket, identity: string | null): void => {
    if (identity !== null) this.security?.setCertIdentity(socket, identity);
    this.onConnection(socket);
  };

  /** Called by the size guard when a connection sends a packet over the limit or breaks a rule. */
  refuseOversize(socket: Socket, guard: PacketSizeGuard, verdict: string): void {
    this.counters.protocolErrors++;
    if (verdict === 'violation' && guard.violation) {
      this.refuseViolation(socket, guard.violation);
      return;
    }
    const suppressed = this.protocolLog.take();
    if (suppressed >= 0) {
      this.log.warn(
        {
          remote: socket.remoteAddress,
          packetBytes: guard.offending,
          maxPacketBytes: this.opts.maxPacketBytes,
          verdict,
          suppressed,
        },
        verdict === 'oversize'
          ? 'mqtt packet over maxPacketBytes: connection closed'
          : 'malformed mqtt packet: connection closed',
      );
    }
    socket.destroy();
  }

  /**
   * The packet is not handed to aedes, so nothing of it is journaled or forwarded; the
   * connection closes without an answer, but for the one rule that asks for a CONNACK first.
   */
  private refuseViolation(socket: Socket, violation: Violation): void {
    const rules = this.counters.protocolErrorRules;
    rules[violation.rule] = (rules[violation.rule] ?? 0) + 1;
    const suppressed = this.protocolLog.take();
    if (suppressed >= 0) {
      this.log.warn(
        {
          rule: violation.rule,
          reason: violation.reason,
          client: (socket as { client?: Client }).client?.id ?? null,
          remote: socket.remoteAddress,
          suppressed,
        },
        `mqtt protocol violation [${violation.rule}]: connection closed`,
      );
    }
    if (violation.connack === undefined) {
      socket.destroy();
      return;
    }
    socket.end(Buffer.from([0x20, 2, 0, violation.connack]));
    // A peer that never closes its side is not waited for.
    setTimeout(() => socket.destroy(), 2000).unref();
  }

  outboundOverflow(socket: Socket, bound: OutboundBound): void {
    this.counters.slowSubscriberDisconnects++;
    this.logSlow(socket, bound, 'mqtt subscriber not reading: disconnected');
  }

  outboundDropped(socket: Socket, bound: OutboundBound): void {
    this.counters.slowSubscriberDropped++;
    // One line when a connection starts dropping, not one per message.
    if (bound.dropped === 1)
      this.logSlow(socket, bound, 'mqtt subscriber not reading: QoS 0 messages dropped');
  }

  private logSlow(socket: Socket, bound: OutboundBound, msg: string): void {
    const suppressed = this.slowLog.take();
    if (suppressed < 0) return;
    this.log.warn(
      {
        client: (socket as { client?: Client }).client?.id ?? null,
        remote: socket.remoteAddress,
        queuedMessages: bound.queuedMessages,
        queuedBytes: bound.queuedBytes,
        maxQueuedMessages: this.opts.maxQueuedMessages,
        maxQueuedBytes: this.opts.maxQueuedBytes,
        suppressed,
      },
      msg,
    );
  }

  private readonly onClientError = (client: Client | null, err: Error): void => {
    // Refused appends are logged where they happen; here the rest: parse errors, resets.
    if ((err as { code?: string }).code?.startsWith('EF_') || this.limits.isTooManyLevels(err)) return;
    this.counters.protocolErrors++;
    const suppressed = this.protocolLog.take();
    if (suppressed >= 0) {
      this.log.warn(
        { client: client?.id ?? null, err: err.message, suppressed },
        'mqtt connection closed on error',
      );
    }
  };

  private readonly authorizePublish: AuthorizePublishHandler = (client, packet, callback) => {
    if (!this.accepting) {
      callback(new Error('gateway is shutting down'));
      return;
    }
    // Outside the ACL: acknowledged as usual (no negative PUBACK in 3.1.1), never journaled.
    if (this.security && !this.security.mayPublish(client, packet)) {
      callback(null);
      return;
    }
    const verdict = this.limits.checkPublish(client?.conn as Socket | undefined, client?.id, packet);
    if (verdict !== 'ok') {
      // A dropped QoS 1/2 publish is still acked, as mosquitto does for one it refuses:
      // MQTT 3.1.1 has no negative PUBACK, and a device that never got one would resend it.
      // Re-addressed like an ACL refusal, so no local subscriber gets it either.
      if (verdict === 'drop') {
        packet.topic = DENIED_TOPIC;
        packet.retain = false;
      }
      callback(verdict === 'drop' ? null : verdict);
      return;
    }
    const gate = packet.qos === 0 || !client ? undefined : this.sockets.get(client.conn as Socket);
    if (gate && packet.qos === 2 && typeof packet.messageId === 'number') {
      this.appendQos2(client!, packet, gate);
    } else {
      this.counters.received++;
      if (gate) {
        gate.appendedOne();
        this.appender.append(toRecord(client, packet), this.onCommitted, gate);
        this.limits.afterAppend(client!.conn as Socket, gate);
      } else {
        this.appender.append(toRecord(client, packet), null, null);
      }
    }
    if (client && this.appender.saturated) this.pauseReading(client.conn as Socket);
    callback(null);
  };

  /**
   * A QoS 2 PUBLISH is journaled once per exchange: a resend of one still awaiting PUBREL
   * [MQTT-4.3.3-2] is not appended again. aedes answers it with a PUBREC once it finds the packet
   * in its store (or publishes it locally if it never stored it); that PUBREC must not leave
   * before the original record is committed. On the same connection the gate holds it behind the
   * original. On another one (a resend after a reconnect), if that connection has records of its
   * own pending, they commit after the older original (one ordered journal) and hold it; if not,
   * the gate counts one more record that completes with the original's commit.
   */
  private appendQos2(client: Client, packet: PublishPacket, gate: AckGate): void {
    const messageId = packet.messageId as number;
    const pending = this.qos2.find(client.id, messageId);
    if (pending !== undefined) {
      this.counters.qos2Duplicates++;
      if (!pending.committed && pending.gate !== gate && gate.idle) {
        gate.appendedOne();
        if (pending.waiters === null) pending.waiters = [gate];
        else pending.waiters.push(gate);
      }
      return;
    }
    this.counters.received++;
    gate.appendedOne();
    this.appender.append(
      toRecord(client, packet),
      this.onCommittedQos2,
      this.qos2.track(client.id, messageId, gate),
    );
    this.limits.afterAppend(client.conn as Socket, gate);
  }

  /** Publishes refused by the ACL or dropped by a limit were re-addressed: nobody gets them. */
  private readonly authorizeForward = (
    client: Client,
    packet: AedesPublishPacket,
  ): AedesPublishPacket | null => {
    if (packet.topic === DENIED_TOPIC) return null;
    return this.security === null ? packet : this.security.authorizeForward(client, packet);
  };

  /** A filter over the topic limits closes the connection; then the ACL may refuse it (SUBACK 0x80). */
  private readonly authorizeSubscribe: AuthorizeSubscribeHandler = (client, sub, callback) => {
    const err = this.limits.checkFilter(client?.id, sub.topic);
    if (err !== null || this.security === null) callback(err, sub);
    else this.security.authorizeSubscribe(client, sub, callback);
  };

  private readonly onCommittedQos2 = (err: Error | null, _seq: number, pending: Qos2Pending): void => {
    const waiters = pending.waiters;
    pending.waiters = null;
    if (!err) {
      pending.committed = true;
      pending.gate.committedOne();
      this.limits.afterCommit(pending.gate);
      if (waiters) for (const g of waiters) g.committedOne();
      return;
    }
    // Not journaled: the resend that follows must be.
    this.qos2.forget(pending);
    this.onCommitted(err, _seq, pending.gate);
    if (waiters) for (const g of waiters) g.refuse();
  };

  private readonly onCommitted = (err: Error | null, _seq: number, gate: AckGate): void => {
    if (!err) {
      gate.committedOne();
      this.limits.afterCommit(gate);
      return;
    }
    this.counters.refused++;
    const suppressed = this.refusedLog.take();
    if (suppressed >= 0)
      this.log.warn(
        { err: err.message, suppressed },
        'publish not journaled: no ack sent, connection closed',
      );
    gate.refuse();
  };

  /**
   * Stops reading a connection that publishes while the journal is saturated: its next read
   * returns nothing, the socket's buffer fills and TCP pushes back on the publisher. (aedes'
   * own client pause loses count of the packets in flight, so reads are gated here instead.)
   */
  private pauseReading(socket: Socket): void {
    if (this.paused.has(socket)) return;
    this.paused.add(socket);
    this.counters.pauses++;
    if (this.paused.size === 1) this.appender.whenUnsaturated(this.resumeReading);
  }

  private readonly resumeReading = (): void => {
    const sockets = [...this.paused];
    this.paused.clear();
    for (const s of sockets) resumeSocket(s);
  };

  /** Whether the broker may read from `socket` now. */
  mayRead(socket: Socket): boolean {
    return !this.paused.has(socket) && !this.limits.inflightFull(socket);
  }
}

/** The broker reads on 'readable'; a refused read left data buffered without a new event. */
function resumeSocket(socket: Socket): void {
  if (!socket.destroyed) socket.emit('readable');
}

function toRecord(client: Client | null, packet: PublishPacket): RecordInput {
  const payload = packet.payload;
  const props = (packet as { properties?: { contentType?: string } }).properties;
  return {
    ts: Date.now(),
    source: 'mqtt',
    device: client?.id ?? '',
    topic: packet.topic,
    payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
    contentType: props?.contentType,
  };
}

/**
 * What one connection may feed the parser in one event-loop turn. libuv reads a busy socket up
 * to 32 times per poll (64 KiB each) and aedes parses all of it at once: under a QoS 0 flood a
 * turn grew to 20-130 ms, and a sink, whose HTTP response and journal read each wait for a turn,
 * delivered a batch every 40-50 ms. Past the budget the rest waits in the socket (and TCP) for
 * the next turn. A QoS 1 window of 100 x 200 B is far below it.
 */
const READ_BUDGET_PER_TURN = 64 * 1024;

/**
 * aedes pulls bytes with `socket.read()`; wrapping it pauses intake without losing aedes' count
 * of packets in progress, and checks each pulled chunk before the parser sees it, without a
 * Transform stream (and its copies) in between.
 */
function gateReads(socket: Socket, guard: PacketSizeGuard, source: MqttBrokerSource): void {
  const read = socket.read;
  let readThisTurn = 0;
  // Runs once per loop turn in which the connection read anything; resumes a connection that
  // stopped at its budget (aedes reads again on 'readable').
  const endTurn = (): void => {
    const over = readThisTurn >= READ_BUDGET_PER_TURN;
    readThisTurn = 0;
    if (over && !socket.destroyed) socket.emit('readable');
  };
  socket.read = function gatedRead(this: Socket, size?: number) {
    if (!source.mayRead(this) || readThisTurn >= READ_BUDGET_PER_TURN) return null;
    const chunk = read.call(this, size);
    if (chunk !== null && Buffer.isBuffer(chunk)) {
      const verdict = guard.feed(chunk);
      if (verdict !== 'ok') {
        source.refuseOversize(this, guard, verdict);
        return null;
      }
      if (readThisTurn === 0) setImmediate(endTurn);
      readThisTurn += chunk.length;
    }
    return chunk;
  };
}
