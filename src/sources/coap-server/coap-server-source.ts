import { isUtf8 } from 'node:buffer';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { type Logger, ThrottledLog } from '../../core/logger.ts';
import type { RecordAppender, Source } from '../../core/pipeline.ts';
import { Block1Transfers, type BlockVerdict } from './block1-transfers.ts';
import { contentTypeOf } from './content-format.ts';
import { EXCHANGE_LIFETIME_MS, type Exchange, ExchangeTable } from './exchange-table.ts';
import { LINK_FORMAT, wellKnownCore } from './well-known-core.ts';
import {
  CODE_BAD_OPTION,
  CODE_BAD_REQUEST,
  CODE_CHANGED,
  CODE_CONTENT,
  CODE_CONTINUE,
  CODE_EMPTY,
  CODE_INCOMPLETE,
  CODE_METHOD_NOT_ALLOWED,
  CODE_NOT_FOUND,
  CODE_PROXYING_NOT_SUPPORTED,
  CODE_TOO_LARGE,
  CODE_UNAVAILABLE,
  CoapMessage,
  codeName,
  decode,
  encodeResponse,
  METHOD_GET,
  METHOD_POST,
  METHOD_PUT,
  methodName,
  OPT_BLOCK1,
  OPT_CONTENT_FORMAT,
  OPT_MAX_AGE,
  OPT_SIZE1,
  TYPE_ACK,
  TYPE_CON,
  TYPE_NON,
  TYPE_RST,
} from './wire.ts';

export interface CoapServerOptions {
  host: string;
  port: number;
  /** First Uri-Path segment of the telemetry resource: POST/PUT /<prefix>/<topic path>. */
  prefix: string;
  maxPayloadBytes: number;
}

export interface CoapSourceCounters {
  received: number;
  /** Records the journal refused (full under `reject`, not writable): answered 5.03. */
  refused: number;
  /** Malformed datagrams, and requests refused as bad (4.00, 4.02, 4.13). */
  protocolErrors: number;
  /** Datagrams that are not CoAP messages (RFC 7252 §3), dropped or reset. */
  malformed: number;
  /** Retransmitted requests answered again (or ignored, for NON) without journaling (§4.5). */
  duplicates: number;
  /** Times intake started refusing with 5.03 because too much waited for the journal commit. */
  pauses: number;
  /** Requests answered 5.03 for back-pressure (the journal saturated). */
  busy: number;
  /** Deduplication entries dropped by the count bound before EXCHANGE_LIFETIME. */
  exchangesEvicted: number;
  /** Block-wise transfers dropped by the count bound. */
  blockTransfersEvicted: number;
  /** Responses by method and code, e.g. `{ "POST 2.04": 12 }` (built when read). */
  readonly requests: Record<string, number>;
}

/**
 * Bounds of the in-memory protocol state. Deduplication: 100 000 exchanges of about 200 bytes
 * each (20 MB) cover 400 requests/s for the full EXCHANGE_LIFETIME. Block-wise transfers: 64 at
 * once, each at most maxPayloadBytes.
 */
export const MAX_EXCHANGES = 100_000;
export const MAX_BLOCK_TRANSFERS = 64;

/** Max-Age (RFC 7252 §5.9.3.4: seconds after which to retry) of a 5.03 for back-pressure. */
const BUSY_MAX_AGE = 1;
/** ... and of a 5.03 for a journal that refused the record: space returns with delivery. */
const REFUSED_MAX_AGE = 30;

const BUSY_OPTIONS = [[OPT_MAX_AGE, BUSY_MAX_AGE]] as const;
const REFUSED_OPTIONS = [[OPT_MAX_AGE, REFUSED_MAX_AGE]] as const;
const BUSY_TEXT = Buffer.from('busy: the journal is catching up');
const REFUSED_TEXT = Buffer.from('the journal refused the record');

