import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { backoffDelay } from '../../core/backoff.ts';
import { type Logger, ThrottledLog } from '../../core/logger.ts';
import { brokerKey } from '../../core/mqtt-broker-key.ts';
import type { RecordAppender, Source } from '../../core/pipeline.ts';
import type { RecordInput } from '../../core/record.ts';
import { type AckCmd, AckWindow, type HeldAck } from './ack-window.ts';
import type { MqttClientConfig } from './config.ts';

export const MQTT_CLIENT_SOURCE = 'mqtt-client';
/** The MQTT 5 user property the bridge sink stamps on what it publishes (README: loop rule). */
export const NODE_PROPERTY = 'edgeferry-node';
// A 3.1.1 `cleanSession: false` session lasts until the broker drops it; MQTT 5 ends it at the
// disconnect unless an expiry is given [MQTT-3.1.2-23]. The largest value means never.
const SESSION_NEVER_EXPIRES = 0xffffffff;

export interface MqttClientSourceOptions extends MqttClientConfig {
  url: string;
  clientId: string;
  /** This daemon's node id: a message carrying it in `edgeferry-node` came from our own bridge. */
  nodeId: string;
  /** Topics our bridge sinks publish to on this broker (MQTT 3.1.1 has no user property to tell). */
  ignoreTopicPrefixes: readonly string[];
}

export interface MqttClientCounters {
  state: 'stopped' | 'connecting' | 'connected' | 'backoff';
  broker: string;
  lastError: string | null;
  /** Connections accepted by the broker (CONNACK 0). */
  connects: number;
  /** Connection attempts after a failure or a lost connection. */
  reconnects: number;
  /** Messages journaled. */
  received: number;
  /** Appends the journal refused: never acknowledged, the broker redelivers them. */
  refused: number;
  /** Times reading stopped for a saturated journal or a full in-flight window. */
  pauses: number;
  /** Messages acknowledged but not journaled by the loop rule. */
  loopDropped: number;
  /** Messages over `maxPacketBytes`, acknowledged but not journaled (MQTT 3.1.1 brokers). */
  oversizeDropped: number;
}

/** The parts of mqtt.js' client the source reaches into (see AckWindow for why). */
interface ClientInternals {
  options: IClientOptions & {
    customHandleAcks: (topic: string, message: Buffer, packet: IPublishPacket, cb: AckCallback) => void;
  };
  stream: NodeJS.WritableStream & { cork(): void; uncork(): void };
  _sendPacket(packet: { cmd: string }, cb?: () => void, ...rest: unknown[]): void;
  _writePacket(packet: { cmd: string; messageId: number }): void;
}

/** A file the config names, read at start-up; the error names the field. */
function readConfigured(field: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(
      `mqttClient.${field}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? err})`,
    );
  }
}

type AckCallback = (err: Error | null, code?: number) => void;

/** One connection attempt: its client and the acks it owes. */
interface Link {
  client: MqttClient;
  window: AckWindow;
  /** mqtt.js' packet pump, held while the window is full. */
  waiting: AckCallback | null;
  /** Got its CONNACK: losing it is a state change worth a log line, a failed attempt is not. */
  established: boolean;
  closed: boolean;
}

/**
 * The site broker's messages, taken as an MQTT client with a persistent session (`clean: false`,
 * a fixed client id) and journaled as `source: mqtt-client` records.
 *
 * Durability: a QoS 1/2 message is acknowledged (PUBACK, PUBREC) only after its record is
 * committed, in the order received; the connection keeps reading meanwhile (AckWindow). A refused
 * append closes the connection with its acks unsent, so the broker keeps the messages in the
 * session and redelivers them after the reconnect, which waits a backoff. QoS 0 is journaled
 * without an ack to hold.
 *
 * Back-pressure: while the journal is saturated, or `maxInFlight` acks are held, mqtt.js' packet
 * pump is held (its callback not called), so the socket is not read and the broker stops at its
 * in-flight limit.
 *
 * Reconnects: mqtt.js' own reconnect has a fixed period; here each attempt is a new client after
 * `backoffDelay` (exponential, jitter), so a stale ack of an old connection can never be sent
 * on a new one.
 */
export class MqttClientSource implements Source {
  readonly name = MQTT_CLIENT_SOURCE;
  readonly counters: MqttClientCounters;
  private readonly opts: MqttClientSourceOptions;
  private readonly appender: RecordAppender;
  private readonly log: Logger;
  private readonly broker: string;
  /** Attributes by `qos * 2 + retain`, built once: every record shares its object. */
  private readonly attributes: Record<string, string>[] = [];
  private clientOptions: IClientOptions | null = null;
  private link: Link | null = null;
  private timer: NodeJS.Timeout | null = null;
  private attempt = 0;
  /** The last append was refused: a connect alone does not reset the backoff. */
  private refusing = false;
  private stopping = false;
  private readonly refusedLog = new ThrottledLog();
  private readonly errorLog = new ThrottledLog(10_000);
  private readonly oversizeLog = new ThrottledLog();

