// The reference upstream: implements edgeferry.v1.Ingest from the published .proto (decoding
// with @grpc/proto-loader, as any upstream would), stores nothing, counts and checks order.
// Used by the tests and the benchmark; run alone with
//   node bench/receivers/grpc-ingest-receiver.ts [--port 9001] [--host 127.0.0.1]

import type { EventEmitter } from 'node:events';
import type { Http2Session } from 'node:http2';
import { parseArgs } from 'node:util';
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData, status } from '@grpc/grpc-js';
import { loadService } from '../../src/api/grpc/proto.ts';

export interface IngestedRecord {
  seq: number;
  id: string;
  ts: number;
  source: string;
  device: string;
  topic: string;
  payload: Buffer;
  contentType: string;
  attributes: Record<string, string>;
}

interface PushRequest {
  node: string;
  records: IngestedRecord[];
}

export interface GrpcIngestReceiverOptions {
  host?: string;
  port?: number;
  /** Keep every record (tests); a benchmark only counts. */
  keep?: boolean;
  /** Called with each record as it arrives (latency measurement). */
  onRecord?: (r: IngestedRecord, receivedAt: number) => void;
}

export class GrpcIngestReceiver {
  readonly records: IngestedRecord[] = [];
  /** Records accepted, duplicates included. */
  received = 0;
  /** Records whose id was seen before (at-least-once redelivery). */
  duplicates = 0;
  /** Records that arrived with a seq lower than one already seen and were not duplicates. */
  outOfOrder = 0;
  pushes = 0;
  /** Calls that reached the server, also those refused before the handler (a message over its limit). */
  calls = 0;
  /**
   * Decides each call's outcome: OK, a gRPC status code to fail it with, or null to leave it
   * unanswered (a hung upstream: the caller's deadline or stop() ends it).
   */
  respond: (req: PushRequest) => status | null = () => status.OK;
  port = 0;
  private server: Server | null = null;
  private readonly seen = new Set<string>();
  private readonly lastSeqByEpoch = new Map<string, number>();
  private readonly opts: GrpcIngestReceiverOptions;

  constructor(opts: GrpcIngestReceiverOptions = {}) {
    this.opts = opts;
  }

  get target(): string {
    return `${this.opts.host ?? '127.0.0.1'}:${this.port}`;
  }

  async start(port = this.opts.port ?? this.port): Promise<void> {
    const server = new Server();
    server.addService(loadService('edgeferry/v1/ingest.proto', 'Ingest'), { Push: this.push });
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        `${this.opts.host ?? '127.0.0.1'}:${port}`,
        ServerCredentials.createInsecure(),
        (err, p) => (err ? reject(err) : resolve(p)),
      ),
    );
    this.server = server;
    widenFlowControlWindows(server);
    for (const h2 of http2ServersOf(server)) {
      h2.on('session', (session: Http2Session) => session.on('stream', this.onStream));
    }
  }

  private readonly onStream = (): void => {
    this.calls++;
  };

  /** Stops at once, dropping connections (the upstream goes away). */
  async stop(): Promise<void> {
    this.server?.forceShutdown();
    this.server = null;
  }

  private readonly push = (call: ServerUnaryCall<PushRequest, object>, cb: sendUnaryData<object>): void => {
    this.pushes++;
    const code = this.respond(call.request);
    if (code === null) return;
    if (code !== status.OK) {
      cb(
        Object.assign(new Error('refused by the test receiver'), {
          code,
          details: `refused with ${status[code]}`,
        }),
      );
      return;
    }
    const now = Date.now();
    for (const r of call.request.records) {
      this.received++;
      if (this.seen.has(r.id)) {
        this.duplicates++;
        continue;
      }
      this.seen.add(r.id);
      const epoch = r.id.slice(0, r.id.lastIndexOf('-'));
      const last = this.lastSeqByEpoch.get(epoch) ?? 0;
      if (r.seq < last) this.outOfOrder++;
      this.lastSeqByEpoch.set(epoch, Math.max(last, r.seq));
      if (this.opts.keep !== false) this.records.push(r);
      this.opts.onRecord?.(r, now);
    }
    cb(null, {});
  };
}

/**
 * HTTP/2 starts every stream and connection with a 64 KiB receive window, so a Push of a full
 * batch (about 230 KB for 1000 records of 200 B) waits for several WINDOW_UPDATE round trips,
 * each needing a turn of both event loops: measured in `grpc-sink`, delivery fell from 0.95x
 * to 0.68x of the HTTP sink's and p50 from 64 ms to 1.3 s. grpc-js offers no server option for
 * it, so the sessions of its HTTP/2 servers are widened as they open (a receiver's choice,
 * not the sink's: the advice for upstream implementers in the README).
 */
function widenFlowControlWindows(server: Server): void {
  for (const h2 of http2ServersOf(server)) {
    h2.on('session', (session: Http2Session) => {
      session.setLocalWindowSize(16 * 1024 * 1024);
      session.settings({ initialWindowSize: 4 * 1024 * 1024 });
    });
  }
}

/** grpc-js keeps its node:http2 servers private; the receiver reaches in for what it has no option for. */
function http2ServersOf(server: Server): Iterable<EventEmitter> {
  const internals = server as unknown as { http2Servers?: Map<EventEmitter, unknown> };
  return internals.http2Servers?.keys() ?? [];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { port: { type: 'string', default: '9001' }, host: { type: 'string', default: '127.0.0.1' } },
  });
  const rx = new GrpcIngestReceiver({ host: values.host, port: Number(values.port), keep: false });
  await rx.start();
  console.log(`ingest receiver on ${rx.target}`);
  setInterval(
    () =>
      console.log(
        JSON.stringify({ received: rx.received, duplicates: rx.duplicates, outOfOrder: rx.outOfOrder }),
      ),
    5000,
  ).unref();
  process.on('SIGINT', () => process.exit(0));
  setInterval(() => {}, 1 << 30);
}
