import { readFileSync } from 'node:fs';
import {
  type ChannelCredentials,
  Client,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { SinkSendError } from '../../core/errors.ts';
import type { OutboundBatch, Sink } from '../../core/pipeline.ts';
import { encodePushRequest } from './push-request.ts';

export interface GrpcTlsOptions {
  /** CA bundle to verify the upstream; the system roots when absent. */
  caFile?: string;
  /** Client certificate and key for mTLS. */
  certFile?: string;
  keyFile?: string;
  /** Override the name checked against the server certificate. */
  serverName?: string;
}

export interface GrpcSinkOptions {
  name: string;
  /** host:port of the upstream Ingest service. */
  target: string;
  node: string;
  timeoutMs: number;
  tls?: GrpcTlsOptions;
  /** Extra metadata on every call (e.g. authorization). */
  metadata?: Record<string, string>;
}

const PUSH_PATH = '/edgeferry.v1.Ingest/Push';

/**
 * Codes that a later attempt can succeed after; everything else means the upstream refused the
 * records themselves (dead-letter). CANCELLED is ours (deadline or shutdown), so it retries.
 */
const RETRYABLE = new Set<number>([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.RESOURCE_EXHAUSTED,
  status.ABORTED,
  status.INTERNAL,
  status.UNKNOWN,
  status.CANCELLED,
]);

const identity = (b: Buffer): Buffer => b;

/**
 * Calls `edgeferry.v1.Ingest/Push` with each batch over one long-lived HTTP/2 channel with
 * keepalive pings, so a half-open link (no FIN, no RST) is found within
 * keepalive time + timeout instead of at the next deadline.
 */
export class GrpcSink implements Sink {
  readonly name: string;
  readonly type = 'grpc';
  private readonly client: Client;
  private readonly opts: GrpcSinkOptions;
  private readonly metadata: Metadata;

  constructor(opts: GrpcSinkOptions) {
    this.opts = opts;
    this.name = opts.name;
    const channelOptions: Record<string, number | string> = {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5_000,
    };
    if (opts.tls?.serverName) channelOptions['grpc.ssl_target_name_override'] = opts.tls.serverName;
    this.client = new Client(opts.target, channelCredentials(opts.tls), channelOptions);
    this.metadata = new Metadata();
    for (const [k, v] of Object.entries(opts.metadata ?? {})) this.metadata.set(k, v);
  }

  send(batch: OutboundBatch, signal: AbortSignal): Promise<void> {
    const request = encodePushRequest(this.opts.node, batch);
    return new Promise<void>((resolve, reject) => {
      const call = this.client.makeUnaryRequest<Buffer, Buffer>(
        PUSH_PATH,
        identity,
        identity,
        request,
        this.metadata,
        { deadline: Date.now() + this.opts.timeoutMs },
        (err: ServiceError | null) => {
          signal.removeEventListener('abort', onAbort);
          if (!err) {
            resolve();
            return;
          }
          const retryable = RETRYABLE.has(err.code);
          const what = signal.aborted
            ? String((signal.reason as Error)?.message ?? signal.reason)
            : err.details || err.message;
          reject(
            new SinkSendError(
              `Push to ${this.opts.target}: ${status[err.code] ?? err.code}: ${what}`,
              retryable,
              undefined,
              { cause: err },
            ),
          );
        },
      );
      const onAbort = () => call.cancel();
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

function channelCredentials(tls: GrpcTlsOptions | undefined): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  const read = (f?: string) => (f ? readFileSync(f) : null);
  return credentials.createSsl(read(tls.caFile), read(tls.keyFile), read(tls.certFile));
}
