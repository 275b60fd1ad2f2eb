import { createRequire } from 'node:module';
import type {
  Dispatcher,
  buildConnector as UndiciBuildConnector,
  errors as UndiciErrors,
  Pool as UndiciPool,
} from 'undici';
import { SinkAuthError, SinkSendError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { OutboundBatch, Sink } from '../../core/pipeline.ts';
import { recordId } from '../../core/record.ts';
import {
  type TlsFiles,
  TlsFileWatcher,
  type TlsMaterial,
  type TlsReloadCounters,
} from '../../core/tls-files.ts';
import { encodeNdjson, type PayloadEncoding } from './ndjson.ts';
import { resettingConnector } from './reset-on-abort.ts';

// The pool and the error classes, not the package entry: that one loads all of undici (fetch,
// WebSocket, EventSource, cache stores with node:sqlite) for a sink that uses none of them,
// about 5 MB of the daemon's idle RSS (bench/tools/idle-rss.ts). undici has no exports map,
// and the tests exercise every path of this sink against a real server, so a move of these
// files in an undici upgrade fails loudly.
const load = createRequire(import.meta.url);
const Pool: typeof UndiciPool = load('undici/lib/dispatcher/pool.js');
const errors: typeof UndiciErrors = load('undici/lib/core/errors.js');
const buildConnector: typeof UndiciBuildConnector = load('undici/lib/core/connect.js');

export interface HttpSinkOptions {
  name: string;
  url: string;
  headers?: Record<string, string>;
  payloadEncoding: PayloadEncoding;
  timeoutMs: number;
  /** The upstream's CA, a client certificate for mTLS, the name to check. */
  tls?: TlsFiles & { serverName?: string };
  /** For TLS reloads and refusals. */
  log?: Logger;
  /** How often the TLS files are checked for new contents (default 10 s). */
  tlsReloadMs?: number;
}

const ERROR_BODY_LIMIT = 512;

/**
 * POSTs each batch as NDJSON to one URL over a keep-alive undici pool. Status classes follow
 * what retrying can fix: 2xx delivered; 408, 429 and 5xx (and network errors, timeouts) retry;
 * 401 and 403 retry too, as auth failures (a token that expired is renewed outside the gateway);
 * any other status is final and the dispatcher dead-letters the batch.
 */
export class HttpSink implements Sink {
  readonly name: string;
  readonly type = 'http';
  private pool: UndiciPool;
  private readonly origin: string;
  private readonly path: string;
  private readonly opts: HttpSinkOptions;
  private readonly tls: TlsFileWatcher | null = null;

  constructor(opts: HttpSinkOptions) {
    this.opts = opts;
    this.name = opts.name;
    const url = new URL(opts.url);
    this.origin = url.origin;
    this.path = `${url.pathname}${url.search}`;
    const tls = opts.tls;
    if (tls && (tls.caFile || tls.certFile)) {
      this.tls = new TlsFileWatcher(tls, `http sink ${opts.name}`, opts.log ?? SILENT, this.rotate);
      this.tls.start(opts.tlsReloadMs);
    }
    this.pool = this.newPool(this.tls?.current);
  }

  /** New TLS files taken into use and refused since start. */
  get tlsReloads(): TlsReloadCounters | null {
    return this.tls?.counters ?? null;
  }

  private newPool(m: TlsMaterial | undefined): UndiciPool {
    const timeoutMs = this.opts.timeoutMs;
    const serverName = this.opts.tls?.serverName;
    return new Pool(this.origin, {
      connections: 2,
      keepAliveTimeout: 30_000,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      connect: resettingConnector(
        buildConnector({
          timeout: Math.min(timeoutMs, 10_000),
          ...(m || serverName ? { ca: m?.ca, cert: m?.cert, key: m?.key, servername: serverName } : {}),
        }),
      ),
    });
  }

  /**
   * New TLS files: later POSTs go through a new pool whose connections use them; the old pool
   * finishes the requests it holds (undici's close waits for them), then closes its sockets.
   */
  private readonly rotate = (m: TlsMaterial): void => {
    const old = this.pool;
    this.pool = this.newPool(m);
    old.close().catch(() => {});
  };

  send(batch: OutboundBatch, signal: AbortSignal): Promise<void> {
    const body = encodeNdjson(batch, this.opts.payloadEncoding);
    const first = batch.records[0].seq;
    const last = batch.records[batch.records.length - 1].seq;
    return new Promise((resolve, reject) => {
      // dispatch(), not request(): no response stream to drain, one handler object per batch.
      this.pool.dispatch(
        {
          path: this.path,
          method: 'POST',
          headers: {
            ...this.opts.headers,
            'content-type': 'application/x-ndjson',
            'idempotency-key': `${recordId(batch.epoch, first)}..${recordId(batch.epoch, last)}`,
          },
          body,
        },
        new PostHandler(this.opts.url, signal, resolve, reject),
      );
    });
  }

  async close(): Promise<void> {
    this.tls?.stop();
    await this.pool.close();
  }
}

const SILENT: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * One POST's outcome: 2xx resolves; any other final status rejects with its class (retryable or
 * not, Retry-After) and the start of the body; a network error, a timeout or the dispatcher's
 * deadline (the abort signal) rejects as retryable. Settles once.
 */
