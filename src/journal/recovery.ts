import { setTimeout as sleep } from 'node:timers/promises';
import { Level } from 'level';
import { JournalClosedError, JournalWriteError } from '../core/errors.ts';
import { type Logger, ThrottledLog } from '../core/logger.ts';
import { dbOptions, readOpenState } from './open.ts';
import type { Db, JournalCounters, OpenState } from './state.ts';
import { noop } from './state.ts';

const RECOVERY_RETRY_MS = 1000;
export const RECOVERING = new Error('the journal is reopening after a write error');
export const CONCURRENT_FAILURE = new Error(
  'another journal write failed meanwhile; the journal is reopening',
);

/** What a recovery needs of the journal. */
export interface RecoveryHost {
  readonly path: string;
  readonly maxBytes: number;
  readonly log: Logger;
  readonly counters: JournalCounters;
  closed(): boolean;
  /** Refuses what is queued for commit (sources send no ack). */
  refuseQueued(err: Error): void;
  /** Shutting down without a database: cursor moves not written are resent after restart. */
  forgetMoves(): void;
  /** Resolves once no group commit is in flight. */
  writerIdle(): Promise<void>;
  closeReaders(): Promise<void>;
  /** The reopened database's state. */
  adopt(state: OpenState): void;
  /** 'writable' false when a recovery starts, true once it is over. */
  writableChanged(writable: boolean): void;
}

/**
 * The journal's LevelDB handle and its one write path. After a failed write (a full disk, an
 * I/O error) LevelDB's log may end in a torn record, and LevelDB goes on appending after it: on
 * the next open, the reader drops the rest of that log block, acknowledged records included.
 * So nothing more is written to this database: what is queued is refused (sources send no ack),
 * and the database is closed and reopened (a fresh log) every RECOVERY_RETRY_MS until that
 * succeeds, normally once space is back. Reads wait.
 */
export class JournalDb {
  db: Db;
  /** Set while the database is being reopened after a failed write. */
  recovering: Promise<void> | null = null;
  /** close() was called: a recovery that cannot reopen gives up. */
  private closeRequested = false;
  /** The last recovery gave up: the database is closed and nothing is pending on it. */
  unrecovered = false;
  /** Cuts the wait between two reopen attempts short at shutdown. */
  private readonly recoveryAbort = new AbortController();
  /** A full or failing disk fails every commit: one line a second says so, with a count. */
  readonly writeErrorLog = new ThrottledLog();
  private readonly host: RecoveryHost;

  constructor(db: Db, host: RecoveryHost) {
    this.db = db;
    this.host = host;
  }

  /** Neither reopening nor given up: writes go to the database. */
  get healthy(): boolean {
    return this.recovering === null && !this.unrecovered;
  }

  startRecovery(cause: unknown): void {
    if (this.recovering) return;
    const host = this.host;
    host.refuseQueued(new JournalWriteError(cause));
    if (this.closeRequested) {
      // Shutting down: nothing more can be saved; close() goes on without writing.
      this.unrecovered = true;
      host.forgetMoves();
      return;
    }
    host.log.error(
      { path: host.path, err: (cause as Error)?.message },
      'journal write failed: refusing records until the database is reopened',
    );
    this.recovering = this.recover().finally(() => {
      this.recovering = null;
      if (!this.unrecovered) host.writableChanged(true);
    });
    host.writableChanged(false);
  }

  private async recover(): Promise<void> {
    const host = this.host;
    // A group commit in flight still uses the old database: let it end first.
    await host.writerIdle();
    for (;;) {
      await host.closeReaders();
      await this.db.close().catch(noop);
      if (this.closeRequested) {
        this.unrecovered = true;
        return;
      }
      const db: Db = new Level<Buffer, Buffer>(host.path, dbOptions(host.maxBytes));
      try {
        await db.open();
        const state = await readOpenState(db);
        this.db = db;
        host.adopt(state);
        host.counters.reopened++;
        host.log.info({ path: host.path, lastSeq: state.lastSeq }, 'journal reopened after a write error');
        return;
      } catch (err) {
        await db.close().catch(noop);
        const suppressed = this.writeErrorLog.take();
        if (suppressed >= 0) {
          host.log.error({ err: (err as Error).message, suppressed }, 'journal reopen failed, retrying');
        }
        if (this.closeRequested) {
          this.unrecovered = true;
          return;
        }
        await sleep(RECOVERY_RETRY_MS, undefined, { signal: this.recoveryAbort.signal }).catch(noop);
      }
    }
  }

  /** See Journal.abandonRecovery. */
  abandonRecovery(): void {
    this.closeRequested = true;
    this.recoveryAbort.abort();
  }

  /**
   * Runs a write other than a group commit (dead letters, cursor registration and removal,
   * range deletes, the clock ledger). It fails the way a group commit does: the journal goes into
   * recovery (a failed LevelDB write may have left a torn log tail) and the caller gets a
   * retryable JournalWriteError. While a recovery runs it fails at once, with the same error.
   */
  async write<T>(op: (db: Db) => Promise<T>): Promise<T> {
    const host = this.host;
    if (host.closed()) throw new JournalClosedError();
    if (!this.healthy) throw new JournalWriteError(RECOVERING);
    let result: T;
    try {
      result = await op(this.db);
    } catch (cause) {
      if (host.closed()) throw new JournalClosedError();
      host.counters.writeErrors++;
      const suppressed = this.writeErrorLog.take();
      if (suppressed >= 0)
        host.log.error({ err: (cause as Error).message, suppressed }, 'journal write failed');
      this.startRecovery(cause);
      throw new JournalWriteError(cause);
    }
    // Another write failed while this one was queued behind it in LevelDB: this one may sit
    // after a torn log record, which the reopen drops. Not done, as far as the caller knows.
    if (!this.healthy) throw new JournalWriteError(CONCURRENT_FAILURE);
    return result;
  }

  /** The database, once any recovery is over (for reads; a recovery at shutdown ends at once). */
  async usable(): Promise<Db> {
    while (this.recovering) await this.recovering;
    return this.db;
  }

  async close(): Promise<void> {
    if (this.recovering) await this.recovering;
    if (this.unrecovered) await this.db.close().catch(noop);
    else await this.db.close();
  }
}
