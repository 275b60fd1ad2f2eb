import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { SinkAuthError, SinkSendError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import { brokerKey } from '../../core/mqtt-broker-key.ts';
import type { OutboundBatch, Sink } from '../../core/pipeline.ts';
import { RecordFieldSpans } from '../../core/record.ts';
import { BatchPublish } from './batch-publish.ts';
import { PublishEncoder, type PublishFields } from './publish-packet.ts';
import { TopicTemplate } from './topic-template.ts';

export interface MqttTlsOptions {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  serverName?: string;
}

export interface MqttSinkOptions {
  name: string;
  url: string;
  /** This gateway's node id: `{node}` in the topic and the `edgeferry-node` user property. */
  node: string;
  clientId: string;
  username?: string;
  password?: string;
  passwordFile?: string;
  tls?: MqttTlsOptions;
  protocolVersion: 4 | 5;
  topic: string;
  qos: 0 | 1;
  retain: boolean;
  window: number;
  keepaliveSeconds: number;
  /** Longest wait for CONNACK. */
  connectTimeoutMs: number;
  log?: Logger;
}

/** What the sink did, for status and tests. */
export interface MqttSinkStats {
  /** Connections that reached CONNACK. */
  connections: number;
  published: number;
  /** Records not published because they came from this sink's own broker (loop rule). */
  loopSkipped: number;
  /** Most publishes ever awaiting their PUBACK at once. */
  maxInflight: number;
}

/** [MQTT-3.2.2.3.3] Receive Maximum absent from CONNACK means 65535. */
const MAX_RECEIVE = 65535;

/** CONNACK codes that mean the credentials: v3.1.1 4/5, v5 0x86/0x87. */
const CONNACK_AUTH = new Set([4, 5, 0x86, 0x87]);

/** One network connection to the broker: one mqtt.js client, never reconnected by mqtt.js. */
export class Link {
  readonly client: MqttClient;
  /** CONNACK received. */
  up = false;
  closed = false;
  /** Why it closed (or the last error before it did). */
  reason = 'connection closed';
  /** The broker's Receive Maximum (MQTT 5) or 65535. */
  receiveMaximum = MAX_RECEIVE;
  /** The broker's Maximum Packet Size (MQTT 5), 0 when it set none. */
  maximumPacketSize = 0;
  /** The batch using this link, told when the link dies. */
  batch: BatchPublish | null = null;
  /**
   * Seqs this connection already had acknowledged beyond a failed record of an earlier batch:
   * the dispatcher sends them again (its cursor stops at the failure), and on this connection
   * they are counted delivered instead of published twice.
   */
  readonly ahead = new Set<number>();
  aheadEpoch = '';
  /** Record index + 1 of the current batch by packet id in flight, 0 when free. */
  private readonly slots = new Int32Array(65536);
  private nextPacketId = 1;

  constructor(client: MqttClient) {
    this.client = client;
  }

  /**
   * A packet id for record `i`. The sink owns every id of its connection (it never calls
   * mqtt.js' publish); with at most `window` (<= 65535) in flight, a free one always exists.
   */
  allocatePacketId(i: number): number {
    let id = this.nextPacketId;
    while (this.slots[id] !== 0) id = id === 65535 ? 1 : id + 1;
    this.nextPacketId = id === 65535 ? 1 : id + 1;
    this.slots[id] = i + 1;
    return id;
  }

  /** A PUBACK: to the record waiting for it, if any (a stray or late one is ignored). */
  onPuback(packetId: number, reasonCode: number): void {
    const slot = this.slots[packetId];
    if (slot === 0) return;
    this.slots[packetId] = 0;
    this.batch?.onPuback(slot - 1, reasonCode);
  }
}

/**
 * Publishes each record to a broker (the cloud's) at `qos`, with up to `window` publishes
 * awaiting their PUBACK, and resolves a batch once every one arrived; the dispatcher owns
 * routes, backoff and the cursor. A lost connection rejects the batch as retryable with `acked`
 * = the leading records acknowledged in order, so the dispatcher resends only the rest: a record
 * is published twice only over a new connection (the retry), never twice on one.
 *
 * Connections are the sink's, not mqtt.js's: `reconnectPeriod: 0`, a fresh client per
 * connection, made on the first send after the last one died. mqtt.js' own reconnect would run
 * on its own timer beside the dispatcher's backoff (two schedules hammering one broker), and
 * would resend its store's unacknowledged publishes itself, out of the dispatcher's order.
 */
export class MqttSink implements Sink {
  readonly name: string;
  readonly type = 'mqtt';
  readonly stats: MqttSinkStats = { connections: 0, published: 0, loopSkipped: 0, maxInflight: 0 };
  readonly opts: MqttSinkOptions;
  readonly template: TopicTemplate;
  /** Loop rule: records the client source took from this very broker are not sent back. */
  readonly ownBrokerKey: string;
  /** Reused for every record: scanning a body allocates nothing. */
  readonly spans = new RecordFieldSpans();
  readonly fields: PublishFields = {
    topic: '',
    body: EMPTY,
    payloadStart: 0,
    payloadEnd: 0,
    recordId: '',
    contentType: null,
  };
  readonly encoder: PublishEncoder;
  private link: Link | null = null;
  private connecting: Promise<Link> | null = null;
  private closing = false;

  constructor(opts: MqttSinkOptions) {
    this.opts = opts;
    this.name = opts.name;
    this.template = new TopicTemplate(opts.topic, opts.node);
    this.encoder = new PublishEncoder(opts);
    this.ownBrokerKey = brokerKey(opts.url);
  }

  /** The window in force on the current connection: `window`, capped by Receive Maximum. */
  get window(): number {
    return Math.min(this.opts.window, this.link?.receiveMaximum ?? MAX_RECEIVE);
  }

  async send(batch: OutboundBatch, signal: AbortSignal): Promise<void> {
    const link = await this.connect(signal);
    await new Promise<void>((resolve, reject) => {
      new BatchPublish(this, link, batch, signal, resolve, reject).start();
    });
  }

  /** Ends a connection whose state is no longer trusted (a batch abandoned mid-flight). */
  drop(link: Link, reason: string): void {
    if (link.closed) return;
    link.reason = reason;
    this.down(link);
  }

  /**
   * The connection is gone (closed, timed out, dropped): the batch on it fails with the reason,
   * and the next send connects again. Idempotent.
   */
  down(link: Link): void {
    if (link.closed) return;
    link.closed = true;
    if (this.link === link) this.link = null;
    if (!this.closing) {
      this.opts.log?.warn(
        { sink: this.name, url: this.opts.url, reason: link.reason },
        'broker connection lost',
      );
    }
    link.batch?.linkClosed(link.reason);
    link.client.end(true);
  }

  private connect(signal: AbortSignal): Promise<Link> {
    if (this.link && !this.link.closed) return Promise.resolve(this.link);
    if (this.closing) return Promise.reject(new SinkSendError(`${this.opts.url}: sink closed`, true));
    this.connecting ??= this.open(signal).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private open(signal: AbortSignal): Promise<Link> {
    const o = this.opts;
    const options: IClientOptions = {
      clientId: o.clientId,
      protocolVersion: o.protocolVersion,
      keepalive: o.keepaliveSeconds,
      // A PINGREQ every keepalive whatever else flows, instead of moving the ping timer on every
      // PUBACK (a clearTimeout and setTimeout per record): the link is still given up 1.5 x
      // keepalive after the last PINGRESP.
      reschedulePings: false,
      // The dispatcher's retry is the one schedule (see the class comment).
      reconnectPeriod: 0,
      connectTimeout: o.connectTimeoutMs,
      // No session to resume: what the broker did not acknowledge, the dispatcher sends again.
      clean: true,
      resubscribe: false,
      queueQoSZero: false,
      // mqtt.js calls its logger several times per packet; the `debug` one costs even when off.
      log: noop,
    };
    if (o.protocolVersion === 5) options.properties = {};
    if (o.username !== undefined) options.username = o.username;
    const fail = (message: string, cause?: unknown): SinkSendError =>
      new SinkSendError(`connect to ${o.url}: ${message}`, true, undefined, { cause });
    try {
      if (o.passwordFile) options.password = readFileSync(o.passwordFile, 'utf8').replace(/\r?\n$/, '');
      else if (o.password !== undefined) options.password = o.password;
      if (o.tls) {
        if (o.tls.caFile) options.ca = readFileSync(o.tls.caFile);
        if (o.tls.certFile) options.cert = readFileSync(o.tls.certFile);
        if (o.tls.keyFile) options.key = readFileSync(o.tls.keyFile);
        if (o.tls.serverName) options.servername = o.tls.serverName;
      }
    } catch (err) {
      return Promise.reject(fail((err as Error).message, err));
    }
    const client = mqtt.connect(o.url, options);
    // Each refill of the window is one small write while earlier ones await their TCP ACK:
    // Nagle would hold it until that ACK, which the broker may delay by up to 40 ms.
    (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    const link = new Link(client);
    return new Promise<Link>((resolve, reject) => {
      let lastError: Error | null = null;
      let settled = false;
      const settle = (err: Error | null): void => {
        if (settled) return;
        settled = true;
        client.off('connect', onConnect);
        signal.removeEventListener('abort', onAbort);
        if (err === null) {
          resolve(link);
          return;
        }
        link.closed = true;
        client.end(true);
        reject(err);
      };
      const onConnect = (): void => {
        const props = client.serverProperties;
        // [MQTT-3.2.2-9, -14] a publish above the broker's Maximum QoS, or retained where it has
        // no retain, makes it disconnect: say why instead of retrying into that for ever.
        const unsupported =
          o.qos > (props?.maximumQoS ?? 2)
            ? `the broker accepts QoS ${props?.maximumQoS} at most (CONNACK Maximum QoS): set qos: 0`
            : o.retain && props?.retainAvailable === false
              ? 'the broker has no retained messages (CONNACK Retain Available 0): set retain: false'
              : null;
        if (unsupported !== null) {
          settle(fail(unsupported));
          return;
        }
        link.receiveMaximum = props?.receiveMaximum ?? MAX_RECEIVE;
        link.maximumPacketSize = props?.maximumPacketSize ?? 0;
        link.up = true;
        this.link = link;
        this.stats.connections++;
        o.log?.info(
          { sink: o.name, url: o.url, receiveMaximum: link.receiveMaximum, window: this.window },
          'connected to the broker',
        );
        settle(null);
      };
      const onAbort = (): void => settle(fail(String((signal.reason as Error)?.message ?? signal.reason)));
      client.on('connect', onConnect);
      client.on('packetreceive', (p) => {
        if (p.cmd === 'puback') link.onPuback(p.messageId ?? 0, p.reasonCode ?? 0);
      });
      // Handled for the client's whole life: an unhandled 'error' would throw.
      client.on('error', (err: Error) => {
        lastError = err;
        const code = (err as { code?: unknown }).code;
        link.reason = err.message;
        if (!link.up && typeof code === 'number') {
          const what = `connect to ${o.url}: ${err.message} (reason code ${code})`;
          settle(CONNACK_AUTH.has(code) ? new SinkAuthError(what, { cause: err }) : fail(err.message, err));
        }
      });
      client.on('close', () => {
        if (link.up) this.down(link);
        else if (!link.closed) {
          link.closed = true;
          settle(fail(lastError?.message ?? 'connection closed', lastError));
        }
      });
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    const link = this.link ?? (await this.connecting?.catch(() => null)) ?? null;
    this.link = null;
    if (link && !link.closed) await link.client.endAsync(true);
  }
}

function noop(): void {}

const EMPTY = Buffer.alloc(0);
