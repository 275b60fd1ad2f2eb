// The CoAP load generator: N clients on node:dgram, each its own UDP socket, POSTing 200 B
// payloads to `<pathPrefix>/<i>` with up to `inflight` requests outstanding. Every payload
// starts with its float64 BE send time (ms), as the MQTT generator's do, so the HTTP receiver
// behind edgeferry reads the end-to-end latency; the generator itself times send -> 2.xx.
//
// CON (RFC 7252 §4.2): a request is done on its ACK, matched by message id (a piggybacked 2.04),
// or, after an empty ACK, on the separate response matched by token (a CON one is ACKed back).
// Unanswered, it is retransmitted, the same bytes, after a timeout drawn from
// [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR] and doubled each time, at most MAX_RETRANSMIT
// times; then it is given up (`failed`). NON (§4.3): never retransmitted; its slot is freed by a
// response with its token (node-coap answers a NON with a NON 2.04) or after `nonWaitMs`
// (counted `unanswered`), so NON is window-paced like CON when the server answers.
//
// Bounded: a run ends when every message is done or at its deadline, whichever comes first, and
// reports what it got; `prepareCoapLoad` first probes each client's path with one CON POST and
// fails with a clear error when nothing answers (e.g. nothing listens on the UDP port).
//
// `prepareCoapLoadInWorker` runs all of it in a worker thread: the generator gets its own event
// loop, away from the HTTP receiver in the main thread.

import { createSocket, type Socket } from 'node:dgram';
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import {
  ACK,
  CODE_EMPTY,
  CODE_SERVICE_UNAVAILABLE,
  CON,
  codeString,
  emptyAck,
  type Header,
  maxAge,
  NON,
  type PostTemplate,
  parseHeader,
  postTemplate,
  RST,
} from './coap-codec.ts';
import { prepareInWorker } from './load-worker.ts';
import { nowMs } from './mqtt-codec.ts';
import { threadCpuSec } from './proc.ts';

export type CoapType = 'con' | 'non';

export interface CoapLoadOptions {
  host: string;
  port: number;
  clients: number;
  /** Messages per client. */
  messages: number;
  type: CoapType;
  /** Requests outstanding per client. */
  inflight: number;
  payloadBytes: number;
  /** Client i posts to `${pathPrefix}/${i}`, e.g. '/t/bench'. */
  pathPrefix: string;
  /** Deadline of the run: it ends there with what it got (`timedOut`). */
  timeoutMs: number;
  /** §4.8 ACK_TIMEOUT (2 s) and MAX_RETRANSMIT (4). */
  ackTimeoutMs: number;
  maxRetransmit: number;
  /** NON: a request without a response frees its slot after this long. */
  nonWaitMs: number;
  /** `prepare` probes each client's path with one CON POST (counted nowhere but at the sink). */
  probe: boolean;
  /** How long each client waits for its probe to be answered. */
  probeTimeoutMs: number;
}

export const COAP_LOAD_DEFAULTS = {
  host: '127.0.0.1',
  clients: 4,
  messages: 25_000,
  type: 'con',
  inflight: 32,
  payloadBytes: 200,
  pathPrefix: '/t/bench',
  timeoutMs: 120_000,
  ackTimeoutMs: 2000,
  maxRetransmit: 4,
  nonWaitMs: 100,
  probe: true,
  probeTimeoutMs: 5000,
} as const satisfies Partial<CoapLoadOptions>;

/** §4.8 ACK_RANDOM_FACTOR. */
const ACK_RANDOM_FACTOR = 1.5;
/** How often timeouts are checked: one coarse timer per client, not one per message. */
const TICK_MS = 5;
/** Between probe retransmissions (the probe is bounded by `probeTimeoutMs`, not by §4.2). */
const PROBE_ACK_TIMEOUT_MS = 500;

const CLIENT_RCVBUF = 1 << 20;
/** Slot states. */
const FREE = 0;
/** Sent, waiting for its ACK (CON) or response (NON). */
const WAITING = 1;
/** CON with an empty ACK: waiting for the separate response (matched by token). */
const SEPARATE = 2;
/** Answered 5.03: sent again, as a new request, once its Max-Age has passed (§5.9.3.4). */
const HELD = 3;

export interface CoapClientResult {
  path: string;
  sent: number;
  /** Answered with a 2.xx. */
  acked: number;
  firstSendAt: number;
  lastAckAt: number;
  /** When 99 % of its messages had a 2.xx (0 if they never did). */
  ack99At: number;
  rate: number;
}

