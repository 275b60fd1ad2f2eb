// One device's CoAP client endpoint: its own socket (UDP, or DTLS-PSK for coaps://), its own
// message ids and tokens, its own retransmission timers. node-coap-client was the first choice,
// but it keeps one process-wide send queue with at most one confirmable message in flight across
// all origins (a GET to a dead device held a live device's GET for 19.7 s here), and it files
// pending requests by message id across origins, which collide since each origin starts at 1.
// Per-device endpoints keep "one dead device never delays another" (DESIGN.md) by construction.

import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import type { Logger } from '../../core/logger.ts';
import {
  type CoapMessage,
  type CoapOption,
  decode,
  emptyMessage,
  encode,
  TYPE_ACK,
  TYPE_CON,
  TYPE_NON,
  TYPE_RST,
} from './codec.ts';

/** No response (or ACK) before the exchange's deadline. */
export class CoapTimeoutError extends Error {
  constructor(ms: number) {
    super(`no response within ${ms} ms`);
    this.name = 'CoapTimeoutError';
  }
}

/** The device could not be reached at all (DTLS handshake failed, RST, socket closed). */
export class CoapUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CoapUnreachableError';
  }
}

export interface ExchangeOptions {
  code: number;
  options: CoapOption[];
  payload?: Buffer;
  /** Reused for an observe re-registration (RFC 7641 §3.3.1), otherwise a fresh one. */
  token?: Buffer;
  timeoutMs: number;
  confirmable?: boolean;
  signal?: AbortSignal;
}

/** A notification (or any response) for a token the caller keeps listening to. */
export type TokenListener = (msg: CoapMessage) => void;

interface Transport {
  send(buf: Buffer, done?: () => void): void;
  close(): void;
}

interface Exchange {
  messageId: number;
  token: string;
  buf: Buffer;
  confirmable: boolean;
  acked: boolean;
  retransmitMs: number;
  retransmitTimer: NodeJS.Timeout | null;
  deadlineTimer: NodeJS.Timeout;
  resolve(msg: CoapMessage): void;
  reject(err: Error): void;
}

export interface EndpointOptions {
  url: URL;
  psk?: { identity: string; key: string };
  log: Logger;
}

// RFC 7252 §4.8: ACK_TIMEOUT 2 s, ACK_RANDOM_FACTOR 1.5; the retransmissions stop at the
// exchange's deadline (the device's timeoutMs) rather than after MAX_RETRANSMIT, so a command's
// deadline is the caller's. The first wait is shortened for short deadlines so a lost datagram
// is still resent at least about twice.
const ACK_TIMEOUT_MS = 2_000;
const ACK_RANDOM_FACTOR = 1.5;
/** Message ids of recent CON/NON messages from the device, for duplicate detection (§4.5). */
const RECENT_IDS = 64;

interface DtlsSocketInternals {
  udp_onMessage(this: DtlsSocketInternals, ...args: unknown[]): void;
  killConnection(this: DtlsSocketInternals, err: Error): void;
  edgeferryGuarded?: boolean;
}

/**
 * node-dtls-client 1.1 throws from its UDP 'message' handler on a handshake message it does not
 * parse: a server that sends a PSK identity hint (ServerKeyExchange, as libcoap's
 * coap-server-openssl and -gnutls do by default) raised "unsupported message type 12" as an
 * uncaught exception, which would end the daemon. Its handler is bound from the prototype when a
 * socket is created, so wrapping it once turns such a throw into the socket's own failure path
 * (an 'error' event: handshake failed, the resource retries).
 */
function guardDtlsReceive(proto: DtlsSocketInternals): void {
  if (proto.edgeferryGuarded) return;
  const receive = proto.udp_onMessage;
  proto.udp_onMessage = function (this: DtlsSocketInternals, ...args: unknown[]) {
    try {
      receive.apply(this, args);
    } catch (err) {
      this.killConnection(err instanceof Error ? err : new Error(String(err)));
    }
  };
  proto.edgeferryGuarded = true;
}

export class CoapEndpoint {
  readonly origin: string;
  private readonly opts: EndpointOptions;
  private readonly log: Logger;
  private transport: Transport | null = null;
  private opening: Promise<Transport> | null = null;
  private nextMessageId = Math.floor(Math.random() * 0x10000);
  private readonly byMessageId = new Map<number, Exchange>();
  private readonly byToken = new Map<string, Exchange>();
  private readonly listeners = new Map<string, TokenListener>();
  private readonly recentIds: number[] = [];
  private readonly lostHandlers = new Set<(err: Error) => void>();
  private closed = false;
  /** Datagrams from the device that could not be parsed. */
  malformed = 0;

