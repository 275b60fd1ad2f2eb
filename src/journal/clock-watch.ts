import type { Logger } from '../core/logger.ts';
import { CLOCK_JUMP_MS, type ClockShifts } from './clock-shifts.ts';
import { META_CLOCK_SHIFTS } from './keys.ts';
import type { Db, JournalCounters } from './state.ts';
import { noop } from './state.ts';

const CLOCK_CHECK_MS = 1000;

/** What the clock watch needs of the journal. */
export interface ClockHost {
  readonly counters: JournalCounters;
  readonly log: Logger;
  lastSeq(): number;
  records(): number;
  write<T>(op: (db: Db) => Promise<T>): Promise<T>;
  /** Runs a TTL sweep (every ttl / 10, between 50 ms and 1 s). */
  sweep(): void;
}

/**
 * The wall clock TTL ages records by, watched against the monotonic clock: a jump is
 * remembered for the records kept so far (clock-shifts.ts). Also runs the TTL sweeps.
 */
export class ClockWatch {
  readonly shifts: ClockShifts;
  readonly clock: { wall(): number; mono(): number };
  private readonly ttlMs: number | undefined;
  private readonly host: ClockHost;
  private clockTimer: NodeJS.Timeout | null = null;
  private ttlTimer: NodeJS.Timeout | null = null;
  private lastWall = 0;
  private lastMono = 0;

  constructor(
    shifts: ClockShifts,
    clock: { wall(): number; mono(): number } | undefined,
    ttlMs: number | undefined,
    host: ClockHost,
  ) {
    this.shifts = shifts;
    this.clock = clock ?? { wall: Date.now, mono: performance.now.bind(performance) };
    this.ttlMs = ttlMs;
    this.host = host;
  }

  start(): void {
    this.lastWall = this.clock.wall();
    this.lastMono = this.clock.mono();
    this.clockTimer = setInterval(this.check, CLOCK_CHECK_MS);
    this.clockTimer.unref();
    const ttl = this.ttlMs;
    if (!ttl) return;
    const every = Math.max(50, Math.min(ttl / 10, 1000));
    this.ttlTimer = setInterval(() => this.host.sweep(), every);
    this.ttlTimer.unref();
  }

  stop(): void {
    if (this.ttlTimer) clearInterval(this.ttlTimer);
    if (this.clockTimer) clearInterval(this.clockTimer);
  }

  /** See Journal.expiryCutoff. */
  expiryCutoff(now: number, seq?: number): number {
    if (!this.ttlMs) return 0;
    const cutoff = now - this.ttlMs;
    return seq === undefined || this.shifts.size === 0 ? cutoff : cutoff - this.shifts.offsetFor(seq);
  }

  /**
   * Compares the wall clock's progress with the monotonic clock's: a difference past
   * CLOCK_JUMP_MS is a jump (an NTP step, an operator's `date -s`), logged, counted and
   * remembered for the records kept so far (clock-shifts.ts).
   */
  readonly check = (): void => {
    const wall = this.clock.wall();
    const mono = this.clock.mono();
    const jump = wall - this.lastWall - (mono - this.lastMono);
    this.lastWall = wall;
    this.lastMono = mono;
    if (Math.abs(jump) < CLOCK_JUMP_MS) return;
    const host = this.host;
    host.counters.clockJumps++;
    host.log.warn(
      { jumpMs: Math.round(jump), lastSeq: host.lastSeq(), records: host.records() },
      'wall clock jumped: records kept so far are aged by the time they spent here',
    );
    if (host.records() === 0) return;
    this.shifts.add(host.lastSeq(), jump);
    this.save();
  };

  /** Forgets the jumps that only concern records below `firstSeq`, and saves the list if it changed. */
  prune(firstSeq: number): void {
    if (this.shifts.prune(firstSeq)) this.save();
  }

  save(): void {
    const value = this.shifts.encode();
    // Off the hot path and rare; a failure is a write failure like any other (recovery).
    this.host.write((db) => db.put(META_CLOCK_SHIFTS, value)).catch(noop);
  }
}