export interface CoapLoadResult {
  type: CoapType;
  /** Messages sent (first transmissions). */
  sent: number;
  /** 2.xx responses. */
  acked: number;
  /** CON retransmissions. */
  retransmits: number;
  /** CON given up after MAX_RETRANSMIT, or RST. */
  failed: number;
  resets: number;
  /** NON without a response within `nonWaitMs`. */
  unanswered: number;
  /**
   * 5.03 Service Unavailable answers (the server's back-pressure): each request is sent again,
   * as a new one, after the response's Max-Age, its send time kept (latency includes the wait).
   */
  refused: number;
  /** Responses other than 2.xx and 5.03, by code. */
  errorCodes: Record<string, number>;
  /** ACKs / responses matching nothing outstanding (late duplicates). */
  stray: number;
  /** The deadline ended the run before every message was done. */
  timedOut: boolean;
  /** CPU seconds of the generator's own thread over `go()` (NaN where unknown). */
  cpuSec: number;
  startedAt: number;
  endedAt: number;
  /** acked / (last 2.xx - first send). */
  rate: number;
  /**
   * 99 % of the messages / (the moment every client had 99 % answered - first send): the rate
   * without the tail a lost datagram adds (its retransmission comes ACK_TIMEOUT or more later).
   */
  rate99: number;
  perClientRate: number;
  /** Send (first transmission) -> 2.xx, ms. */
  latency: { count: number; p50: number; p99: number; p999: number; max: number };
  clients: CoapClientResult[];
}

class Client {
  readonly path: string;
  private readonly opts: CoapLoadOptions;
  private readonly socket: Socket;
  private readonly tpl: { con: PostTemplate; non: PostTemplate };
  private readonly w: number;
  /** One packet buffer per slot: retransmissions resend it as is. */
  private readonly bufs: Buffer[];
  private readonly state: Uint8Array;
  private readonly gen: Uint16Array;
  private readonly mids: Int32Array;
  private readonly firstSent: Float64Array;
  private readonly deadline: Float64Array;
  private readonly timeout: Float64Array;
  private readonly retries: Uint8Array;
  private readonly freeList: number[] = [];
  /** Message id -> slot, -1 when none. */
  private readonly midToSlot = new Int32Array(65536).fill(-1);
  private nextMid = Math.floor(Math.random() * 65536);
  private readonly header: Header = { type: 0, code: 0, mid: 0, token: 0 };
  private readonly retransmitLimit: { ackTimeoutMs: number; maxRetransmit: number };

  // Per run.
  private type = CON;
  private target = 0;
  private ackTimeoutMs = 0;
  private maxRetransmit = 0;
  private active = 0;
  private timer: NodeJS.Timeout | null = null;
  private finish: ((err?: Error) => void) | null = null;
  private error: Error | null = null;
  sent = 0;
  acked = 0;
  retransmits = 0;
  failed = 0;
  resets = 0;
  unanswered = 0;
  refused = 0;
  stray = 0;
  errorCodes: Record<string, number> = {};
  firstSendAt = 0;
  lastAckAt = 0;
  ack99At = 0;
  private ack99 = 0;
  readonly latency: RecordableHistogram = createHistogram({ lowest: 1, highest: 3_600_000_000, figures: 3 });

