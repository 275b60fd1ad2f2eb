/** The slice of pino that components use; a pino (child) logger satisfies it. */
export interface Logger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Logs an event at most once per interval, with how many were suppressed: for events a peer can
 * trigger at will (malformed packets, refused publishes), so a flood cannot flood the log.
 */
export class ThrottledLog {
  private readonly intervalMs: number;
  private last = 0;
  private suppressed = 0;

  constructor(intervalMs = 1000) {
    this.intervalMs = intervalMs;
  }

  /** Returns the number suppressed since the last line (to add to it), or -1 to stay quiet. */
  take(now = Date.now()): number {
    if (now - this.last < this.intervalMs) {
      this.suppressed++;
      return -1;
    }
    this.last = now;
    const n = this.suppressed;
    this.suppressed = 0;
    return n;
  }
}
