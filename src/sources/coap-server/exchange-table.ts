// Message deduplication (RFC 7252 §4.5): a CON whose ACK was lost is retransmitted with the same
// message id, and must be answered again with the same response but not journaled twice; a
// duplicate NON is silently ignored. node-coap's cache misses a duplicate that arrives while the
// original waits for its commit (LIBRARIES.md), which is exactly when a slow commit makes the
// client retransmit, so the server keeps its own table.
//
// Keyed by (peer address:port, message id) for EXCHANGE_LIFETIME (§4.8.2, 247 s), or
// NON_LIFETIME for a NON (145 s; the longer one is used for both). Bounded by count: past
// `maxEntries` the oldest entry goes (counted); a duplicate that comes after its entry went is
// treated as new, so the bound trades memory for at-least-once under extreme rates.

/** One request, from arrival until it can no longer be retransmitted. */
export interface Exchange {
  key: string;
  /** When the entry stops deduplicating (ms). */
  expires: number;
  address: string;
  port: number;
  messageId: number;
  token: Buffer;
  confirmable: boolean;
  method: number;
  /** The Block1 option to echo in the response (RFC 7959 §2.3), or -1. */
  block1: number;
  /** The response sent (or to resend); null while it waits for the journal commit. */
  response: Buffer | null;
}

/** EXCHANGE_LIFETIME with the default transmission parameters (RFC 7252 §4.8.2). */
export const EXCHANGE_LIFETIME_MS = 247_000;

export class ExchangeTable {
  private readonly entries = new Map<string, Exchange>();
  private readonly maxEntries: number;
  private readonly lifetimeMs: number;
  /** Entries removed by the count bound before they expired. */
  evicted = 0;

  constructor(maxEntries: number, lifetimeMs = EXCHANGE_LIFETIME_MS) {
    this.maxEntries = maxEntries;
    this.lifetimeMs = lifetimeMs;
  }

  get size(): number {
    return this.entries.size;
  }

  find(key: string, now: number): Exchange | undefined {
    const e = this.entries.get(key);
    if (e === undefined || e.expires > now) return e;
    this.entries.delete(key);
    return undefined;
  }

  /**
   * Adds a new exchange. Every entry lives equally long and the Map keeps insertion order, so
   * the expired ones are always at the front: the sweep stops at the first live one.
   */
  add(e: Exchange, now: number): void {
    e.expires = now + this.lifetimeMs;
    this.sweep(now);
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
      this.evicted++;
    }
    this.entries.set(e.key, e);
  }

  sweep(now: number): void {
    for (const e of this.entries.values()) {
      if (e.expires > now) return;
      this.entries.delete(e.key);
    }
  }

  clear(): void {
    this.entries.clear();
  }
}