  constructor(opts: CoapLoadOptions, index: number) {
    this.opts = opts;
    this.path = `${opts.pathPrefix}/${index}`;
    this.tpl = {
      con: postTemplate(CON, this.path, opts.payloadBytes),
      non: postTemplate(NON, this.path, opts.payloadBytes),
    };
    this.w = opts.inflight;
    this.bufs = Array.from({ length: this.w }, () => Buffer.alloc(this.tpl.con.packet.length));
    this.state = new Uint8Array(this.w);
    this.gen = new Uint16Array(this.w);
    this.mids = new Int32Array(this.w).fill(-1);
    this.firstSent = new Float64Array(this.w);
    this.deadline = new Float64Array(this.w);
    this.timeout = new Float64Array(this.w);
    this.retries = new Uint8Array(this.w);
    for (let i = this.w - 1; i >= 0; i--) this.freeList.push(i);
    this.retransmitLimit = { ackTimeoutMs: opts.ackTimeoutMs, maxRetransmit: opts.maxRetransmit };
    // The client's own receive buffer is not where a datagram should drop: 1 MiB (the kernel
    // caps it at net.core.rmem_max). The target's socket keeps its defaults.
    this.socket = createSocket({ type: 'udp4', recvBufferSize: CLIENT_RCVBUF });
    this.socket.on('message', this.onMessage);
    // A connected UDP socket gets ICMP port unreachable as ECONNREFUSED: nothing listens there.
    this.socket.on('error', (err) => this.fail(err));
  }

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.connect(this.opts.port, this.opts.host, () => {
        this.socket.off('error', reject);
        resolve();
      });
    });
  }

  /**
   * Sends `count` messages of `type`, up to the window outstanding; resolves when every one is
   * done or at `deadlineMs` from now (`timedOut`); rejects on a socket error.
   */
  run(
    type: CoapType,
    count: number,
    deadlineMs: number,
    retransmit = this.retransmitLimit,
  ): Promise<{ timedOut: boolean }> {
    this.type = type === 'con' ? CON : NON;
    this.target = count;
    this.ackTimeoutMs = retransmit.ackTimeoutMs;
    this.maxRetransmit = retransmit.maxRetransmit;
    this.resetCounters();
    return new Promise((resolve, reject) => {
      if (this.error) return reject(this.error);
      const stopAt = setTimeout(() => done(undefined, true), deadlineMs);
      const done = (err?: Error, timedOut = false) => {
        clearTimeout(stopAt);
        if (this.timer) clearInterval(this.timer);
        this.timer = null;
        this.finish = null;
        this.abandonAll();
        if (err) reject(err);
        else resolve({ timedOut });
      };
      this.finish = done;
      this.timer = setInterval(this.tick, TICK_MS);
      this.firstSendAt = nowMs();
      this.refill();
    });
  }

  close(): void {
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }

  private resetCounters(): void {
    this.sent = 0;
    this.acked = 0;
    this.retransmits = 0;
    this.failed = 0;
    this.resets = 0;
    this.unanswered = 0;
    this.refused = 0;
    this.stray = 0;
    this.errorCodes = {};
    this.firstSendAt = 0;
    this.lastAckAt = 0;
    this.ack99At = 0;
    this.ack99 = Math.ceil(this.target * 0.99);
    this.latency.reset();
  }

  private fail(err: Error): void {
    this.error ??= err;
    this.finish?.(err);
  }

  /** Sends what the window allows. */
  private refill(): void {
    const tpl = this.type === CON ? this.tpl.con : this.tpl.non;
    const now = nowMs();
    while (this.sent < this.target && this.freeList.length > 0) {
      // A message id still held by an outstanding request (65536 sends ago) is not reused.
      if (this.midToSlot[this.nextMid] >= 0) break;
      const slot = this.freeList.pop()!;
      const buf = this.bufs[slot];
      tpl.packet.copy(buf);
      buf.writeDoubleBE(now, tpl.payloadOffset);
      this.firstSent[slot] = now;
      this.active++;
      this.sent++;
      this.transmit(slot, now);
    }
    if (this.sent === this.target && this.active === 0) this.finish?.();
  }

  /** Sends the slot's message as a new exchange: a message id and a token of its own. */
  private transmit(slot: number, now: number): void {
    const tpl = this.type === CON ? this.tpl.con : this.tpl.non;
    const buf = this.bufs[slot];
    const mid = this.nextMid;
    this.nextMid = (mid + 1) & 0xffff;
    const g = (this.gen[slot] + 1) & 0xffff;
    this.gen[slot] = g;
    buf[tpl.midOffset] = mid >> 8;
    buf[tpl.midOffset + 1] = mid & 0xff;
    buf.writeUInt32BE(((slot << 16) | g) >>> 0, tpl.tokenOffset);
    this.midToSlot[mid] = slot;
    this.mids[slot] = mid;
    this.state[slot] = WAITING;
    this.retries[slot] = 0;
    if (this.type === CON) {
      // §4.2: the initial timeout is random between ACK_TIMEOUT and ACK_TIMEOUT * ACK_RANDOM_FACTOR.
      const t = this.ackTimeoutMs * (1 + Math.random() * (ACK_RANDOM_FACTOR - 1));
      this.timeout[slot] = t;
      this.deadline[slot] = now + t;
    } else {
      this.deadline[slot] = now + this.opts.nonWaitMs;
    }
    this.socket.send(buf);
  }

  private release(slot: number): void {
    const mid = this.mids[slot];
    if (mid >= 0 && this.midToSlot[mid] === slot) this.midToSlot[mid] = -1;
    this.mids[slot] = -1;
    this.state[slot] = FREE;
    this.freeList.push(slot);
    this.active--;
  }

  /** Frees every slot at the end of a run (what was outstanding stays unanswered). */
  private abandonAll(): void {
    for (let s = 0; s < this.w; s++) if (this.state[s] !== FREE) this.release(s);
  }

  private complete(slot: number, code: number, buf: Buffer): void {
    if (code === CODE_SERVICE_UNAVAILABLE) {
      this.refused++;
      const mid = this.mids[slot];
      if (mid >= 0 && this.midToSlot[mid] === slot) this.midToSlot[mid] = -1;
      this.mids[slot] = -1;
      this.state[slot] = HELD;
      this.deadline[slot] = nowMs() + maxAge(buf) * 1000;
      return;
    }
    if (code >> 5 === 2) {
      const at = nowMs();
      this.acked++;
      this.lastAckAt = at;
      if (this.acked === this.ack99) this.ack99At = at;
      const ms = at - this.firstSent[slot];
      this.latency.record(ms > 0.001 ? Math.round(ms * 1000) : 1);
    } else {
      const c = codeString(code);
      this.errorCodes[c] = (this.errorCodes[c] ?? 0) + 1;
    }
    this.release(slot);
  }

  private readonly onMessage = (buf: Buffer): void => {
    const h = parseHeader(buf, this.header);
    if (h === null || this.finish === null) return;
    if (h.type === ACK || h.type === RST) {
      const slot = this.midToSlot[h.mid];
      if (slot < 0 || this.state[slot] !== WAITING) {
        this.stray++;
        return;
      }
      if (h.type === RST) {
        this.resets++;
        this.failed++;
        this.release(slot);
      } else if (h.code === CODE_EMPTY) {
        // §5.2.2: the response comes separately; stop retransmitting, wait for it by token.
        this.state[slot] = SEPARATE;
        this.midToSlot[h.mid] = -1;
        this.deadline[slot] = nowMs() + this.maxTransmitWait();
        return;
      } else {
        this.complete(slot, h.code, buf);
      }
    } else {
      // A separate response (CON or NON), or the response to a NON request.
      if (h.type === CON) this.socket.send(emptyAck(h.mid));
      const slot = h.token >>> 16;
      if (
        h.token < 0 ||
        slot >= this.w ||
        this.state[slot] === FREE ||
        this.gen[slot] !== (h.token & 0xffff)
      ) {
        this.stray++;
        return;
      }
      this.complete(slot, h.code, buf);
    }
    this.refill();
  };

  /** §4.8.2 MAX_TRANSMIT_WAIT: the longest a sender waits for an answer. */
  private maxTransmitWait(): number {
    return this.ackTimeoutMs * (2 ** (this.maxRetransmit + 1) - 1) * ACK_RANDOM_FACTOR;
  }

  private readonly tick = (): void => {
    const now = nowMs();
    let freed = false;
    for (let s = 0; s < this.w; s++) {
      const st = this.state[s];
      if (st === FREE || now < this.deadline[s]) continue;
      if (st === HELD) {
        if (this.midToSlot[this.nextMid] < 0) this.transmit(s, now);
        continue;
      }
      if (st === WAITING && this.type === CON && this.retries[s] < this.maxRetransmit) {
        // §4.2: retransmit the same message, the timeout doubled.
        this.retries[s]++;
        this.retransmits++;
        this.timeout[s] *= 2;
        this.deadline[s] = now + this.timeout[s];
        this.socket.send(this.bufs[s]);
        continue;
      }
      if (this.type === CON) this.failed++;
      else this.unanswered++;
      this.release(s);
      freed = true;
    }
    if (freed) this.refill();
  };
}

