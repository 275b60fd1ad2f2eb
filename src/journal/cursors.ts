import { JournalClosedError } from '../core/errors.ts';
import { cursorKey, seqValue } from './keys.ts';
import type { Db } from './state.ts';

/** A cursor move's waiter: resolved once the move is on disk. */
interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

/** Cursor moves taken into one group commit. */
export interface DirtyCursors {
  names: string[];
  ops: { type: 'put'; key: Buffer; value: Buffer }[];
  waiters: Waiter[];
}

/** What the cursors need of the journal. */
export interface CursorHost {
  write<T>(op: (db: Db) => Promise<T>): Promise<T>;
  closed(): boolean;
  /** A group commit is in flight, and the promise of its end. */
  writing(): boolean;
  commitDone(): Promise<void>;
  /** Starts a group commit now (one carrying only cursor moves, if nothing is pending). */
  flush(): void;
  scheduleTrim(): void;
}

/** A cursor move waits this long for a group commit to ride on before it is written alone. */
const CURSOR_FLUSH_MS = 20;

/**
 * Named cursors: the last seq each consumer is done with, which decide what may be trimmed.
 * Moves are written with the next group commit, so a sink advancing after every batch costs no
 * LevelDB write of its own.
 */
export class Cursors {
  private readonly positions = new Map<string, number>();
  /** Moves not yet on disk, and who waits for them; written with the next group commit. */
  private dirty = new Set<string>();
  private waiters: Waiter[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly host: CursorHost;

  constructor(initial: Map<string, number>, host: CursorHost) {
    for (const [k, v] of initial) this.positions.set(k, v);
    this.host = host;
  }

  async open(name: string, initial: number, lastSeq: number): Promise<number> {
    const existing = this.positions.get(name);
    if (existing !== undefined) return existing;
    const pos = Math.max(0, Math.min(initial, lastSeq));
    await this.host.write((db) => db.put(cursorKey(name), seqValue(pos)));
    this.positions.set(name, pos);
    return pos;
  }

  get(name: string): number | undefined {
    return this.positions.get(name);
  }

  names(): string[] {
    return [...this.positions.keys()];
  }

  get size(): number {
    return this.positions.size;
  }

  /** The lowest position (Infinity without cursors). */
  min(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const v of this.positions.values()) min = Math.min(min, v);
    return min;
  }

  get hasMoves(): boolean {
    return this.dirty.size > 0;
  }

  commit(name: string, seq: number): Promise<void> {
    const cur = this.positions.get(name);
    if (cur !== undefined && seq <= cur) return Promise.resolve();
    if (this.host.closed()) return Promise.reject(new JournalClosedError());
    this.positions.set(name, seq);
    this.dirty.add(name);
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    // Not a write of its own right away: that would hold up the records arriving meanwhile.
    if (this.timer === null) this.timer = setTimeout(this.onTimer, CURSOR_FLUSH_MS);
    this.host.scheduleTrim();
    return done;
  }

  async remove(name: string): Promise<void> {
    if (!this.positions.delete(name)) return;
    this.dirty.delete(name);
    // A batch in flight may still write its old position: delete after it. Only that one: the
    // batches built from now on no longer carry the cursor, and under steady ingest the writer
    // never goes idle (waiting for sync() hung a consumer delete as long as devices published).
    if (this.host.writing()) await this.host.commitDone();
    try {
      await this.host.write((db) => db.del(cursorKey(name)));
    } finally {
      // Gone from memory either way; a key left on disk comes back at the next start, where
      // whoever removed it (stale sink, expired consumer) removes it again.
      this.host.scheduleTrim();
    }
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    if (this.dirty.size === 0) return;
    // A batch in flight was built before these moves: try again after it.
    if (this.host.writing()) this.timer = setTimeout(this.onTimer, CURSOR_FLUSH_MS);
    else this.host.flush();
  };

  /** The moves to write with a group commit. */
  take(): DirtyCursors {
    const names = [...this.dirty];
    this.dirty.clear();
    const waiters = this.waiters;
    this.waiters = [];
    const ops = names.map((name) => ({
      type: 'put' as const,
      key: cursorKey(name),
      value: seqValue(this.positions.get(name) ?? 0),
    }));
    return { names, ops, waiters };
  }

  /** The group commit that carried `taken` failed: the moves wait for the next one. */
  restore(taken: DirtyCursors, err: Error): void {
    for (const name of taken.names) if (this.positions.has(name)) this.dirty.add(name);
    for (const w of taken.waiters) w.reject(err);
  }

  /** A reopened database gets every position again (writes may have been lost). */
  rewriteAll(): void {
    for (const name of this.positions.keys()) this.dirty.add(name);
    if (this.dirty.size > 0 && this.timer === null) this.timer = setTimeout(this.onTimer, CURSOR_FLUSH_MS);
  }

  /** Shutting down without a database to write to. */
  forgetMoves(): void {
    this.dirty.clear();
  }

  stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