  constructor(opts: EndpointOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.origin = `${opts.url.protocol}//${opts.url.host}`;
  }

  /** Called when the secure session ends: every observation over it is gone. */
  onLost(cb: (err: Error) => void): void {
    this.lostHandlers.add(cb);
  }

  listen(token: Buffer, cb: TokenListener): void {
    this.listeners.set(token.toString('hex'), cb);
  }

  unlisten(token: Buffer): void {
    this.listeners.delete(token.toString('hex'));
  }

  newToken(): Buffer {
    return randomBytes(8);
  }

  /** Sends a request and resolves with the response (piggybacked or separate, RFC 7252 §5.2). */
  async request(x: ExchangeOptions): Promise<CoapMessage> {
    if (this.closed) throw new CoapUnreachableError('endpoint closed');
    const started = Date.now();
    const transport = await this.open(x.timeoutMs);
    const left = x.timeoutMs - (Date.now() - started);
    if (left <= 0) throw new CoapTimeoutError(x.timeoutMs);
    x.signal?.throwIfAborted();
    const token = x.token ?? this.newToken();
    const messageId = this.allocateMessageId();
    const confirmable = x.confirmable ?? true;
    const buf = encode({
      type: confirmable ? TYPE_CON : TYPE_NON,
      code: x.code,
      messageId,
      token,
      options: x.options,
      payload: x.payload ?? Buffer.alloc(0),
    });
    return new Promise<CoapMessage>((resolve, reject) => {
      const onAbort = () => fail(new CoapTimeoutError(x.timeoutMs));
      const done = () => {
        clearTimeout(ex.deadlineTimer);
        if (ex.retransmitTimer) clearTimeout(ex.retransmitTimer);
        this.byMessageId.delete(messageId);
        if (this.byToken.get(ex.token) === ex) this.byToken.delete(ex.token);
        x.signal?.removeEventListener('abort', onAbort);
      };
      const fail = (err: Error) => {
        done();
        reject(err);
      };
      const first = Math.min(
        ACK_TIMEOUT_MS * (1 + Math.random() * (ACK_RANDOM_FACTOR - 1)),
        Math.max(50, left / 4),
      );
      const ex: Exchange = {
        messageId,
        token: token.toString('hex'),
        buf,
        confirmable,
        acked: false,
        retransmitMs: first,
        retransmitTimer: null,
        deadlineTimer: setTimeout(() => fail(new CoapTimeoutError(x.timeoutMs)), left),
        resolve: (msg) => {
          done();
          resolve(msg);
        },
        reject: fail,
      };
      x.signal?.addEventListener('abort', onAbort, { once: true });
      this.byMessageId.set(messageId, ex);
      this.byToken.set(ex.token, ex);
      transport.send(buf);
      if (confirmable) this.scheduleRetransmit(ex, transport);
    });
  }

  close(): void {
    this.closed = true;
    for (const ex of [...this.byMessageId.values()]) ex.reject(new CoapUnreachableError('endpoint closed'));
    this.listeners.clear();
    this.transport?.close();
    this.transport = null;
  }