  constructor(opts: MqttClientSourceOptions, appender: RecordAppender, log: Logger) {
    this.opts = opts;
    this.appender = appender;
    this.log = log;
    this.broker = brokerKey(opts.url);
    this.counters = {
      state: 'stopped',
      broker: this.broker,
      lastError: null,
      connects: 0,
      reconnects: 0,
      received: 0,
      refused: 0,
      pauses: 0,
      loopDropped: 0,
      oversizeDropped: 0,
    };
    for (let qos = 0; qos < 3; qos++) {
      this.attributes.push({ broker: this.broker, qos: String(qos) });
      this.attributes.push({ broker: this.broker, qos: String(qos), retain: '1' });
    }
  }

  /** Reads the credential files and begins connecting; resolves at once (the broker may be down). */
  async start(): Promise<void> {
    const o = this.opts;
    const password = o.passwordFile
      ? readConfigured('passwordFile', o.passwordFile)
          .toString('utf8')
          .replace(/\r?\n$/, '')
      : o.password;
    this.clientOptions = {
      clientId: o.clientId,
      clean: false,
      protocolVersion: o.protocolVersion,
      keepalive: o.keepaliveSeconds,
      connectTimeout: o.connectTimeoutMs,
      reconnectPeriod: 0,
      manualConnect: true,
      username: o.username,
      password,
      ca: o.tls?.caFile ? readConfigured('tls.caFile', o.tls.caFile) : undefined,
      cert: o.tls?.certFile ? readConfigured('tls.certFile', o.tls.certFile) : undefined,
      key: o.tls?.keyFile ? readConfigured('tls.keyFile', o.tls.keyFile) : undefined,
      rejectUnauthorized: o.tls?.rejectUnauthorized ?? true,
      properties:
        o.protocolVersion === 5
          ? {
              receiveMaximum: o.maxInFlight,
              sessionExpiryInterval: SESSION_NEVER_EXPIRES,
              maximumPacketSize: o.maxPacketBytes,
            }
          : undefined,
    };
    this.connect();
  }

  addresses(): Record<string, string | number> {
    return { broker: this.broker };
  }

