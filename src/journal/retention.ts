import type { Logger } from '../core/logger.ts';
import {
  chunkCumBefore,
  chunkIntact,
  chunkLastSeq,
  cumAtOffset,
  entryOffset,
  entryTs,
  nextEntry,
} from './chunk.ts';
import { CHUNKS_LT, chunkKey, META_FIRST_SEQ, seqOfKey, seqValue } from './keys.ts';
import { chunkHolding } from './reader.ts';
import type { Db, Ends, JournalCounters, JournalOptions } from './state.ts';
import { noop } from './state.ts';

const DROP_CHUNK_FRACTION = 0.05;

/** What retention needs of the journal. */
export interface RetentionHost {
  readonly ends: Ends;
  readonly opts: JournalOptions;
  readonly counters: JournalCounters;
  readonly log: Logger;
  /** The current database, never a wait for a recovery. */
  db(): Db;
  /** A write that fails into the journal's recovery. */
  write<T>(op: (db: Db) => Promise<T>): Promise<T>;
  /** Records below `seq` are gone: the tail and the clock shifts forget them. */
  dropped(seq: number): void;
  /** The clock shift for the record `seq` (clock-shifts.ts). */
  offsetFor(seq: number): number;
  /** The TTL cutoff now (0: no TTL). */
  expiryCutoff(): number;
  /** The lowest cursor position; Infinity without cursors. */
  cursorMin(): number;
  closed(): boolean;
  recovering(): boolean;
}

/**
 * Trimming, the disk budget's drop-oldest and TTL: each moves the first retained seq forward.
 * The position moves record by record (a cursor part way through a group commit, a TTL cutoff
 * inside one); chunks leave the disk whole, once every record of theirs is below it. Moves run
 * one at a time, so the position and the first-seq ledger only ever go forward.
 */
export class Retention {
  private readonly host: RetentionHost;
  private chain: Promise<unknown> = Promise.resolve();
  private trimTimer: NodeJS.Timeout | null = null;
  /** The trim or TTL sweep running (they run one after the other). */
  private trimming: Promise<unknown> = Promise.resolve();

  constructor(host: RetentionHost) {
    this.host = host;
  }

  /** Trims shortly (a cursor moved): one trim for the moves of 100 ms. */
  scheduleTrim(): void {
    if (this.trimTimer !== null || this.host.closed()) return;
    this.trimTimer = setTimeout(() => {
      this.trimTimer = null;
      this.trimming = this.trim().catch((err) =>
        this.host.log.warn({ err: err.message }, 'journal trim failed'),
      );
    }, 100);
  }

  /** Sweeps expired records after the trim or sweep running. */
  scheduleSweep(): void {
    this.trimming = this.trimming.then(() => this.sweepExpired()).then(noop, noop);
  }

  /** Drops the records every cursor has passed. Without cursors nothing is trimmed. */
  async trim(): Promise<void> {
    const { host, ends } = this;
    if (host.cursorMin() === Number.POSITIVE_INFINITY || host.recovering() || host.closed()) return;
    const upTo = Math.min(host.cursorMin(), ends.lastSeq);
    if (upTo < ends.firstSeq) return;
    await this.deleteBefore(upTo + 1);
  }

  private get ends(): Ends {
    return this.host.ends;
  }

  /**
   * Frees at least `needed` bytes (and a twentieth of the budget, so a full journal does not pay
   * a range delete per batch) from the oldest records, whole chunks, by binary search on the
   * cumulative bytes in the chunk headers.
   */
  async dropOldest(needed: number): Promise<void> {
    const { ends, opts } = this.host;
    const target = ends.firstCum + Math.max(needed, opts.maxBytes * DROP_CHUNK_FRACTION);
    let upTo = await this.searchSeq((_ts, cum) => cum >= target);
    // The chunk holding that record goes too: a drop frees whole chunks.
    const c = upTo <= ends.lastSeq ? await chunkHolding(this.host.db(), upTo) : undefined;
    if (c?.intact && c.keySeq < upTo) upTo = chunkLastSeq(c.entry[1]) + 1;
    const dropped = await this.deleteBefore(upTo);
    if (dropped > 0) {
      this.host.counters.droppedFull += dropped;
      this.host.log.warn({ dropped, maxBytes: opts.maxBytes }, 'journal full: dropped oldest records');
    }
  }

