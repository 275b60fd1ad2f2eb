import type { Level } from 'level';
import type { Logger } from '../core/logger.ts';
import type { StoredRecord } from '../core/record.ts';
import {
  deadLetterKey,
  deadLetterPrefix,
  META_DL_GTE,
  META_DL_LT,
  metaDeadLetterCount,
  prefixEnd,
  readSeq,
  sinkOfDeadLetterLedger,
  writeSeq,
} from './keys.ts';

type Db = Level<Buffer, Buffer>;

export interface DeadLetter {
  n: number;
  seq: number;
  at: number;
  reason: string;
  body: Buffer;
}

/** What one sink's dead letters take, kept in the ledger and in memory. */
export interface DeadLetterStats {
  /** Number of the newest dead letter ever kept (numbers are never reused). */
  last: number;
  count: number;
  bytes: number;
}

/** The journal's side of the store: its current database and its one write path. */
export interface DeadLetterIo {
  /** The database now (it changes when the journal reopens after a write error). */
  db(): Db;
  /** The database once a recovery is over, for reads. */
  usable(): Promise<Db>;
  /** A write that fails into the journal's recovery (rejecting with JournalWriteError). */
  write<T>(op: (db: Db) => Promise<T>): Promise<T>;
  fsync: boolean;
  now(): number;
  counters: { deadLettered: number; deadLettersDropped: number };
}

/** Longest reason kept (an upstream's error text is cut there). */
const MAX_REASON_CHARS = 1024;
/** Most dead letters one list call returns. */
export const MAX_DEAD_LETTER_PAGE = 1000;

function noop(): void {}

/**
 * Records a sink's upstream refused for good, with the reason, for an operator to inspect,
 * replay or delete: keys `'d' sink 0x00 n`, one ledger per sink (last number, count, bytes).
 *
 * Dead letters have their own disk budget, apart from the records': past it the oldest are
 * dropped, from the sink that keeps the most (so one noisy sink does not erase another's), and
 * counted. Writes and deletes run one at a time, since each rewrites its sink's ledger.
 */
export class DeadLetterStore {
  private stats: Map<string, DeadLetterStats>;
  private chain: Promise<unknown> = Promise.resolve();
  readonly maxBytes: number;
  private readonly io: DeadLetterIo;
  private readonly log: Logger;

  constructor(io: DeadLetterIo, maxBytes: number, stats: Map<string, DeadLetterStats>, log: Logger) {
    this.io = io;
    this.maxBytes = maxBytes;
    this.stats = stats;
    this.log = log;
  }

  /** Takes the ledger of a reopened database. */
  adopt(stats: Map<string, DeadLetterStats>): void {
    this.stats = stats;
  }

  /** Resolves once no write or delete is running. */
  idle(): Promise<unknown> {
    return this.chain;
  }

