// The upstream of a benchmark run: an HTTP server on loopback that accepts the HTTP sink's
// NDJSON batches, counts records and takes each record's end-to-end latency from the send time
// the load generator wrote into the first 8 bytes of the payload. Lines are scanned, not
// JSON-parsed, so the receiver stays cheap next to the daemon it measures.
//
// For outage scenarios it can go down (stop listening, so connections are refused, or answer
// 503) and come back on the same port, and it can count distinct seqs (one bit each), so
// "every record arrived" and "how many twice" are checked exactly.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Consumer, LatencyRecorder } from './consumer.ts';
import { nowMs } from './mqtt-codec.ts';

const SEQ = Buffer.from('"seq":');
const PAYLOAD = Buffer.from('"payload":"');
const TOPIC = Buffer.from('"topic":"');
/** 12 base64 characters decode to 9 bytes: the 8-byte timestamp and one more. */
const TS_B64_CHARS = 12;

/** How the receiver is unavailable: not listening (connection refused) or answering 503. */
export type OutageMode = 'refuse' | '503';

export interface BenchReceiverOptions {
  /** Keep one bit per seq seen, to count distinct records and redeliveries exactly. */
  trackUnique?: boolean;
  /** Called for every record with a readable send time (absolute ms) and its arrival time. */
  onRecord?: (sentAt: number, at: number) => void;
  /**
   * Records of other sources sharing the sink (e.g. Modbus polls beside the MQTT load): lines
   * whose topic starts with `divert.topicPrefix` go to `divert.line` and are not counted, checked
   * or timed here. Without it every line is the load's.
   */
  divert?: DivertedRecords;
}

/** Where a receiver hands the NDJSON lines of the topics it diverts. */
export interface DivertedRecords {
  readonly topicPrefix: string;
  /** One NDJSON line (no newline); `at` = arrival (nowMs) of its request. */
  line(line: Buffer, at: number): void;
  /** With the receiver's reset (after a warm-up). */
  reset(): void;
}

/** A bitset over seqs that grows as needed. */
class SeqSet {
  private bits = new Uint8Array(1 << 16);

  /** Adds `seq`; false when it was already there. */
  add(seq: number): boolean {
    const byte = seq >>> 3;
    if (byte >= this.bits.length) {
      let n = this.bits.length;
      while (n <= byte) n *= 2;
      const grown = new Uint8Array(n);
      grown.set(this.bits);
      this.bits = grown;
    }
    const mask = 1 << (seq & 7);
    if (this.bits[byte] & mask) return false;
    this.bits[byte] |= mask;
    return true;
  }
}

export class BenchReceiver implements Consumer {
  port = 0;
  received = 0;
  firstAt = 0;
  lastAt = 0;
  duplicates = 0;
  requests = 0;
  /** Records whose payload carried no readable timestamp. */
  unreadable = 0;
  /** With `trackUnique`: records whose seq was new, and those seen before (redeliveries). */
  unique = 0;
  redelivered = 0;
  /** Requests answered 503 while down in '503' mode. */
  refusedRequests = 0;
  /** Lines handed to `divert` since the last reset. */
  diverted = 0;
  readonly latency = new LatencyRecorder();
  private lastSeq = 0;
  private server: Server | null = null;
  private down: OutageMode | null = null;
  private readonly seqs: SeqSet | null;
  private readonly onRecord: ((sentAt: number, at: number) => void) | null;
  private readonly divert: DivertedRecords | null;
  private readonly divertPrefix: Buffer;

  constructor(opts: BenchReceiverOptions = {}) {
    this.seqs = opts.trackUnique ? new SeqSet() : null;
    this.onRecord = opts.onRecord ?? null;
    this.divert = opts.divert ?? null;
    this.divertPrefix = Buffer.from(opts.divert?.topicPrefix ?? '');
  }

  /** Listens on `port` (0: any free one, the first time). */
  async start(port = 0): Promise<void> {
    const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /**
   * The upstream goes away: 'refuse' closes the listener and every connection (the sink gets
   * ECONNRESET, then ECONNREFUSED), '503' keeps listening and answers 503 to every batch.
   */
  async goDown(mode: OutageMode): Promise<void> {
    this.down = mode;
    if (mode === 'refuse') await this.close();
  }

  /** With `trackUnique`: resolves true once `n` distinct records arrived, false after `timeoutMs`. */
  async waitForUnique(n: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.unique < n) {
      if (Date.now() > deadline) return false;
      await sleep(20);
    }
    return true;
  }

  /** Back (on the same port), accepting batches again. */
  async comeUp(): Promise<void> {
    if (this.down === 'refuse') await this.start(this.port);
    this.down = null;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/ingest`;
  }

  /** Forgets counts and latencies (after a warm-up); the seq check carries on. */
  reset(): void {
    this.received = 0;
    this.firstAt = 0;
    this.lastAt = 0;
    this.duplicates = 0;
    this.requests = 0;
    this.unreadable = 0;
    this.unique = 0;
    this.redelivered = 0;
    this.refusedRequests = 0;
    this.diverted = 0;
    this.latency.reset();
    this.divert?.reset();
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (this.down === '503') {
        this.refusedRequests++;
        res.writeHead(503, { 'content-type': 'text/plain', 'content-length': 5 });
        res.end('down\n');
        return;
      }
      const at = nowMs();
      this.requests++;
      this.consume(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks), at);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
      res.end('ok\n');
    });
  }

  private consume(body: Buffer, at: number): void {
    let lineStart = 0;
    let n = 0;
    while (lineStart < body.length) {
      let lineEnd = body.indexOf(10, lineStart);
      if (lineEnd < 0) lineEnd = body.length;
      if (lineEnd > lineStart && this.divert && this.diverts(body, lineStart, lineEnd)) {
        this.diverted++;
        this.divert.line(body.subarray(lineStart, lineEnd), at);
      } else if (lineEnd > lineStart) {
        n++;
        const s = body.indexOf(SEQ, lineStart);
        if (s >= 0 && s < lineEnd) {
          let seq = 0;
          for (let i = s + SEQ.length; i < lineEnd; i++) {
            const d = body[i] - 48;
            if (d < 0 || d > 9) break;
            seq = seq * 10 + d;
          }
          if (seq <= this.lastSeq) this.duplicates++;
          else this.lastSeq = seq;
          if (this.seqs) {
            if (this.seqs.add(seq)) this.unique++;
            else this.redelivered++;
          }
        }
        const p = body.indexOf(PAYLOAD, lineStart);
        const b64 = p + PAYLOAD.length;
        if (p >= 0 && b64 + TS_B64_CHARS <= lineEnd) {
          const sentAt = Buffer.from(body.toString('latin1', b64, b64 + TS_B64_CHARS), 'base64').readDoubleBE(
            0,
          );
          this.latency.record(at - sentAt);
          this.onRecord?.(sentAt, at);
        } else {
          this.unreadable++;
        }
      }
      lineStart = lineEnd + 1;
    }
    if (n === 0) return;
    if (this.received === 0) this.firstAt = at;
    this.received += n;
    this.lastAt = at;
  }

  /** Does the line's topic start with the diverted prefix? */
  private diverts(body: Buffer, lineStart: number, lineEnd: number): boolean {
    const t = body.indexOf(TOPIC, lineStart);
    if (t < 0 || t >= lineEnd) return false;
    const from = t + TOPIC.length;
    const to = from + this.divertPrefix.length;
    return to <= lineEnd && body.compare(this.divertPrefix, 0, this.divertPrefix.length, from, to) === 0;
  }
}
