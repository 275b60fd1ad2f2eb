// A real HTTP upstream on loopback that records every NDJSON batch it accepts. Its answer can
// be switched (status code, Retry-After, no answer at all), and it can be stopped and restarted
// on the same port.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface ReceivedRecord {
  id: string;
  seq: number;
  ts: number;
  source: string;
  device: string;
  topic: string;
  contentType: string;
  payload: string;
}

export interface ReceivedBatch {
  headers: IncomingMessage['headers'];
  records: ReceivedRecord[];
  /** Body bytes received. */
  bytes: number;
}

export class HttpReceiver {
  port = 0;
  readonly batches: ReceivedBatch[] = [];
  /** Every record of every accepted (2xx) batch, in arrival order. */
  readonly records: ReceivedRecord[] = [];
  /**
   * Decides the answer to each batch: a status (and headers), or null to leave the request
   * unanswered (a hung upstream: the client's deadline or stop() ends it).
   */
  respond: (batch: ReceivedBatch) => { status: number; headers?: Record<string, string> } | null = () => ({
    status: 200,
  });
  requests = 0;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  async start(port = this.port): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/ingest`;
  }

  /** Closes the listener and every open connection (the upstream goes away). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      this.requests++;
      const body = Buffer.concat(chunks);
      const text = body.toString('utf8');
      const records = text
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as ReceivedRecord);
      const batch = { headers: req.headers, records, bytes: body.length };
      const answer = this.respond(batch);
      if (answer === null) return;
      if (answer.status >= 200 && answer.status < 300) {
        this.batches.push(batch);
        for (const r of records) this.records.push(r);
      }
      res.writeHead(answer.status, { 'content-type': 'text/plain', ...answer.headers });
      res.end(answer.status >= 400 ? `refused with ${answer.status}\n` : 'ok\n');
    });
  }
}

/** Seqs must be strictly increasing apart from whole-batch redeliveries; returns the distinct ones. */
export function distinctSeqs(records: ReceivedRecord[]): number[] {
  return [...new Set(records.map((r) => r.seq))].sort((a, b) => a - b);
}