class PostHandler implements Dispatcher.DispatchHandler {
  private status = 0;
  private retryAfter: string | string[] | undefined;
  private text = '';
  private controller: Dispatcher.DispatchController | null = null;
  private settled = false;
  private readonly url: string;
  private readonly signal: AbortSignal;
  private readonly resolve: () => void;
  private readonly reject: (err: Error) => void;

  constructor(url: string, signal: AbortSignal, resolve: () => void, reject: (err: Error) => void) {
    this.url = url;
    this.signal = signal;
    this.resolve = resolve;
    this.reject = reject;
    if (signal.aborted) this.onAbort();
    else signal.addEventListener('abort', this.onAbort, { once: true });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.settled) controller.abort(this.signal.reason as Error);
  }

  onResponseStart(
    _c: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    // 1xx informational responses come before the final one.
    if (statusCode < 200) return;
    this.status = statusCode;
    this.retryAfter = headers['retry-after'];
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    if ((this.status < 200 || this.status >= 300) && this.text.length < ERROR_BODY_LIMIT) {
      this.text += chunk.toString('utf8', 0, Math.min(chunk.length, ERROR_BODY_LIMIT));
    }
  }

  onResponseEnd(): void {
    const status = this.status;
    if (status >= 200 && status < 300) {
      this.settle(null);
      return;
    }
    const text = this.text.slice(0, ERROR_BODY_LIMIT).trim();
    const what = `POST ${this.url}: HTTP ${status}${text ? `: ${text}` : ''}`;
    // An expired or revoked credential is fixed outside the gateway, not by dead-lettering.
    if (status === 401 || status === 403) {
      this.settle(new SinkAuthError(what));
      return;
    }
    // No final status at all (a response cut short) is a transport failure: retry.
    const retryable = status < 200 || status === 408 || status === 429 || status >= 500;
    const retryAfter = retryable ? parseRetryAfter(this.retryAfter) : undefined;
    this.settle(new SinkSendError(what, retryable, retryAfter));
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.settle(
      new SinkSendError(`POST ${this.url}: ${describe(err, this.signal)}`, true, undefined, { cause: err }),
    );
  }

  private readonly onAbort = (): void => {
    // A request still queued in the pool has no controller yet: settle now, abort it on start.
    this.controller?.abort(this.signal.reason as Error);
    this.settle(
      new SinkSendError(`POST ${this.url}: ${describe(this.signal.reason, this.signal)}`, true, undefined, {
        cause: this.signal.reason,
      }),
    );
  };

  private settle(err: Error | null): void {
    if (this.settled) return;
    this.settled = true;
    this.signal.removeEventListener('abort', this.onAbort);
    if (err) this.reject(err);
    else this.resolve();
  }
}

function describe(err: unknown, signal: AbortSignal): string {
  if (signal.aborted) return String((signal.reason as Error)?.message ?? signal.reason);
  if (err instanceof errors.UndiciError) return `${err.code}: ${err.message}`;
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}: ${e.message}` : e.message;
}

/** Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  if (/^\d+$/.test(s.trim())) return Number(s.trim()) * 1000;
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
