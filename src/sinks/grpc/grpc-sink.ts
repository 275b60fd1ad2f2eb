import { Client, credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { SinkAuthError, SinkSendError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { OutboundBatch, Sink } from '../../core/pipeline.ts';
import { TlsFileWatcher, type TlsMaterial, type TlsReloadCounters } from '../../core/tls-files.ts';
import { encodePushRequest, pushHeadSize, pushRecordSize } from './push-request.ts';

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
  /**
   * Largest PushRequest to send: a batch bigger than this goes out as several calls. gRPC
   * servers refuse larger messages (4 MiB by default in grpc-js, grpc-go, grpc-java and C++).
   */
  maxMessageBytes: number;
  /** For the line that says the upstream's message limit is lower than `maxMessageBytes`. */
  log?: Logger;
  /** How often the TLS files are checked for new contents (default 10 s). */
  tlsReloadMs?: number;
}

/** gRPC's default receive limit: what an upstream accepts unless it raised it. */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

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

/** The credentials were refused: retried as an auth failure, never dead-lettered. */
const AUTH = new Set<number>([status.UNAUTHENTICATED, status.PERMISSION_DENIED]);

/**
 * A receiver's "message larger than max" (grpc-js and grpc-go: "Received message larger than max
 * (5000000 vs. 4194304)"; C++ alike): RESOURCE_EXHAUSTED that no wait can fix, only a smaller
 * message. The second number is the receiver's limit when it is given.
 */
const TOO_LARGE = /larger than (?:max\b[^\d]*\d+ vs\.? (\d+)|max|(\d+))/i;

/** A Push the receiver refused as too large; `receiverMax` its limit when the details say. */
class MessageTooLargeError extends SinkSendError {
  readonly receiverMax: number | undefined;
  constructor(message: string, receiverMax: number | undefined, options: ErrorOptions) {
    super(message, true, undefined, options);
    this.receiverMax = receiverMax;
  }
}

const identity = (b: Buffer): Buffer => b;

/**
 * Calls `edgeferry.v1.Ingest/Push` with each batch over one long-lived HTTP/2 channel with
 * keepalive pings, so a half-open link (no FIN, no RST) is found within
 * keepalive time + timeout instead of at the next deadline.
 *
 * A batch whose PushRequest would exceed the message limit is split into calls that fit, sent
 * one after the other; a failure after some of them reports those as acknowledged (`acked`), so
 * the dispatcher resends only the rest. An upstream that refuses a call as larger than its
 * maximum lowers the limit (to the maximum it names, or half the call) for this call and all
 * later ones: an oversize request is never sent twice. A single record that cannot fit is
 * refused for good, alone (`refused: 1`).
 */
export class GrpcSink implements Sink {
  readonly name: string;
  readonly type = 'grpc';
  private client: Client;
  /** Calls in flight per channel: a channel replaced by rotated TLS files closes when idle. */
  private readonly calls = new Map<Client, number>();
  private readonly channelOptions: Record<string, number | string>;
  private readonly tls: TlsFileWatcher | null = null;
  private readonly opts: GrpcSinkOptions;
  private readonly metadata: Metadata;
  private readonly headBytes: number;
  /** maxMessageBytes, or lower once the upstream said its limit is. */
  private limit: number;

  constructor(opts: GrpcSinkOptions) {
    this.opts = opts;
    this.name = opts.name;
    const channelOptions: Record<string, number | string> = {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_send_message_length': opts.maxMessageBytes,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5_000,
    };
    if (opts.tls?.serverName) channelOptions['grpc.ssl_target_name_override'] = opts.tls.serverName;
    this.channelOptions = channelOptions;
    const tls = opts.tls;
    if (tls && (tls.caFile || tls.certFile)) {
      this.tls = new TlsFileWatcher(tls, `grpc sink ${opts.name}`, opts.log ?? SILENT, this.rotate);
      this.tls.start(opts.tlsReloadMs);
    }
    this.client = this.newClient(this.tls?.current);
    this.metadata = new Metadata();
    for (const [k, v] of Object.entries(opts.metadata ?? {})) this.metadata.set(k, v);
    this.headBytes = pushHeadSize(opts.node);
    this.limit = opts.maxMessageBytes;
  }

  /** New TLS files taken into use and refused since start. */
  get tlsReloads(): TlsReloadCounters | null {
    return this.tls?.counters ?? null;
  }

  private newClient(m: TlsMaterial | undefined): Client {
    const creds = this.opts.tls
      ? credentials.createSsl(m?.ca ?? null, m?.key ?? null, m?.cert ?? null)
      : credentials.createInsecure();
    return new Client(this.opts.target, creds, this.channelOptions);
  }

  /**
   * New TLS files: the next call opens a new channel with them (an upstream that checks the
   * client certificate sees the new one at once); calls in flight finish on the old channel,
   * closed once they have.
   */
  private readonly rotate = (m: TlsMaterial): void => {
    const old = this.client;
    this.client = this.newClient(m);
    if (!this.calls.has(old)) old.close();
  };

  private callDone(client: Client): void {
    const n = (this.calls.get(client) ?? 1) - 1;
    if (n > 0) {
      this.calls.set(client, n);
      return;
    }
    this.calls.delete(client);
    if (client !== this.client) client.close();
  }

  /** The message limit in use: maxMessageBytes, or the upstream's when it proved lower. */
  get messageLimit(): number {
    return this.limit;
  }

  async send(batch: OutboundBatch, signal: AbortSignal): Promise<void> {
    const records = batch.records;
    const epochBytes = Buffer.byteLength(batch.epoch);
    let from = 0;
    while (from < records.length) {
      const limit = this.limit;
      let size = this.headBytes;
      let to = from;
      for (; to < records.length; to++) {
        const r = records[to];
        const add = pushRecordSize(epochBytes, r.seq, r.body.length);
        if (size + add > limit) {
          if (to === from) {
            throw new SinkSendError(
              `Push to ${this.opts.target}: record ${r.seq} makes a ${size + add}-byte request, over the ` +
                `upstream's message limit of ${limit} bytes (maxMessageBytes ${this.opts.maxMessageBytes}): it cannot be sent`,
              false,
              undefined,
              { acked: from, refused: 1 },
            );
          }
          break;
        }
        size += add;
      }
      try {
        await this.push(encodePushRequest(this.opts.node, batch, from, to), signal, from, to - from);
      } catch (err) {
        if (!(err instanceof MessageTooLargeError) || signal.aborted) throw err;
        const max = err.receiverMax;
        this.limit = Math.min(this.limit, max !== undefined && max < size ? max : Math.floor(size / 2));
        this.opts.log?.warn(
          { sink: this.name, refusedBytes: size, limit: this.limit, err: err.message },
          'upstream refused a Push as too large: lowered the message limit and split the batch',
        );
        continue;
      }
      from = to;
    }
  }

  /**
   * One Push call of `count` records; `acked` records of the batch went through before it (for
   * its error). A final refusal concerns this call's records only: the calls after it still go.
   */
  private push(request: Buffer, signal: AbortSignal, acked: number, count: number): Promise<void> {
    const client = this.client;
    this.calls.set(client, (this.calls.get(client) ?? 0) + 1);
    return new Promise<void>((resolve, reject) => {
      const call = client.makeUnaryRequest<Buffer, Buffer>(
        PUSH_PATH,
        identity,
        identity,
        request,
        this.metadata,
        { deadline: Date.now() + this.opts.timeoutMs },
        (err: ServiceError | null) => {
          signal.removeEventListener('abort', onAbort);
          this.callDone(client);
          if (!err) {
            resolve();
            return;
          }
          const what = signal.aborted
            ? String((signal.reason as Error)?.message ?? signal.reason)
            : err.details || err.message;
          const message = `Push to ${this.opts.target}: ${status[err.code] ?? err.code}: ${what}`;
          const options = { cause: err, acked };
          if (AUTH.has(err.code)) {
            reject(new SinkAuthError(message, options));
            return;
          }
          const tooLarge = err.code === status.RESOURCE_EXHAUSTED ? TOO_LARGE.exec(err.details ?? '') : null;
          if (tooLarge && !signal.aborted) {
            const max = tooLarge[1] ?? tooLarge[2];
            reject(new MessageTooLargeError(message, max ? Number(max) : undefined, options));
            return;
          }
          const retryable = RETRYABLE.has(err.code);
          reject(
            new SinkSendError(
              message,
              retryable,
              undefined,
              retryable ? options : { ...options, refused: count },
            ),
          );
        },
      );
      const onAbort = () => call.cancel();
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async close(): Promise<void> {
    this.tls?.stop();
    for (const c of this.calls.keys()) c.close();
    this.client.close();
  }
}

const SILENT: Logger = { debug() {}, info() {}, warn() {}, error() {} };