  add(sink: string, records: readonly StoredRecord[], reason: string): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    return this.serial(() => this.write(sink, records, reason));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(noop);
    return run;
  }

  private async write(sink: string, records: readonly StoredRecord[], reason: string): Promise<void> {
    const next = { ...(this.stats.get(sink) ?? { last: 0, count: 0, bytes: 0 }) };
    const reasonBuf = Buffer.from(
      reason.length > MAX_REASON_CHARS ? reason.slice(0, MAX_REASON_CHARS) : reason,
    );
    const at = this.io.now();
    const wb = this.io.db().batch();
    try {
      for (const r of records) {
        const key = deadLetterKey(sink, ++next.last);
        const v = Buffer.allocUnsafe(2 + reasonBuf.length + 8 + 8 + r.body.length);
        v.writeUInt16BE(reasonBuf.length, 0);
        reasonBuf.copy(v, 2);
        let pos = 2 + reasonBuf.length;
        v.writeDoubleBE(at, pos);
        pos += 8;
        v.writeDoubleBE(r.seq, pos);
        pos += 8;
        r.body.copy(v, pos);
        wb.put(key, v);
        next.count++;
        next.bytes += key.length + v.length;
      }
      wb.put(metaDeadLetterCount(sink), ledgerValue(next));
      await this.io.write(() => wb.write({ sync: this.io.fsync }));
    } catch (err) {
      await wb.close().catch(noop);
      throw err;
    }
    this.stats.set(sink, next);
    this.io.counters.deadLettered += records.length;
    try {
      await this.keepInBudget();
    } catch (err) {
      // The dead letters are written: rejecting now would make the caller write them again.
      // The budget is kept by the next write (a failed write has started the journal's recovery).
      this.log.warn(
        { err: (err as Error).message, deadLetterMaxBytes: this.maxBytes },
        'dead letters over their budget: dropping the oldest failed, retried with the next write',
      );
    }
  }

  /** Drops the oldest dead letters of the sink keeping the most bytes until all fit the budget. */
  private async keepInBudget(): Promise<void> {
    for (;;) {
      let total = 0;
      let victim: string | null = null;
      let most = 0;
      for (const [sink, st] of this.stats) {
        total += st.bytes;
        if (st.bytes > most) {
          most = st.bytes;
          victim = sink;
        }
      }
      const excess = total - this.maxBytes;
      if (excess <= 0 || victim === null) return;
      const prefix = deadLetterPrefix(victim);
      const next = { ...(this.stats.get(victim) as DeadLetterStats) };
      const keys: Buffer[] = [];
      let freed = 0;
      for await (const [key, v] of this.io
        .db()
        .iterator({ gte: prefix, lt: prefixEnd(prefix), limit: 1000 })) {
        keys.push(key);
        freed += key.length + v.length;
        if (freed >= excess) break;
      }
      if (keys.length === 0) {
        // The ledger counts bytes no key holds: believe the keys.
        next.count = 0;
        next.bytes = 0;
      } else {
        next.count = Math.max(0, next.count - keys.length);
        next.bytes = Math.max(0, next.bytes - freed);
      }
      await this.io.write((db) =>
        db.batch([
          ...keys.map((key) => ({ type: 'del' as const, key })),
          { type: 'put' as const, key: metaDeadLetterCount(victim), value: ledgerValue(next) },
        ]),
      );
      this.stats.set(victim, next);
      this.io.counters.deadLettersDropped += keys.length;
      this.log.warn(
        { sink: victim, dropped: keys.length, deadLetterMaxBytes: this.maxBytes },
        'dead letters over their budget: dropped the oldest',
      );
    }
  }

  count(sink: string): number {
    return this.stats.get(sink)?.count ?? 0;
  }

  summary(): { sink: string; count: number; bytes: number }[] {
    return [...this.stats].map(([sink, st]) => ({ sink, count: st.count, bytes: st.bytes }));
  }

  get bytes(): number {
    let total = 0;
    for (const st of this.stats.values()) total += st.bytes;
    return total;
  }

  /**
   * Dead letters of `sink` numbered above `afterN`, oldest first: at most `limit`, clamped to
   * 1..MAX_DEAD_LETTER_PAGE, so one call never builds an unbounded answer; and with
   * `maxBodyBytes`, no more once their bodies reach that many bytes (at least one).
   */
  async list(
    sink: string,
    limit: number,
    afterN = 0,
    maxBodyBytes = Number.POSITIVE_INFINITY,
  ): Promise<DeadLetter[]> {
    const page = Math.min(MAX_DEAD_LETTER_PAGE, Math.max(1, Math.floor(limit) || 1));
    const prefix = deadLetterPrefix(sink);
    const out: DeadLetter[] = [];
    const db = await this.io.usable();
    const from = deadLetterKey(sink, Math.max(0, Math.floor(afterN) || 0));
    let bodyBytes = 0;
    for await (const [key, v] of db.iterator({ gt: from, lt: prefixEnd(prefix), limit: page })) {
      const rlen = v.readUInt16BE(0);
      const reason = v.toString('utf8', 2, 2 + rlen);
      let pos = 2 + rlen;
      const at = v.readDoubleBE(pos);
      pos += 8;
      const seq = v.readDoubleBE(pos);
      pos += 8;
      out.push({ n: readSeq(key, prefix.length), seq, at, reason, body: v.subarray(pos) });
      bodyBytes += v.length - pos;
      if (bodyBytes >= maxBodyBytes) break;
    }
    return out;
  }

  /** Deletes the dead letters of `sink` numbered `ns`; returns how many existed and went. */
  delete(sink: string, ns: readonly number[]): Promise<number> {
    return this.serial(async () => {
      const st = this.stats.get(sink);
      if (!st || ns.length === 0) return 0;
      const keys = [...new Set(ns)]
        .filter((n) => Number.isSafeInteger(n) && n > 0)
        .map((n) => deadLetterKey(sink, n));
      const values = await (await this.io.usable()).getMany(keys);
      const next = { ...st };
      const ops: ({ type: 'del'; key: Buffer } | { type: 'put'; key: Buffer; value: Buffer })[] = [];
      for (let i = 0; i < keys.length; i++) {
        const v = values[i];
        if (v === undefined) continue;
        ops.push({ type: 'del', key: keys[i] });
        next.count = Math.max(0, next.count - 1);
        next.bytes = Math.max(0, next.bytes - keys[i].length - v.length);
      }
      if (ops.length === 0) return 0;
      ops.push({ type: 'put', key: metaDeadLetterCount(sink), value: ledgerValue(next) });
      await this.io.write((db) => db.batch(ops));
      this.stats.set(sink, next);
      return ops.length - 1;
    });
  }
}

function ledgerValue(st: DeadLetterStats): Buffer {
  const b = Buffer.allocUnsafe(24);
  writeSeq(b, 0, st.last);
  b.writeDoubleBE(st.count, 8);
  b.writeDoubleBE(st.bytes, 16);
  return b;
}

/**
 * Every sink's ledger. One from before the dead-letter budget holds only the last number: its
 * count and bytes are counted once from the keys.
 */
export async function readDeadLetterStats(db: Db): Promise<Map<string, DeadLetterStats>> {
  const out = new Map<string, DeadLetterStats>();
  for await (const [key, value] of db.iterator({ gte: META_DL_GTE, lt: META_DL_LT })) {
    const sink = sinkOfDeadLetterLedger(key);
    const last = readSeq(value, 0);
    if (value.length >= 24) {
      out.set(sink, { last, count: value.readDoubleBE(8), bytes: value.readDoubleBE(16) });
      continue;
    }
    const prefix = deadLetterPrefix(sink);
    let count = 0;
    let bytes = 0;
    for await (const [k, v] of db.iterator({ gte: prefix, lt: prefixEnd(prefix) })) {
      count++;
      bytes += k.length + v.length;
    }
    out.set(sink, { last, count, bytes });
  }
  return out;
}