  /**
   * Stops reading, gives what is being committed a moment to be acknowledged (so a restart is not
   * sent it again), then disconnects. What stays unacknowledged the broker redelivers.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const link = this.link;
    this.link = null;
    this.counters.state = 'stopped';
    if (!link) return;
    const deadline = Date.now() + 2000;
    while (link.window.isOpen && link.window.held > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    link.window.close();
    await new Promise<void>((resolve) => link.client.end(!link.client.connected, {}, () => resolve()));
  }

  private connect(): void {
    this.timer = null;
    if (this.stopping || !this.clientOptions) return;
    this.counters.state = 'connecting';
    const client = mqtt.connect(this.opts.url, this.clientOptions);
    const inner = client as unknown as ClientInternals;
    const window = new AckWindow(
      (cmd: AckCmd, messageId: number) => inner._writePacket({ cmd, messageId }),
      () => inner.stream.cork(),
      () => inner.stream.uncork(),
    );
    const link: Link = { client, window, waiting: null, established: false, closed: false };
    window.onRelease = () => this.resumeWindow(link);
    this.link = link;
    // mqtt.js sends the ack when these call back; the window sends it after the commit instead.
    const sendPacket = inner._sendPacket;
    inner._sendPacket = function (packet, cb, ...rest) {
      if (packet.cmd === 'puback' || packet.cmd === 'pubrec') {
        cb?.();
        return;
      }
      sendPacket.call(this, packet, cb, ...rest);
    };
    // Called for QoS 1 and 2 before the ack (on 3.1.1 too, whatever mqtt.js' option check says).
    inner.options.customHandleAcks = (topic, _message, packet, cb) =>
      this.onPublish(link, topic, packet, cb as AckCallback);
    client.handleMessage = (packet, cb) => {
      // QoS 1/2 were journaled in onPublish (QoS 2 comes here on PUBREL).
      if (packet.qos === 0) this.onPublish(link, packet.topic, packet, cb as AckCallback);
      else cb();
    };
    client.on('connect', (connack) => this.onConnect(link, connack.sessionPresent));
    client.on('error', (err) => this.onError(err));
    client.on('close', () => this.onClose(link));
    client.connect();
  }

  private onConnect(link: Link, sessionPresent: boolean): void {
    if (link !== this.link) return;
    link.established = true;
    this.counters.state = 'connected';
    this.counters.connects++;
    if (!this.refusing) this.attempt = 0;
    this.log.info(
      { broker: this.broker, clientId: this.opts.clientId, sessionPresent },
      'mqtt client connected',
    );
    // Subscribing again to a session's existing subscription is harmless; MQTT 5 retain handling
    // 1 keeps the broker from resending its retained messages for it.
    const opts = this.opts.protocolVersion === 5 ? { qos: this.opts.qos, rh: 1 } : { qos: this.opts.qos };
    link.client.subscribe(this.opts.topics, opts as { qos: 0 | 1 | 2 }, (err, granted) => {
      if (err) return this.onError(err);
      const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
      if (refused.length > 0)
        this.onError(new Error(`subscription refused by the broker: ${refused.join(', ')}`));
    });
  }

  private onError(err: Error): void {
    this.counters.lastError = err.message;
    const suppressed = this.errorLog.take();
    if (suppressed >= 0)
      this.log.warn({ broker: this.broker, err: err.message, suppressed }, 'mqtt client error');
  }

  private onClose(link: Link): void {
    // mqtt.js may report a close more than once (the socket's, then end()'s).
    if (link.closed) return;
    link.closed = true;
    link.window.close();
    link.waiting = null;
    if (link !== this.link || this.stopping) return;
    link.client.end(true);
    const delay = backoffDelay(this.opts.retry, this.attempt++);
    this.counters.state = 'backoff';
    this.counters.reconnects++;
    // One line when an established link is lost; failed attempts show in the throttled error
    // line and in the status.
    if (link.established)
      this.log.warn(
        { broker: this.broker, retryInMs: Math.round(delay), lastError: this.counters.lastError },
        'mqtt client disconnected: unacknowledged messages will be redelivered',
      );
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** One PUBLISH: journal it (or drop it by the loop rule), hold its ack, let mqtt.js go on. */
  private onPublish(link: Link, topic: string, packet: IPublishPacket, cb: AckCallback): void {
    // A closed link's pump is dropped with it; the broker redelivers.
    if (!link.window.isOpen || this.stopping) return;
    const qos = packet.qos;
    const cmd: AckCmd = qos === 2 ? 'pubrec' : 'puback';
    const oversize = (packet.length ?? 0) > this.opts.maxPacketBytes;
    if (oversize || this.isLoop(topic, packet)) {
      if (oversize) {
        this.counters.oversizeDropped++;
        const suppressed = this.oversizeLog.take();
        if (suppressed >= 0)
          this.log.warn(
            {
              broker: this.broker,
              topic,
              bytes: packet.length,
              maxPacketBytes: this.opts.maxPacketBytes,
              suppressed,
            },
            'mqtt client message over maxPacketBytes: acknowledged and dropped',
          );
      } else this.counters.loopDropped++;
      if (qos > 0) link.window.hold(packet.messageId as number, cmd, true);
      cb(null, 0);
      return;
    }
    const rec: RecordInput = {
      ts: Date.now(),
      source: MQTT_CLIENT_SOURCE,
      device: this.opts.name,
      topic,
      payload: packet.payload as Buffer,
      contentType: packet.properties?.contentType,
      attributes: this.attributes[qos * 2 + (packet.retain ? 1 : 0)],
    };
    this.counters.received++;
    if (qos === 0) this.appender.append(rec, this.onCommitted, null);
    else
      this.appender.append(rec, this.onCommitted, link.window.hold(packet.messageId as number, cmd, false));
    this.proceed(link, cb);
  }

  private isLoop(topic: string, packet: IPublishPacket): boolean {
    const v = packet.properties?.userProperties?.[NODE_PROPERTY];
    if (v !== undefined && (v === this.opts.nodeId || (Array.isArray(v) && v.includes(this.opts.nodeId))))
      return true;
    for (const p of this.opts.ignoreTopicPrefixes) if (topic.startsWith(p)) return true;
    return false;
  }

  /** Lets mqtt.js handle the next packet, unless the journal or the window says wait. */
  private proceed(link: Link, cb: AckCallback): void {
    if (!link.window.isOpen) return;
    if (this.appender.saturated) {
      this.counters.pauses++;
      this.appender.whenUnsaturated(() => this.proceed(link, cb));
    } else if (link.window.held >= this.opts.maxInFlight) {
      this.counters.pauses++;
      link.waiting = cb;
    } else cb(null, 0);
  }

  private resumeWindow(link: Link): void {
    const cb = link.waiting;
    if (cb && link.window.held < this.opts.maxInFlight) {
      link.waiting = null;
      this.proceed(link, cb);
    }
  }

  private readonly onCommitted = (err: Error | null, _seq: number, held: HeldAck | null): void => {
    if (!err) {
      this.refusing = false;
      if (held) held.window.commit(held);
      return;
    }
    this.counters.refused++;
    this.refusing = true;
    const link = this.link;
    const suppressed = this.refusedLog.take();
    if (suppressed >= 0)
      this.log.warn(
        { broker: this.broker, err: err.message, suppressed },
        'journal refused an mqtt client message: disconnecting unacknowledged, the broker redelivers',
      );
    // MQTT 3.1.1 has no negative PUBACK: the held acks go unsent and the session keeps the messages.
    if (held && link && held.window === link.window && link.window.isOpen) {
      link.window.close();
      link.client.end(true);
    }
  };
}