  /**
   * Sends a message that expects no answer (an observe cancellation on shutdown); resolves once
   * it left the socket, so closing the endpoint after it does not drop it.
   */
  sendNonConfirmable(code: number, token: Buffer, options: CoapOption[]): Promise<void> {
    const t = this.transport;
    if (!t) return Promise.resolve();
    const buf = encode({
      type: TYPE_NON,
      code,
      messageId: this.allocateMessageId(),
      token,
      options,
      payload: Buffer.alloc(0),
    });
    return new Promise<void>((resolve) => {
      // Bounded: a DTLS socket that is going away may never call back.
      const timer = setTimeout(resolve, 1_000);
      t.send(buf, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private scheduleRetransmit(ex: Exchange, transport: Transport): void {
    ex.retransmitTimer = setTimeout(() => {
      if (ex.acked || this.byMessageId.get(ex.messageId) !== ex) return;
      transport.send(ex.buf);
      ex.retransmitMs *= 2;
      this.scheduleRetransmit(ex, transport);
    }, ex.retransmitMs);
  }

  private allocateMessageId(): number {
    this.nextMessageId = (this.nextMessageId + 1) & 0xffff;
    return this.nextMessageId;
  }

  private open(timeoutMs: number): Promise<Transport> {
    if (this.transport) return Promise.resolve(this.transport);
    this.opening ??= this.connect(timeoutMs).then(
      (t) => {
        this.opening = null;
        if (this.closed) {
          t.close();
          throw new CoapUnreachableError('endpoint closed');
        }
        this.transport = t;
        return t;
      },
      (err) => {
        this.opening = null;
        throw err;
      },
    );
    return this.opening;
  }

  private async connect(timeoutMs: number): Promise<Transport> {
    const { url, psk } = this.opts;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const { address, family } = await lookup(host);
    const type = family === 6 ? 'udp6' : 'udp4';
    if (url.protocol === 'coaps:') {
      const port = url.port === '' ? 5684 : Number(url.port);
      return this.connectDtls(type, address, port, timeoutMs, psk as { identity: string; key: string });
    }
    const port = url.port === '' ? 5683 : Number(url.port);
    const sock = dgram.createSocket(type);
    // Send errors (EHOSTUNREACH and the like) surface here; the exchange's deadline reports them.
    sock.on('error', (err) => this.log.debug({ err: err.message }, 'coap socket error'));
    sock.on('message', (buf, rinfo) => {
      if (rinfo.port === port && rinfo.address === address) this.onDatagram(buf);
    });
    await new Promise<void>((resolve) => sock.bind(0, resolve));
    return {
      send: (buf, done) => sock.send(buf, port, address, () => done?.()),
      close: () => sock.close(),
    };
  }

  private async connectDtls(
    type: 'udp4' | 'udp6',
    address: string,
    port: number,
    timeoutMs: number,
    psk: { identity: string; key: string },
  ): Promise<Transport> {
    // Loaded only for coaps:// devices (node-coap-client's own DTLS library).
    const { dtls } = await import('node-dtls-client');
    guardDtlsReceive(dtls.Socket.prototype as unknown as DtlsSocketInternals);
    return new Promise<Transport>((resolve, reject) => {
      const sock = dtls.createSocket({
        type,
        address,
        port,
        psk: { [psk.identity]: psk.key },
        timeout: timeoutMs,
      });
      let up = false;
      const lost = (why: string) => {
        if (!up) {
          reject(new CoapUnreachableError(`DTLS handshake with ${address}:${port} failed: ${why}`));
          return;
        }
        up = false;
        if (this.transport === transport) this.transport = null;
        const err = new CoapUnreachableError(`DTLS session with ${address}:${port} ended: ${why}`);
        for (const ex of [...this.byMessageId.values()]) ex.reject(err);
        for (const cb of this.lostHandlers) cb(err);
      };
      const transport: Transport = {
        send: (buf, done) => sock.send(buf, () => done?.()),
        close: () => {
          up = false;
          sock.close();
        },
      };
      sock.on('connected', () => {
        up = true;
        resolve(transport);
      });
      sock.on('error', (err: Error) => lost(err.message));
      sock.on('close', () => lost('closed'));
      sock.on('message', (buf: Buffer) => this.onDatagram(buf));
    });
  }

  private onDatagram(buf: Buffer): void {
    let msg: CoapMessage;
    try {
      msg = decode(buf);
    } catch {
      // RFC 7252 §4.2/§4.3: a message that cannot be parsed is silently ignored (or rejected).
      this.malformed++;
      return;
    }
    if (msg.code === 0) {
      const ex = this.byMessageId.get(msg.messageId);
      if (msg.type === TYPE_ACK && ex) {
        // Empty ACK: the request arrived; a separate response follows (§5.2.2).
        ex.acked = true;
        if (ex.retransmitTimer) clearTimeout(ex.retransmitTimer);
        ex.retransmitTimer = null;
      } else if (msg.type === TYPE_RST && ex) {
        ex.reject(new CoapUnreachableError('the device reset the request (RST)'));
      } else if (msg.type === TYPE_CON) {
        // A CoAP ping: answered with RST (§4.3).
        this.transport?.send(emptyMessage(TYPE_RST, msg.messageId));
      }
      return;
    }
    if (msg.code >> 5 < 2) return; // a request: this endpoint is a client only
    const key = msg.token.toString('hex');
    const ex = this.byToken.get(key);
    const listener = ex ? undefined : this.listeners.get(key);
    if (!ex && !listener) {
      // RFC 7641 §3.6: a notification for a token we do not know is rejected with RST, so the
      // device removes the stale observation (one from before a gateway restart, say).
      if (msg.type !== TYPE_ACK) this.transport?.send(emptyMessage(TYPE_RST, msg.messageId));
      return;
    }
    if (msg.type === TYPE_CON || msg.type === TYPE_NON) {
      const dup = this.recentIds.includes(msg.messageId);
      if (msg.type === TYPE_CON) this.transport?.send(emptyMessage(TYPE_ACK, msg.messageId));
      // §4.5: a duplicate (our ACK was lost) is acknowledged again but not processed twice.
      if (dup) return;
      this.recentIds.push(msg.messageId);
      if (this.recentIds.length > RECENT_IDS) this.recentIds.shift();
    }
    if (ex) ex.resolve(msg);
    else listener?.(msg);
  }
}
