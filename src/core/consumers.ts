// Durable gRPC consumers as the operations surface sees them: the api keeps them, the admin
// HTTP server and the metrics read them through this interface (neither imports the other).

/** One durable consumer: a named journal cursor that a Subscribe resumes from. */
export interface ConsumerInfo {
  name: string;
  /** The last seq it acknowledged (or where it started, before its first Ack). */
  position: number;
  /** Retained records after `position`, every topic. */
  backlog: number;
  openStreams: number;
  /** Last Ack, stream opened or closed, or the gateway's start (ms since the Unix epoch). */
  lastActivityAt: number;
  /** When it expires if nothing happens (ms); null while a stream is open. */
  expiresAt: number | null;
}

export interface ConsumerDirectory {
  /** Every durable consumer, by name. Answers from memory. */
  list(now?: number): ConsumerInfo[];
  /** Removes a consumer and ends its open streams; null when there is none by that name. */
  delete(name: string): Promise<{ endedStreams: number } | null>;
  /** Consumers removed, by why: `expired` (inactive for expireAfter) or `deleted` (an operator). */
  readonly removed: { expired: number; deleted: number };
}

/** Consumer names: safe in a journal key, a URL path segment and a log line. */
export const CONSUMER_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
