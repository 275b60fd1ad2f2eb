import { errors, Pool } from 'undici';
import { SinkSendError } from '../../core/errors.ts';
import type { OutboundBatch, Sink } from '../../core/pipeline.ts';
import { recordId } from '../../core/record.ts';
import { encodeNdjson, type PayloadEncoding } from './ndjson.ts';

export interface HttpSinkOptions {
  name: string;
  url: string;
  headers?: Record<string, string>;
  payloadEncoding: PayloadEncoding;
  timeoutMs: number;
}

const ERROR_BODY_LIMIT = 512;

/**
 * POSTs each batch as NDJSON to one URL over a keep-alive undici pool. Status classes follow
 * what retrying can fix: 2xx delivered; 408, 429 and 5xx (and network errors, timeouts) retry;
 * any other status is final and the dispatcher dead-letters the batch.
 */
export class HttpSink implements Sink {
  readonly name: string;
  readonly type = 'http';
  private readonly pool: Pool;
  private readonly path: string;
  private readonly opts: HttpSinkOptions;

  constructor(opts: HttpSinkOptions) {
    this.opts = opts;
    this.name = opts.name;
    const url = new URL(opts.url);
    this.path = `${url.pathname}${url.search}`;
    this.pool = new Pool(url.origin, {
      connections: 2,
      keepAliveTimeout: 30_000,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      connectTimeout: Math.min(opts.timeoutMs, 10_000),
    });
  }

  async send(batch: OutboundBatch, signal: AbortSignal): Promise<void> {
    const body = encodeNdjson(batch, this.opts.payloadEncoding);
    const first = batch.records[0].seq;
    const last = batch.records[batch.records.length - 1].seq;
    let res: Awaited<ReturnType<Pool['request']>>;
    try {
      res = await this.pool.request({
        path: this.path,
        method: 'POST',
        headers: {
          ...this.opts.headers,
          'content-type': 'application/x-ndjson',
          'idempotency-key': `${recordId(batch.epoch, first)}..${recordId(batch.epoch, last)}`,
        },
        body,
        signal,
      });
    } catch (err) {
      throw new SinkSendError(`POST ${this.opts.url}: ${describe(err, signal)}`, true, undefined, {
        cause: err,
      });
    }
    const status = res.statusCode;
    if (status >= 200 && status < 300) {
      await res.body.dump();
      return;
    }
    const text = await readSome(res.body);
    const retryable = status === 408 || status === 429 || status >= 500;
    const retryAfter = retryable ? parseRetryAfter(res.headers['retry-after']) : undefined;
    throw new SinkSendError(
      `POST ${this.opts.url}: HTTP ${status}${text ? `: ${text}` : ''}`,
      retryable,
      retryAfter,
    );
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

function describe(err: unknown, signal: AbortSignal): string {
  if (signal.aborted) return String((signal.reason as Error)?.message ?? signal.reason);
  if (err instanceof errors.UndiciError) return `${err.code}: ${err.message}`;
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}: ${e.message}` : e.message;
}

async function readSome(body: { text(): Promise<string> }): Promise<string> {
  try {
    return (await body.text()).slice(0, ERROR_BODY_LIMIT).trim();
  } catch {
    return '';
  }
}

/** Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  if (/^\d+$/.test(s.trim())) return Number(s.trim()) * 1000;
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