/** All clients bound, connected and probed; `go()` runs the load on all of them at once. */
export interface PreparedCoapLoad {
  go(): Promise<CoapLoadResult>;
  abort(): void;
}

export async function prepareCoapLoad(opts: CoapLoadOptions): Promise<PreparedCoapLoad> {
  const clients = Array.from({ length: opts.clients }, (_, i) => new Client(opts, i));
  const abort = () => {
    for (const c of clients) c.close();
  };
  try {
    await Promise.all(clients.map((c) => c.connect()));
    if (opts.probe) await probe(opts, clients);
  } catch (err) {
    abort();
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ECONNREFUSED')
      throw new Error(
        `coap://${opts.host}:${opts.port}: ECONNREFUSED (ICMP port unreachable: nothing listens on that UDP port)`,
      );
    throw err;
  }
  return {
    abort,
    async go() {
      const cpu0 = threadCpuSec();
      try {
        const runs = await Promise.all(clients.map((c) => c.run(opts.type, opts.messages, opts.timeoutMs)));
        return {
          ...summarize(
            opts.type,
            clients,
            runs.some((r) => r.timedOut),
          ),
          cpuSec: threadCpuSec() - cpu0,
        };
      } finally {
        abort();
      }
    },
  };
}

/**
 * One CON POST per client, answered, before anything is measured: a target that does not answer
 * fails here in `probeTimeoutMs` rather than after the run's deadline.
 */
