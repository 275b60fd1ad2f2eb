// The error catalog: stable codes, each marked retryable or not, so callers decide by code and
// never by message text.

export class EdgeferryError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  constructor(code: string, message: string, retryable: boolean, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.retryable = retryable;
    this.name = 'EdgeferryError';
  }
}

/** The journal is over its disk budget and its policy is `reject`: back-pressure, not a fault. */
export class JournalFullError extends EdgeferryError {
  constructor(maxBytes: number) {
    super('EF_JOURNAL_FULL', `journal is full (maxBytes ${maxBytes}) and onFull is reject`, true);
  }
}

/** A group commit failed to write (ENOSPC, I/O error): nothing in that batch was committed. */
export class JournalWriteError extends EdgeferryError {
  constructor(cause: unknown) {
    super('EF_JOURNAL_WRITE', `journal write failed: ${(cause as Error)?.message ?? cause}`, true, { cause });
  }
}

export class JournalClosedError extends EdgeferryError {
  constructor() {
    super('EF_JOURNAL_CLOSED', 'journal is closed', false);
  }
}

export interface SinkSendErrorOptions extends ErrorOptions {
  /**
   * Records at the front of the batch the upstream acknowledged before this failure (a sink that
   * splits a batch into several calls): the dispatcher counts them delivered and goes on with
   * the rest, so they are not sent again.
   */
  acked?: number;
  /**
   * For a final error: how many records after the acked ones it refuses (default: all of them).
   * The dispatcher dead-letters those and sends the rest, so one bad record does not take its
   * batch with it.
   */
  refused?: number;
}

/**
 * A sink's send failed. `retryable: true` keeps the batch and backs off (optionally no sooner
 * than `retryAfterMs`); `false` dead-letters the batch (or the `refused` part of it) and moves on.
 */
export class SinkSendError extends EdgeferryError {
  readonly retryAfterMs: number | undefined;
  readonly acked: number;
  readonly refused: number | undefined;
  constructor(
    message: string,
    retryable: boolean,
    retryAfterMs?: number,
    options?: SinkSendErrorOptions,
    code = retryable ? 'EF_SINK_RETRYABLE' : 'EF_SINK_REJECTED',
  ) {
    super(code, message, retryable, options);
    this.retryAfterMs = retryAfterMs;
    this.acked = options?.acked ?? 0;
    this.refused = options?.refused;
  }
}

/**
 * The upstream refused the sink's credentials (HTTP 401/403, gRPC UNAUTHENTICATED or
 * PERMISSION_DENIED). Retryable: an expired token is usually renewed outside the gateway (a
 * rotated Secret), and dead-lettering everything meanwhile would lose the data's order and need
 * an operator to replay it. The dispatcher shows the sink as `auth-failing`.
 */
export class SinkAuthError extends SinkSendError {
  constructor(message: string, options?: SinkSendErrorOptions) {
    super(message, true, undefined, options, 'EF_SINK_AUTH');
  }
}

export class ConfigError extends EdgeferryError {
  constructor(message: string) {
    super('EF_CONFIG', message, false);
    this.name = 'ConfigError';
  }
}