  /** Drops the records whose ts (moved by the clock shifts) is past the TTL: the expired prefix. */
  async sweepExpired(): Promise<number> {
    const host = this.host;
    const cutoff = host.expiryCutoff();
    const e = host.ends;
    if (cutoff === 0 || e.lastSeq < e.firstSeq || host.closed() || host.recovering()) return 0;
    const upTo = await this.searchSeq((ts, _cum, seq) => ts + host.offsetFor(seq) >= cutoff);
    const dropped = await this.deleteBefore(upTo);
    if (dropped > 0) {
      host.counters.droppedTtl += dropped;
      host.log.info({ dropped, ttlMs: host.opts.ttlMs }, 'journal: dropped records past their ttl');
    }
    return dropped;
  }

  /**
   * Moves the first retained seq to `seq`: deletes the chunks wholly below it in one range
   * delete, then writes the position. A delete that fails leaves the position (and the bytes
   * count) where the records still are; a position not written after its delete is found again
   * at open from the first chunk left.
   */
  deleteBefore(seq: number): Promise<number> {
    const run = (): Promise<number> => this.moveFirst(seq);
    const done = this.chain.then(run, run);
    this.chain = done.catch(noop);
    return done;
  }

  private async moveFirst(seq: number): Promise<number> {
    const e = this.host.ends;
    if (seq <= e.firstSeq) return 0;
    let boundary = seq;
    let newFirstCum = e.nextCum;
    if (seq <= e.lastSeq) {
      const at = await this.chunkStartAndCum(seq);
      boundary = at.keySeq;
      newFirstCum = at.cum;
    }
    await this.host.write(async (db) => {
      if (boundary > e.firstChunk) await db.clear({ gte: chunkKey(e.firstChunk), lt: chunkKey(boundary) });
      await db.put(META_FIRST_SEQ, seqValue(seq));
    });
    // A TTL sweep and a budget drop may race; the position only ever moves forward.
    if (seq <= e.firstSeq) return 0;
    const dropped = seq - e.firstSeq;
    e.firstSeq = seq;
    e.firstCum = newFirstCum;
    if (boundary > e.firstChunk) e.firstChunk = boundary;
    this.host.dropped(seq);
    return dropped;
  }

  /**
   * The key of the chunk that stays when `seq` becomes the first retained record, and the
   * cumulative bytes before `seq`. A damaged chunk there stays, and the bytes count from where
   * it was (as with a damaged record, its size is unknown).
   */
  private async chunkStartAndCum(seq: number): Promise<{ keySeq: number; cum: number }> {
    const db = this.host.db();
    const c = await chunkHolding(db, seq);
    if (c !== undefined) {
      const v = c.entry[1];
      return {
        keySeq: c.keySeq,
        cum: c.intact ? cumAtOffset(v, entryOffset(v, seq)) : this.host.ends.firstCum,
      };
    }
    // In a gap (records a migration found damaged): the next chunk starts the retained ones.
    const next = await db.iterator({ gte: chunkKey(seq), lt: CHUNKS_LT, limit: 1 }).all();
    if (next.length === 0) return { keySeq: seq, cum: this.host.ends.nextCum };
    const [key, v] = next[0];
    const keySeq = seqOfKey(key);
    return {
      keySeq: Math.min(seq, keySeq),
      cum: chunkIntact(v, keySeq) ? chunkCumBefore(v) : this.host.ends.firstCum,
    };
  }

  /**
   * Smallest retained seq whose record satisfies `pred` (monotone in seq), or lastSeq + 1. A
   * binary search over chunks (one reverse seek each), then a walk through the one found. A
   * damaged or missing chunk counts as satisfying it: the search stops before it.
   */
  async searchSeq(pred: (ts: number, cum: number, seq: number) => boolean): Promise<number> {
    const e = this.host.ends;
    let lo = e.firstSeq;
    let hi = e.lastSeq + 1;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const c = await chunkHolding(this.host.db(), mid);
      if (c === undefined || !c.intact) {
        hi = mid;
        continue;
      }
      const v = c.entry[1];
      const a = Math.max(lo, c.keySeq);
      const b = Math.min(hi - 1, chunkLastSeq(v));
      let off = entryOffset(v, a);
      let found = -1;
      for (let s = a; s <= b; s++) {
        if (pred(entryTs(v, off), cumAtOffset(v, off), s)) {
          found = s;
          break;
        }
        off = nextEntry(v, off);
      }
      if (found < 0) lo = b + 1;
      else if (found > a) return found;
      else hi = a;
    }
    return lo;
  }

  /** Stops trimming (the journal closes): resolves once no trim, sweep or move is running. */
  async stop(): Promise<void> {
    if (this.trimTimer) clearTimeout(this.trimTimer);
    await this.trimming;
    await this.chain;
  }
}