async function probe(opts: CoapLoadOptions, clients: Client[]): Promise<void> {
  const probes = await Promise.all(
    clients.map((c) =>
      c.run('con', 1, opts.probeTimeoutMs, { ackTimeoutMs: PROBE_ACK_TIMEOUT_MS, maxRetransmit: 255 }),
    ),
  );
  const unanswered = clients.filter((c, i) => probes[i].timedOut || c.acked === 0);
  if (unanswered.length > 0) {
    const codes = unanswered.map((c) => JSON.stringify(c.errorCodes)).join(' ');
    throw new Error(
      `no 2.xx answer to a CON POST to coap://${opts.host}:${opts.port}${unanswered[0].path} within ` +
        `${opts.probeTimeoutMs} ms (${unanswered.length} of ${clients.length} clients; error codes ${codes})`,
    );
  }
}

function summarize(type: CoapType, clients: Client[], timedOut: boolean): Omit<CoapLoadResult, 'cpuSec'> {
  const per: CoapClientResult[] = clients.map((c) => ({
    path: c.path,
    sent: c.sent,
    acked: c.acked,
    firstSendAt: c.firstSendAt,
    lastAckAt: c.lastAckAt,
    ack99At: c.ack99At,
    rate: c.lastAckAt > c.firstSendAt ? c.acked / ((c.lastAckAt - c.firstSendAt) / 1000) : 0,
  }));
  const h = createHistogram({ lowest: 1, highest: 3_600_000_000, figures: 3 });
  for (const c of clients) h.add(c.latency);
  const pct = (p: number) => (h.count === 0 ? Number.NaN : h.percentile(p) / 1000);
  const sum = (f: (c: Client) => number) => clients.reduce((s, c) => s + f(c), 0);
  const errorCodes: Record<string, number> = {};
  for (const c of clients)
    for (const [k, v] of Object.entries(c.errorCodes)) errorCodes[k] = (errorCodes[k] ?? 0) + v;
  const startedAt = Math.min(...per.map((c) => c.firstSendAt));
  const endedAt = Math.max(...per.map((c) => c.lastAckAt));
  const acked = sum((c) => c.acked);
  const reached99 = per.every((c) => c.ack99At > 0);
  const at99 = Math.max(...per.map((c) => c.ack99At));
  const n99 = clients.reduce((t, c) => t + Math.ceil(c.sent * 0.99), 0);
  return {
    type,
    sent: sum((c) => c.sent),
    acked,
    retransmits: sum((c) => c.retransmits),
    failed: sum((c) => c.failed),
    resets: sum((c) => c.resets),
    unanswered: sum((c) => c.unanswered),
    refused: sum((c) => c.refused),
    errorCodes,
    stray: sum((c) => c.stray),
    timedOut,
    startedAt,
    endedAt,
    rate: endedAt > startedAt ? acked / ((endedAt - startedAt) / 1000) : 0,
    rate99: reached99 && at99 > startedAt ? n99 / ((at99 - startedAt) / 1000) : Number.NaN,
    perClientRate: per.reduce((s, c) => s + c.rate, 0) / per.length,
    latency: {
      count: h.count,
      p50: pct(50),
      p99: pct(99),
      p999: pct(99.9),
      max: h.count ? h.max / 1000 : Number.NaN,
    },
    clients: per,
  };
}

// ---- worker thread ------------------------------------------------------------------------

/** `prepareCoapLoad` in a worker thread (load-worker.ts): same contract, its own event loop. */
export function prepareCoapLoadInWorker(opts: CoapLoadOptions): Promise<PreparedCoapLoad> {
  return prepareInWorker(new URL('./coap-load-worker.ts', import.meta.url), opts, 'coap load');
}
