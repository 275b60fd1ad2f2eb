/**
 * Wall-clock jumps seen while records were kept. A record's `ts` is the wall clock at ingest, and
 * TTL judges its age by it; on an edge board without a battery-backed clock the first NTP sync
 * moves the clock years forward, and every record taken before it would look decades old and be
 * dropped at once. So a jump of `delta` ms is remembered with the last seq committed before it,
 * and a record committed before the jump is aged as if its ts were `ts + delta`: its age is the
 * time it really spent here, whichever way the clock went.
 *
 * The list is short (one entry per jump, oldest merged past MAX_SHIFTS), persisted in the ledger,
 * and pruned as the journal trims past the seqs it covers.
 */
export interface ClockShift {
  /** Last seq committed before the jump. */
  upTo: number;
  /** How far the wall clock jumped, ms (negative: backwards). */
  delta: number;
}

const MAX_SHIFTS = 32;

export class ClockShifts {
  /** Ascending by upTo. */
  private list: ClockShift[] = [];

  get size(): number {
    return this.list.length;
  }

  /** The shift to add to the ts of the record at `seq`: the jumps since it was committed. */
  offsetFor(seq: number): number {
    let sum = 0;
    for (let i = this.list.length - 1; i >= 0 && this.list[i].upTo >= seq; i--) sum += this.list[i].delta;
    return sum;
  }

  add(upTo: number, delta: number): void {
    const last = this.list[this.list.length - 1];
    if (last !== undefined && last.upTo === upTo) last.delta += delta;
    else this.list.push({ upTo, delta });
    if (this.list.length > MAX_SHIFTS) {
      // Merging the two oldest over-shifts the records between them by the older delta: a small
      // error on the oldest records, instead of an unbounded list.
      const [a, b] = this.list.splice(0, 2);
      this.list.unshift({ upTo: b.upTo, delta: a.delta + b.delta });
    }
  }

  /** Forgets jumps that only concern records below `firstSeq` (trimmed). True if any went. */
  prune(firstSeq: number): boolean {
    const before = this.list.length;
    this.list = this.list.filter((s) => s.upTo >= firstSeq);
    return this.list.length !== before;
  }

  encode(): Buffer {
    return Buffer.from(JSON.stringify(this.list));
  }

  static decode(buf: Buffer | undefined): ClockShifts {
    const out = new ClockShifts();
    if (!buf) return out;
    try {
      const parsed = JSON.parse(buf.toString('utf8')) as unknown;
      if (Array.isArray(parsed)) {
        for (const s of parsed) {
          if (Number.isSafeInteger(s?.upTo) && Number.isFinite(s?.delta))
            out.list.push({ upTo: s.upTo, delta: s.delta });
        }
      }
    } catch {
      // An unreadable entry only costs the correction; ages fall back to the raw ts.
    }
    return out;
  }
}

/** A jump is a difference between wall and monotonic time of more than this within one check. */
export const CLOCK_JUMP_MS = 2000;
