import type { StoredRecord } from '../core/record.ts';

/**
 * The most recently committed records, in memory, so a sink that keeps up reads new records
 * without going back to disk. A ring indexed by seq: records are contiguous, so the slot of a
 * seq is computed, never searched. Bounded by count and bytes; the oldest fall out first.
 */
export class TailCache {
  private readonly slots: (StoredRecord | undefined)[];
  private readonly capacity: number;
  private readonly maxBytes: number;
  private bytes = 0;
  /** Seq of the oldest cached record; `next` is one past the newest. Empty when equal. */
  private first = 1;
  private next = 1;

  constructor(capacity: number, maxBytes: number) {
    this.capacity = capacity;
    this.maxBytes = maxBytes;
    this.slots = new Array(capacity);
  }

  /** Appends a committed record; `rec.seq` must be exactly one past the newest cached seq. */
  push(rec: StoredRecord): void {
    if (rec.seq !== this.next) this.reset(rec.seq);
    while (
      this.next - this.first >= this.capacity ||
      (this.bytes > this.maxBytes && this.first < this.next)
    ) {
      this.evict();
    }
    this.slots[rec.seq % this.capacity] = rec;
    this.bytes += rec.body.length;
    this.next = rec.seq + 1;
  }

  /** Whether every record from `seq` up to the newest committed one is in memory. */
  covers(seq: number): boolean {
    return seq >= this.first && seq <= this.next;
  }

  /** Copies cached records from `seq` on, up to the limits, into `out`. */
  read(seq: number, maxRecords: number, maxBytes: number, out: StoredRecord[]): void {
    let bytes = 0;
    for (let s = seq; s < this.next && out.length < maxRecords; s++) {
      const rec = this.slots[s % this.capacity]!;
      if (out.length > 0 && bytes + rec.body.length > maxBytes) break;
      bytes += rec.body.length;
      out.push(rec);
    }
  }

  /** Forgets records below `seq` (trimmed or dropped from the journal). */
  dropBefore(seq: number): void {
    while (this.first < seq && this.first < this.next) this.evict();
    if (this.first < seq) this.reset(seq);
  }

  private evict(): void {
    const i = this.first % this.capacity;
    this.bytes -= this.slots[i]!.body.length;
    this.slots[i] = undefined;
    this.first++;
  }

  private reset(seq: number): void {
    this.slots.fill(undefined);
    this.bytes = 0;
    this.first = seq;
    this.next = seq;
  }
}
