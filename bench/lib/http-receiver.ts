// The upstream of a benchmark run: an HTTP server on loopback that accepts the HTTP sink's
// NDJSON batches, counts records and takes each record's end-to-end latency from the send time
// the load generator wrote into the first 8 bytes of the payload. Lines are scanned, not
// JSON-parsed, so the receiver stays cheap next to the daemon it measures.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Consumer, LatencyRecorder } from './consumer.ts';
import { nowMs } from './mqtt-codec.ts';

const SEQ = Buffer.from('"seq":');
const PAYLOAD = Buffer.from('"payload":"');
/** 12 base64 characters decode to 9 bytes: the 8-byte timestamp and one more. */
const TS_B64_CHARS = 12;

export class BenchReceiver implements Consumer {
  port = 0;
  received = 0;
  firstAt = 0;
  lastAt = 0;
  duplicates = 0;
  requests = 0;
  /** Records whose payload carried no readable timestamp. */
  unreadable = 0;
  readonly latency = new LatencyRecorder();
  private lastSeq = 0;
  private server: Server | null = null;

  async start(): Promise<void> {
    const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
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
    this.latency.reset();
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
      if (lineEnd > lineStart) {
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
        }
        const p = body.indexOf(PAYLOAD, lineStart);
        const b64 = p + PAYLOAD.length;
        if (p >= 0 && b64 + TS_B64_CHARS <= lineEnd) {
          const sentAt = Buffer.from(body.toString('latin1', b64, b64 + TS_B64_CHARS), 'base64').readDoubleBE(
            0,
          );
          this.latency.record(at - sentAt);
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
}