/**
 * The CoAP server (RFC 7252) on a UDP port. A POST or PUT to /<prefix>/<topic path> becomes a
 * record on <topic path>.
 *
 * Durability: a confirmable request is answered (2.04, piggybacked on the ACK: §5.2.1) only
 * from the journal's commit callback. No empty ACK goes out before it: an ACK ends the client's
 * retransmissions (§4.2), so a crash between ACK and commit would lose the record. If the
 * daemon dies first, the client retransmits to the next one. A NON is appended without waiting
 * and answered at once. Retransmissions are answered from the ExchangeTable, not journaled again.
 *
 * Back-pressure: UDP has no flow control to lean on, so while the journal is saturated new
 * requests get 5.03 with Max-Age instead of piling up in memory.
 *
 * The per-datagram path allocates the exchange entry, the record and its strings; the decoded
 * message is one reused object and the journal callback a method given the exchange as state.
 *
 * Why not node-coap's server (the `coap` package, used by the tests as an independent peer):
 * its empty ACK after `piggybackReplyMs` breaks the durable ack; its Block1 reassembly is keyed
 * by token; its dedup misses requests still waiting for a commit; it answers a datagram it
 * cannot parse with a 5.00 sent to 127.0.0.1 at the sender's port (its `_sendError` omits the
 * address); and it allocates streams, timers and closures per request.
 */
export class CoapServerSource implements Source {
  readonly name = 'coap';
  readonly counters: CoapSourceCounters;
  private readonly opts: CoapServerOptions;
  private readonly appender: RecordAppender;
  private readonly log: Logger;
  private socket: Socket | null = null;
  private accepting = false;
  private readonly msg = new CoapMessage();
  private readonly exchanges = new ExchangeTable(MAX_EXCHANGES);
  private readonly blocks: Block1Transfers;
  private readonly wellKnown: Buffer;
  private readonly prefix: Buffer;
  /** Responses sent, by request method (code detail 0-31) and response code byte. */
  private readonly responseCounts = new Uint32Array(32 * 256);
  private nextMessageId = Math.floor(Math.random() * 0x10000);
  private saturatedEpisode = false;
  private pendingCommits = 0;
  private drained: (() => void) | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private readonly malformedLog = new ThrottledLog();
  private readonly badLog = new ThrottledLog();
  private readonly refusedLog = new ThrottledLog();
  private readonly socketLog = new ThrottledLog();

  constructor(opts: CoapServerOptions, appender: RecordAppender, log: Logger) {
    this.opts = opts;
    this.appender = appender;
    this.log = log;
    this.blocks = new Block1Transfers(MAX_BLOCK_TRANSFERS, opts.maxPayloadBytes, EXCHANGE_LIFETIME_MS);
    this.wellKnown = wellKnownCore(opts.prefix);
    this.prefix = Buffer.from(opts.prefix, 'utf8');
    const counts = this.responseCounts;
    this.counters = {
      received: 0,
      refused: 0,
      protocolErrors: 0,
      malformed: 0,
      duplicates: 0,
      pauses: 0,
      busy: 0,
      exchangesEvicted: 0,
      blockTransfersEvicted: 0,
      requests: {},
    };
    Object.defineProperty(this.counters, 'requests', {
      enumerable: true,
      get: () => responsesByMethodAndCode(counts),
    });
  }

  async start(): Promise<void> {
    // No SO_REUSEADDR (node-coap sets it by default): a second daemon on the same port must
    // fail to bind, not silently share the datagrams.
    const socket = createSocket({ type: isIPv6(this.opts.host) ? 'udp6' : 'udp4', reuseAddr: false });
    this.socket = socket;
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.opts.port, this.opts.host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    socket.on('error', this.onSocketError);
    socket.on('message', this.onMessage);
    this.accepting = true;
    this.sweepTimer = setInterval(this.sweep, 10_000);
    this.sweepTimer.unref();
    this.log.info(this.addresses(), 'coap listening');
  }

  addresses(): Record<string, string | number> {
    try {
      const a = this.socket?.address();
      return a ? { host: a.address, port: a.port } : {};
    } catch {
      return {}; // not bound, or closed
    }
  }

