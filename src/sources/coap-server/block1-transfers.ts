// Block-wise request payloads (RFC 7959 §2.5, Block1). node-coap reassembles by token, but
// libcoap's coap-client sends every block with a new token (RFC 7959 §2.4 allows it: blocks are
// separate requests), so node-coap answers its second block with 5.00 (LIBRARIES.md). Blocks are
// matched here by what stays the same: the peer (address and port), the Request-Tag
// (RFC 9175 §3.3: a client tags concurrent transfers to one resource apart) and the path.
//
// Bounded: at most `maxTransfers` at once, each at most `maxBytes`, each forgotten after
// `lifetimeMs` without a block. Past the count the transfer idle longest is dropped (its client
// gets 4.08 on its next block and starts again).

export interface Transfer {
  key: string;
  expires: number;
  chunks: Buffer[];
  /** Bytes received so far: the offset the next block must start at. */
  size: number;
}

export type BlockVerdict = 'continue' | 'complete' | 'incomplete' | 'too-large' | 'bad';

export class Block1Transfers {
  private readonly transfers = new Map<string, Transfer>();
  private readonly maxTransfers: number;
  private readonly maxBytes: number;
  private readonly lifetimeMs: number;
  /** The payload of the last 'complete' verdict. */
  completed: Buffer | null = null;
  evicted = 0;

  constructor(maxTransfers: number, maxBytes: number, lifetimeMs: number) {
    this.maxTransfers = maxTransfers;
    this.maxBytes = maxBytes;
    this.lifetimeMs = lifetimeMs;
  }

  get size(): number {
    return this.transfers.size;
  }

  /**
   * Offers one block. `block1` is the option value: NUM << 4 | M << 3 | SZX (RFC 7959 §2.2).
   * `commit` false only checks that the block would complete the transfer (the server then
   * refuses it for back-pressure and the client repeats it): nothing is consumed.
   */
  offer(
    key: string,
    block1: number,
    payload: Buffer,
    size1: number,
    now: number,
    commit = true,
  ): BlockVerdict {
    const szx = block1 & 7;
    if (szx === 7) return 'bad'; // reserved (RFC 7959 §2.2)
    const blockSize = 1 << (szx + 4);
    const more = (block1 & 8) !== 0;
    const offset = Math.floor(block1 / 16) * blockSize;
    // §2.2: every block but the last carries exactly the block size.
    if (more && payload.length !== blockSize) return 'bad';
    this.sweep(now);
    let t = this.transfers.get(key);
    if (offset === 0) {
      if (size1 > this.maxBytes) return this.drop(key, 'too-large');
      if (t !== undefined && commit) this.transfers.delete(key);
      t = undefined;
    } else if (t === undefined || t.size !== offset) {
      // A block out of order, or of a transfer this server no longer has (RFC 7959 §2.9.2).
      return this.drop(key, 'incomplete');
    }
    if (offset + payload.length > this.maxBytes) return this.drop(key, 'too-large');
    if (!commit) return more ? 'continue' : 'complete';
    if (!more) {
      this.completed =
        t === undefined ? payload : Buffer.concat([...t.chunks, payload], offset + payload.length);
      if (t !== undefined) this.transfers.delete(key);
      return 'complete';
    }
    if (t === undefined) {
      if (this.transfers.size >= this.maxTransfers) {
        const oldest = this.transfers.keys().next().value;
        if (oldest !== undefined) this.transfers.delete(oldest);
        this.evicted++;
      }
      t = { key, expires: 0, chunks: [], size: 0 };
    } else {
      this.transfers.delete(key); // re-inserted last: the Map stays in order of last activity
    }
    t.chunks.push(payload);
    t.size += payload.length;
    t.expires = now + this.lifetimeMs;
    this.transfers.set(key, t);
    return 'continue';
  }

  private drop(key: string, verdict: BlockVerdict): BlockVerdict {
    this.transfers.delete(key);
    return verdict;
  }

  sweep(now: number): void {
    for (const t of this.transfers.values()) {
      if (t.expires > now) return;
      this.transfers.delete(t.key);
    }
  }

  clear(): void {
    this.transfers.clear();
  }
}
