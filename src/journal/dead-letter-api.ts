import { EventEmitter } from 'node:events';
import type { StoredRecord } from '../core/record.ts';
import type { DeadLetter, DeadLetterStore } from './dead-letters.ts';

/**
 * The journal's dead-letter methods, over the store of dead-letters.ts (their own key space and
 * budget, apart from the records' chunks). Journal extends this.
 */
export abstract class JournalDeadLetters extends EventEmitter {
  protected abstract readonly deadLetters: DeadLetterStore;

  /**
   * Keeps records a sink's upstream refused for good, with the reason, within the dead letters'
   * own budget. A failed write rejects with a retryable JournalWriteError (and the journal
   * recovers): the caller tries again.
   */
  deadLetter(sink: string, records: readonly StoredRecord[], reason: string): Promise<void> {
    return this.deadLetters.add(sink, records, reason);
  }

  /** Dead letters `sink` keeps now (not the number ever dead-lettered). */
  async deadLetterCount(sink: string): Promise<number> {
    return this.deadLetters.count(sink);
  }

  /** Per sink, from memory: dead letters kept and their bytes on disk. */
  deadLetterSummary(): { sink: string; count: number; bytes: number }[] {
    return this.deadLetters.summary();
  }

  get deadLetterBytes(): number {
    return this.deadLetters.bytes;
  }

  get deadLetterBudget(): number {
    return this.deadLetters.maxBytes;
  }

  /**
   * Dead letters of `sink` numbered above `afterN`, oldest first, at most `limit` (1..1000), and
   * with `maxBodyBytes` none after the one whose body reaches that many bytes in all.
   */
  listDeadLetters(sink: string, limit: number, afterN = 0, maxBodyBytes?: number): Promise<DeadLetter[]> {
    return this.deadLetters.list(sink, limit, afterN, maxBodyBytes);
  }

  /** Deletes the dead letters of `sink` numbered `ns`; returns how many existed and went. */
  deleteDeadLetters(sink: string, ns: readonly number[]): Promise<number> {
    return this.deadLetters.delete(sink, ns);
  }
}