  /**
   * Stops taking requests, then waits (bounded) for the commits of those already appended so
   * their clients get the 2.04 rather than retransmit to the next instance and journal twice.
   */
  async stop(): Promise<void> {
    this.accepting = false;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.pendingCommits > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2000);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const socket = this.socket;
    this.socket = null;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
    this.exchanges.clear();
    this.blocks.clear();
  }

  private readonly sweep = (): void => {
    const now = Date.now();
    this.exchanges.sweep(now);
    this.blocks.sweep(now);
  };

  private readonly onSocketError = (err: Error): void => {
    const suppressed = this.socketLog.take();
    if (suppressed >= 0) this.log.warn({ err: err.message, suppressed }, 'coap socket error');
  };

  private readonly onMessage = (buf: Buffer, rinfo: RemoteInfo): void => {
    if (!this.accepting) return; // the client retransmits to whoever serves next
    const m = this.msg;
    const bad = decode(buf, m);
    if (bad !== null) {
      this.malformed(buf, rinfo, m, bad);
      return;
    }
    if (m.type === TYPE_ACK || m.type === TYPE_RST) return; // this server sends no CON to be acked
    if (m.code === CODE_EMPTY) {
      // A CoAP ping (§4.3): an Empty CON is answered with RST.
      if (m.type === TYPE_CON) this.send(encodeResponse(TYPE_RST, 0, m.messageId, EMPTY, null, null), rinfo);
      return;
    }
    if (m.code >> 5 !== 0) {
      // A response, or a reserved class, where a request belongs: rejected (§4.2, §4.3).
      this.malformed(buf, rinfo, m, 'not-a-request');
      return;
    }
    const now = Date.now();
    const key = `${rinfo.address}:${rinfo.port}/${m.messageId}`;
    const seen = this.exchanges.find(key, now);
    if (seen !== undefined) {
      // §4.5: the same response again; nothing while the original waits for its commit (it is
      // sent then); a duplicate NON is ignored.
      this.counters.duplicates++;
      if (seen.response !== null && m.type === TYPE_CON) this.send(seen.response, rinfo);
      return;
    }
    const ex: Exchange = {
      key,
      expires: 0,
      address: rinfo.address,
      port: rinfo.port,
      messageId: m.messageId,
      token: m.token,
      confirmable: m.type === TYPE_CON,
      method: m.code,
      block1: -1,
      response: null,
    };
    this.exchanges.add(ex, now);
    this.counters.exchangesEvicted = this.exchanges.evicted;
    this.handle(m, ex, now);
  };

  private handle(m: CoapMessage, ex: Exchange, now: number): void {
    if (m.badOption >= 0) {
      this.refuseBad(ex, CODE_BAD_OPTION, `unsupported critical option ${m.badOption}`);
      return;
    }
    if (m.proxy) {
      this.respond(ex, CODE_PROXYING_NOT_SUPPORTED, null, null);
      return;
    }
    const path = m.path;
    if (path.length > 0 && path[0].equals(this.prefix)) {
      if (m.code !== METHOD_POST && m.code !== METHOD_PUT) {
        this.respond(ex, CODE_METHOD_NOT_ALLOWED, null, null);
        return;
      }
      this.ingest(m, ex, now);
      return;
    }
    if (
      path.length === 2 &&
      path[0].toString('latin1') === '.well-known' &&
      path[1].toString('latin1') === 'core'
    ) {
      if (m.code === METHOD_GET)
        this.respond(ex, CODE_CONTENT, [[OPT_CONTENT_FORMAT, LINK_FORMAT]], this.wellKnown);
      else this.respond(ex, CODE_METHOD_NOT_ALLOWED, null, null);
      return;
    }
    this.respond(ex, CODE_NOT_FOUND, null, null);
  }

  /** POST/PUT on the telemetry resource. */
  private ingest(m: CoapMessage, ex: Exchange, now: number): void {
    const topic = topicOf(m.path);
    if (topic === null) {
      this.refuseBad(ex, CODE_BAD_REQUEST, 'bad topic path (empty, an empty or wildcard level, not UTF-8)');
      return;
    }
    let payload = m.payload;
    if (m.block1 >= 0) {
      ex.block1 = m.block1;
      const tag = m.requestTag === null ? '' : m.requestTag.toString('hex');
      const blockKey = `${ex.address}:${ex.port}|${tag}|${topic}`;
      // A last block met by back-pressure is refused before it is consumed: the client repeats it.
      // The check alone settles a refused block (it then forgets the transfer).
      const probe = this.blocks.offer(blockKey, m.block1, payload, m.size1, now, false);
      if (probe !== 'complete' && probe !== 'continue') {
        this.answerBlock(ex, probe);
        return;
      }
      if (probe === 'complete' && this.appender.saturated) {
        this.refuseBusy(ex);
        return;
      }
      const verdict = this.blocks.offer(blockKey, m.block1, payload, m.size1, now);
      this.counters.blockTransfersEvicted = this.blocks.evicted;
      if (verdict !== 'complete') {
        this.answerBlock(ex, verdict);
        return;
      }
      payload = this.blocks.completed as Buffer;
      this.blocks.completed = null;
    } else if (payload.length > this.opts.maxPayloadBytes || m.size1 > this.opts.maxPayloadBytes) {
      this.refuseTooLarge(ex, payload.length);
      return;
    }
    if (this.appender.saturated) {
      this.refuseBusy(ex);
      return;
    }
    const device =
      m.device !== null && m.device.length > 0 ? m.device.toString('utf8') : `${ex.address}:${ex.port}`;
    const rec = {
      ts: now,
      source: 'coap',
      device,
      topic,
      payload,
      contentType: contentTypeOf(m.contentFormat),
    };
    this.counters.received++;
    if (ex.confirmable) {
      this.pendingCommits++;
      this.appender.append(rec, this.onCommitted, ex);
    } else {
      this.appender.append(rec, this.onNonCommitted, ex);
      this.respond(ex, CODE_CHANGED, ex.block1 >= 0 ? [[OPT_BLOCK1, ex.block1]] : null, null);
    }
  }

  private answerBlock(ex: Exchange, verdict: BlockVerdict): void {
    switch (verdict) {
      case 'continue':
        // RFC 7959 §2.3: 2.31 Continue, echoing the block (M set) the server took.
        this.respond(ex, CODE_CONTINUE, [[OPT_BLOCK1, ex.block1]], null);
        return;
      case 'incomplete':
        this.refuseBad(ex, CODE_INCOMPLETE, 'block out of order, or of a transfer no longer kept');
        return;
      case 'too-large':
        this.refuseTooLarge(ex, -1);
        return;
      default:
        this.refuseBad(ex, CODE_BAD_REQUEST, 'bad Block1 option or block size');
    }
  }

  /** The journal's answer for a CON: the 2.04 leaves only now (RFC 7252 §5.2.1). */
  private readonly onCommitted = (err: Error | null, _seq: number, ex: Exchange): void => {
    if (--this.pendingCommits === 0 && this.drained) this.drained();
    if (err) {
      this.refused(ex, err);
      return;
    }
    this.respond(ex, CODE_CHANGED, ex.block1 >= 0 ? [[OPT_BLOCK1, ex.block1]] : null, null);
  };

  private readonly onNonCommitted = (err: Error | null, _seq: number, ex: Exchange): void => {
    if (err) {
      this.counters.refused++;
      this.logRefused(ex, err);
    }
  };

  private refused(ex: Exchange, err: Error): void {
    this.counters.refused++;
    this.logRefused(ex, err);
    this.respond(ex, CODE_UNAVAILABLE, REFUSED_OPTIONS, REFUSED_TEXT);
  }

  private logRefused(ex: Exchange, err: Error): void {
    const suppressed = this.refusedLog.take();
    if (suppressed >= 0)
      this.log.warn(
        { peer: `${ex.address}:${ex.port}`, err: err.message, suppressed },
        'coap request not journaled: answered 5.03',
      );
  }

  private refuseBusy(ex: Exchange): void {
    this.counters.busy++;
    if (!this.saturatedEpisode) {
      this.saturatedEpisode = true;
      this.counters.pauses++;
      this.appender.whenUnsaturated(this.endEpisode);
    }
    this.respond(ex, CODE_UNAVAILABLE, BUSY_OPTIONS, BUSY_TEXT);
  }

  private readonly endEpisode = (): void => {
    this.saturatedEpisode = false;
  };

  private refuseTooLarge(ex: Exchange, bytes: number): void {
    // RFC 7252 §5.9.2.9 / RFC 7959 §4: Size1 tells the client the largest body taken.
    this.refuseBad(
      ex,
      CODE_TOO_LARGE,
      'payload over coap.maxPayloadBytes',
      [[OPT_SIZE1, this.opts.maxPayloadBytes]],
      bytes,
    );
  }

  private refuseBad(
    ex: Exchange,
    code: number,
    why: string,
    options: readonly (readonly [number, number])[] | null = null,
    bytes = -1,
  ): void {
    this.counters.protocolErrors++;
    const suppressed = this.badLog.take();
    if (suppressed >= 0)
      this.log.warn(
        {
          peer: `${ex.address}:${ex.port}`,
          method: methodName(ex.method),
          code: codeName(code),
          ...(bytes >= 0 ? { payloadBytes: bytes, maxPayloadBytes: this.opts.maxPayloadBytes } : {}),
          suppressed,
        },
        `coap request refused: ${why}`,
      );
    this.respond(ex, code, options, code === CODE_TOO_LARGE ? null : Buffer.from(why));
  }

  /**
   * Answers `ex` and keeps the bytes for its retransmissions: piggybacked on the ACK for a CON
   * (same message id), as a NON with a message id of its own for a NON (§5.2.3).
   */
  private respond(
    ex: Exchange,
    code: number,
    options: readonly (readonly [number, number])[] | null,
    payload: Buffer | null,
  ): void {
    const type = ex.confirmable ? TYPE_ACK : TYPE_NON;
    const mid = ex.confirmable ? ex.messageId : this.newMessageId();
    const buf = encodeResponse(type, code, mid, ex.token, options, payload);
    ex.response = buf;
    this.responseCounts[(ex.method & 0x1f) * 256 + code]++;
    this.sendTo(buf, ex.address, ex.port);
  }

  private newMessageId(): number {
    this.nextMessageId = (this.nextMessageId + 1) & 0xffff;
    return this.nextMessageId;
  }

  private malformed(buf: Buffer, rinfo: RemoteInfo, m: CoapMessage, why: string): void {
    this.counters.malformed++;
    this.counters.protocolErrors++;
    const suppressed = this.malformedLog.take();
    if (suppressed >= 0)
      this.log.warn(
        { peer: `${rinfo.address}:${rinfo.port}`, bytes: buf.length, reason: why, suppressed },
        'malformed coap datagram: dropped',
      );
    // A CON whose header could be read is rejected with RST (§4.2), so its sender stops
    // retransmitting; anything else is dropped silently (§4.3: never RST a NON or a reset).
    if (buf.length >= 4 && buf[0] >> 6 === 1 && m.type === TYPE_CON)
      this.send(encodeResponse(TYPE_RST, 0, m.messageId, EMPTY, null, null), rinfo);
  }

  private send(buf: Buffer, rinfo: RemoteInfo): void {
    this.sendTo(buf, rinfo.address, rinfo.port);
  }

  private sendTo(buf: Buffer, address: string, port: number): void {
    const socket = this.socket;
    // Without a callback dgram reports a failed send as an 'error' event (logged, throttled).
    if (socket !== null) socket.send(buf, port, address);
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * The topic of /<prefix>/<segments>: the segments joined with '/'. Refused (null): no segment,
 * an empty one, one holding '/', an MQTT wildcard ('+', '#': routes match topics with MQTT
 * filters) or U+0000, or one that is not UTF-8 (Uri-Path is a string option: RFC 7252 §3.2).
 */
function topicOf(path: Buffer[]): string | null {
  if (path.length < 2) return null;
  let topic = '';
  for (let i = 1; i < path.length; i++) {
    const seg = path[i];
    if (seg.length === 0 || !isUtf8(seg)) return null;
    for (let k = 0; k < seg.length; k++) {
      const c = seg[k];
      if (c === 0x2f || c === 0x2b || c === 0x23 || c === 0) return null;
    }
    topic = i === 1 ? seg.toString('utf8') : `${topic}/${seg.toString('utf8')}`;
  }
  return topic;
}

function responsesByMethodAndCode(counts: Uint32Array): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] > 0) out[`${methodName(i >> 8)} ${codeName(i & 0xff)}`] = counts[i];
  }
  return out;
}
