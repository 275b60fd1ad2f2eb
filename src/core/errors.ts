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

/**
 * A sink's send failed. `retryable: true` keeps the batch and backs off (optionally no sooner
 * than `retryAfterMs`); `false` dead-letters the batch and moves on.
 */
export class SinkSendError extends EdgeferryError {
  readonly retryAfterMs: number | undefined;
  constructor(message: string, retryable: boolean, retryAfterMs?: number, options?: ErrorOptions) {
    super(retryable ? 'EF_SINK_RETRYABLE' : 'EF_SINK_REJECTED', message, retryable, options);
    this.retryAfterMs = retryAfterMs;
  }
}

export class ConfigError extends EdgeferryError {
  constructor(message: string) {
    super('EF_CONFIG', message, false);
    this.name = 'ConfigError';
  }
}
