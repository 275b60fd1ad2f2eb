// The Gateway gRPC server in this process, on a real Journal in a temporary directory, with a
// real grpc-js client on 127.0.0.1: for tests that need to place records or move the journal's
// ends directly (topics a device may not publish, trims at a chosen moment).

import http2 from 'node:http2';
import { join } from 'node:path';
import { status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { GatewayGrpcServer, type GrpcServerOptions } from '../../src/api/grpc/gateway-server.ts';
import { loadService } from '../../src/api/grpc/proto.ts';
import type { Logger } from '../../src/core/logger.ts';
import { Journal, type JournalOptions } from '../../src/journal/journal.ts';
import { tempDir } from '../helpers/daemon.ts';
import { type GatewayClient, gatewayClient, type StreamedRecord } from './grpc-client.ts';

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

/** A Logger that keeps its lines, for assertions on what was logged. */
export function memoryLog(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (obj: object, msg: string) => lines.push({ ...obj, level, msg });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export interface InProcessGateway {
  journal: Journal;
  server: GatewayGrpcServer;
  client: GatewayClient;
  log: ReturnType<typeof memoryLog>;
  /** Appends one record and resolves with its seq once committed (rejects if refused). */
  append(topic: string, payload?: string): Promise<number>;
  close(): Promise<void>;
}

export async function inProcessGateway(
  journalOpts: Partial<JournalOptions> = {},
  grpcOpts: Partial<GrpcServerOptions> = {},
): Promise<InProcessGateway> {
  const log = memoryLog();
  const journal = await Journal.open(
    {
      path: join(tempDir(), 'journal'),
      maxBytes: 1 << 30,
      onFull: 'drop-oldest',
      fsync: false,
      groupCommit: { maxRecords: 256, maxDelayMs: 0 },
      lockWaitMs: 0,
      ...journalOpts,
    },
    log,
  );
  const server = new GatewayGrpcServer({ host: '127.0.0.1', port: 0, ...grpcOpts }, log);
  await server.start();
  server.attach(journal, null);
  server.setServing(true);
  const client = gatewayClient(`127.0.0.1:${server.addresses().port}`);
  return {
    journal,
    server,
    client,
    log,
    append: (topic, payload = topic) =>
      new Promise<number>((resolve, reject) =>
        journal.append(
          { ts: Date.now(), source: 'test', device: 'd', topic, payload: Buffer.from(payload) },
          (err, seq) => (err ? reject(err) : resolve(seq)),
          null,
        ),
      ),
    async close() {
      client.close();
      await server.stop(500);
      await journal.close();
    },
  };
}

/** A message of a Subscribe stream as the published .proto decodes it (a record or a gap). */
export interface StreamMessage extends StreamedRecord {
  gap: { fromSeq: number; toSeq: number; reason: string } | null;
}

export interface Sub {
  stream: GatewayClient;
  messages: StreamMessage[];
  /** The records only (messages without a gap). */
  records(): StreamMessage[];
  error: ServiceError | null;
  ended: boolean;
}

export function subscribe(client: GatewayClient, req: object): Sub {
  const stream = client.Subscribe(req);
  const sub: Sub = {
    stream,
    messages: [],
    records: () => sub.messages.filter((m) => !m.gap),
    error: null,
    ended: false,
  };
  stream.on('data', (m: StreamMessage) => sub.messages.push(m));
  stream.on('error', (e: ServiceError) => {
    sub.error = e;
  });
  stream.on('status', (s: { code: number }) => {
    if (s.code === grpcStatus.OK) sub.ended = true;
  });
  return sub;
}

/** A unary call as a promise; rejects with the ServiceError. */
export function unary<T>(c: GatewayClient, method: string, req: object, deadlineMs = 10_000): Promise<T> {
  return new Promise<T>((resolve, reject) =>
    c[method](req, { deadline: Date.now() + deadlineMs }, (err: ServiceError | null, res: T) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

const gatewayService = loadService('edgeferry/v1/gateway.proto', 'Gateway');

export interface RawSub {
  messages: StreamMessage[];
  /** Response bytes the client holds but has not read. */
  buffered(): number;
  /** Starts reading (and so granting HTTP/2 flow-control window). */
  read(): void;
  close(): void;
}

/**
 * Subscribe over a bare HTTP/2 stream paused before any data arrives, so it grants no
 * flow-control window until `read()`: the server writes about one window (64 KiB) and waits.
 * (A paused grpc-js stream keeps draining the HTTP/2 stream into its own buffers.)
 */
export function rawSubscribe(port: number, req: object): RawSub {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  const stream = session.request({
    ':method': 'POST',
    ':path': '/edgeferry.v1.Gateway/Subscribe',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('error', () => {});
  stream.pause();
  const msg = gatewayService.Subscribe.requestSerialize(req);
  const frame = Buffer.alloc(5 + msg.length);
  frame.writeUInt32BE(msg.length, 1);
  msg.copy(frame, 5);
  stream.end(frame);
  const messages: StreamMessage[] = [];
  let pending: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    pending = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
    // gRPC length-prefixed messages: 1 byte compressed flag, 4 bytes length.
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const len = pending.readUInt32BE(1);
      messages.push(gatewayService.Subscribe.responseDeserialize(pending.subarray(5, 5 + len)));
      pending = pending.subarray(5 + len);
    }
  };
  return {
    messages,
    buffered: () => stream.readableLength,
    read() {
      stream.on('data', onData);
      stream.resume();
    },
    close() {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      session.destroy();
    },
  };
}
