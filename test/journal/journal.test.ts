import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { JournalFullError } from '../../src/core/errors.ts';
import type { Logger } from '../../src/core/logger.ts';
import { decodeRecord, encodeRecord, type RecordInput, type StoredRecord } from '../../src/core/record.ts';
import { CHUNK_OVERHEAD_BYTES, ENTRY_HEADER_BYTES } from '../../src/journal/chunk.ts';
import { isDamaged, Journal, type JournalOptions, tableBytesFor } from '../../src/journal/journal.ts';
import { eventually } from '../helpers/daemon.ts';
import { mountTmpfs } from '../helpers/tmpfs.ts';
import { isCi } from '../interop/peer-tools.ts';
import { type Ack, appendAll } from './journal-kit.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const BASE_TS = 1_700_000_000_000;
const BIG = 1024 * 1024 * 1024;

const noop = (): void => {};
const quiet: Logger = { debug: noop, info: noop, warn: noop, error: noop };

interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  obj: object;
  msg: string;
}

function recordingLog(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: LogLine['level']) =>
    (obj: object, msg: string): void => {
      lines.push({ level, obj, msg });
    };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

const pad = (i: number): string => String(i).padStart(6, '0');

/** Record `i`: fixed-width fields, so every body has the same size. */
function rec(i: number, payloadBytes = 0, ts = BASE_TS + i): RecordInput {
  const text = `payload-${pad(i)}`;
  return {
    ts,
    source: 'mqtt',
    device: `dev-${i % 10}`,
    topic: `sensors/${pad(i)}`,
    payload: Buffer.from(payloadBytes > text.length ? text.padEnd(payloadBytes, '.') : text),
  };
}

/** What one record counts against the disk budget in its chunk: entry header and body. */
function recordSize(r: RecordInput): number {
  return encodeRecord(r).length + ENTRY_HEADER_BYTES;
}

/** What one group commit of `rs` (one chunk) counts: its records, its key and its header. */
function chunkSize(rs: RecordInput[]): number {
  return rs.reduce((n, r) => n + recordSize(r), CHUNK_OVERHEAD_BYTES);
}

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, k) => from + k);
const recs = (from: number, to: number, payloadBytes = 0): RecordInput[] =>
  range(from, to).map((i) => rec(i, payloadBytes));

/** Asserts `out` holds exactly the records of seqs [from, to], where seq s carries rec(s - 1 + shift). */
function expectRecords(
  out: StoredRecord[],
  from: number,
  to: number,
  indexOfSeq = (s: number) => s - 1,
): void {
  expect(out.map((r) => r.seq)).toEqual(range(from, to));
  for (const r of out) {
    const i = indexOfSeq(r.seq);
    const d = decodeRecord(r.body);
    expect(d.payload.toString()).toBe(`payload-${pad(i)}`);
    expect(d.topic).toBe(`sensors/${pad(i)}`);
    expect(d.ts).toBe(BASE_TS + i);
    expect(r.ts).toBe(BASE_TS + i);
  }
}

/** Reads everything retained, in chunks. */
/** The records of one `readBatch`. */
async function read(j: Journal, from: number, maxRecords: number, maxBytes: number): Promise<StoredRecord[]> {
  return (await j.readBatch(from, maxRecords, maxBytes)).records;
}

async function readAll(journal: Journal): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  for (let from = journal.firstRetainedSeq; from <= journal.lastCommittedSeq; ) {
    const chunk = await read(journal, from, 500, BIG);
    if (chunk.length === 0) break;
    out.push(...chunk);
    from = chunk[chunk.length - 1].seq + 1;
  }
  return out;
}

let tmp: string;
let journalPath: string;
/** A filesystem of its own at a journal's path, as a Kubernetes volume is (quarantine test). */
const journalMount = mountTmpfs('edgeferry-journal-mount-', '16m');
afterAll(() => journalMount.remove());
const opened: Journal[] = [];
const children: ChildProcessWithoutNullStreams[] = [];

function options(over: Partial<JournalOptions> = {}): JournalOptions {
  return {
    path: journalPath,
    maxBytes: BIG,
    onFull: 'reject',
    fsync: false,
    groupCommit: { maxRecords: 256, maxDelayMs: 2 },
    lockWaitMs: 0,
    ...over,
  };
}

async function open(over: Partial<JournalOptions> = {}, log: Logger = quiet): Promise<Journal> {
  const j = await Journal.open(options(over), log);
  opened.push(j);
  return j;
}

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeferry-journal-'));
  journalPath = path.join(tmp, 'journal');
});

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = once(c, 'exit');
      c.kill('SIGKILL');
      await gone;
    }
  }
  try {
    for (const j of opened.splice(0)) await j.close();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

// ---- child processes ---------------------------------------------------------------------

interface Child {
  proc: ChildProcessWithoutNullStreams;
  lines: string[];
  /** Resolves once `pred` holds for the lines so far. */
  until(pred: (lines: string[]) => boolean): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function runFixture(script: string, args: string[]): Child {
  const proc = spawn(process.execPath, [path.join(FIXTURES, script), ...args], { stdio: 'pipe' });
  children.push(proc);
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  const waiters: { pred: (l: string[]) => boolean; resolve: () => void }[] = [];
  const check = (): void => {
    for (let k = waiters.length - 1; k >= 0; k--) {
      if (waiters[k].pred(lines)) {
        waiters[k].resolve();
        waiters.splice(k, 1);
      }
    }
  };
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
    check();
  });
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const until = (pred: (l: string[]) => boolean): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (pred(lines)) return resolve();
      waiters.push({ pred, resolve });
      void exited.then(({ code, signal }) => {
        // Let the last stdout chunk land before deciding.
        setImmediate(() => {
          if (pred(lines)) resolve();
          else
            reject(
              new Error(
                `child exited (${code ?? signal}) first; stdout: ${lines.join('|')}; stderr: ${stderr}`,
              ),
            );
        });
      });
    });
  return { proc, lines, until, exited };
}

// ---- tests --------------------------------------------------------------------------------

describe('append and group commit', () => {
  it('assigns contiguous seqs from 1 in append order and keeps the content', async () => {
    const j = await open();
    expect(j.lastCommittedSeq).toBe(0);
    expect(j.firstRetainedSeq).toBe(1);
    expect(j.records).toBe(0);
    expect(j.bytes()).toBe(0);
    const a = await appendAll(j, recs(0, 39));
    const b = await appendAll(j, recs(40, 69));
    const c = await appendAll(j, recs(70, 99));
    expect([...a, ...b, ...c]).toEqual(range(1, 100).map((seq) => ({ err: null, seq })));
    expect(j.lastCommittedSeq).toBe(100);
    expect(j.firstRetainedSeq).toBe(1);
    expect(j.records).toBe(100);
    expect(j.counters.appended).toBe(100);
    // Three group commits, one chunk each.
    expect(j.counters.committedBatches).toBe(3);
    expect(j.bytes()).toBe(chunkSize(recs(0, 39)) + chunkSize(recs(40, 69)) + chunkSize(recs(70, 99)));
    expectRecords(await read(j, 1, 1000, BIG), 1, 100);
  });

  it('commits many appends made in one tick in a few batches', async () => {
    const j = await open({ groupCommit: { maxRecords: 100, maxDelayMs: 2 } });
    const acks = await appendAll(j, recs(0, 1999));
    expect(acks.every((a, k) => a.err === null && a.seq === k + 1)).toBe(true);
    expect(j.counters.appended).toBe(2000);
    expect(j.counters.committedBatches).toBeGreaterThanOrEqual(1);
    expect(j.counters.committedBatches).toBeLessThanOrEqual(20);
  });

  it('saturates above maxPendingBytes; appends made when it clears never share a seq', async () => {
    const j = await open({ maxPendingBytes: 4096, groupCommit: { maxRecords: 16, maxDelayMs: 0 } });
    const total = 1000;
    const acks: Ack[] = new Array(total);
    let next = 0;
    let wakeups = 0;
    let left = total;
    await new Promise<void>((resolve) => {
      const onAck = (err: Error | null, seq: number, i: number): void => {
        acks[i] = { err, seq };
        if (--left === 0) resolve();
      };
      // A source: appends until saturated, then waits to be resumed, like the MQTT broker.
      const produce = (): void => {
        while (next < total) {
          j.append(rec(next), onAck, next);
          next++;
          if (j.saturated) {
            j.whenUnsaturated(() => {
              wakeups++;
              produce();
            });
            return;
          }
        }
      };
      produce();
    });
    expect(wakeups).toBeGreaterThan(0);
    expect(acks.map((a) => a.err)).toEqual(new Array(total).fill(null));
    expect(acks.map((a) => a.seq)).toEqual(range(1, total));
    expect(j.lastCommittedSeq).toBe(total);
    expect(j.counters.appended).toBe(total);
    expectRecords(await readAll(j), 1, total);
  });

  it('waits for maxDelayMs and commits a tick of appends below maxRecords as one batch', async () => {
    const j = await open({ groupCommit: { maxRecords: 10_000, maxDelayMs: 5 } });
    const commits: number[] = [];
    j.on('commit', (last: number) => commits.push(last));
    await appendAll(j, recs(0, 499));
    expect(j.counters.committedBatches).toBe(1);
    expect(commits).toEqual([500]);
  });

  it('calls append callbacks only after the commit, with their seq and state', async () => {
    const j = await open({ groupCommit: { maxRecords: 64, maxDelayMs: 2 } });
    const states = range(0, 199).map((i) => ({ i }));
    const calls: {
      err: Error | null;
      seq: number;
      state: { i: number };
      lastAtCall: number;
      batchesAtCall: number;
    }[] = [];
    const reads: Promise<StoredRecord[]>[] = [];
    let pendingAcks = states.length;
    const done = new Promise<void>((resolve) => {
      for (const s of states) {
        j.append(
          rec(s.i),
          (err, seq, state) => {
            calls.push({
              err,
              seq,
              state,
              lastAtCall: j.lastCommittedSeq,
              batchesAtCall: j.counters.committedBatches,
            });
            // Acknowledged means committed: a read issued now must find it.
            reads.push(read(j, seq, 1, BIG));
            if (--pendingAcks === 0) resolve();
          },
          s,
        );
      }
    });
    expect(calls).toHaveLength(0);
    await done;
    expect(calls.map((c) => c.seq)).toEqual(range(1, 200));
    for (const c of calls) {
      expect(c.err).toBeNull();
      expect(c.state).toBe(states[c.seq - 1]);
      expect(c.lastAtCall).toBeGreaterThanOrEqual(c.seq);
      expect(c.batchesAtCall).toBeGreaterThanOrEqual(1);
    }
    const found = await Promise.all(reads);
    found.forEach((out, k) => {
      expectRecords(out, k + 1, k + 1);
    });
  });

  it('commits fire-and-forget appends (null callback) too', async () => {
    const j = await open();
    for (const r of recs(0, 9)) j.append(r, null, undefined);
    await j.sync();
    expect(j.lastCommittedSeq).toBe(10);
    expectRecords(await read(j, 1, 100, BIG), 1, 10);
  });

  it('sync() and close() commit what is pending without waiting for the group-commit timer', async () => {
    const hour = 3_600_000;
    let j = await open({ groupCommit: { maxRecords: 10_000, maxDelayMs: hour } });
    for (const r of recs(0, 4)) j.append(r, null, undefined);
    expect(j.lastCommittedSeq).toBe(0);
    await j.sync();
    expect(j.lastCommittedSeq).toBe(5);
    for (const r of recs(5, 9)) j.append(r, null, undefined);
    await j.close();
    j = await open({ groupCommit: { maxRecords: 10_000, maxDelayMs: hour } });
    expect(j.lastCommittedSeq).toBe(10);
  });

  it('fails appends after close with EF_JOURNAL_CLOSED', async () => {
    const j = await open();
    await appendAll(j, recs(0, 2));
    await j.close();
    const [ack] = await appendAll(j, [rec(3)]);
    expect(ack.err).not.toBeNull();
    expect((ack.err as Error & { code: string }).code).toBe('EF_JOURNAL_CLOSED');
    expect(ack.seq).toBe(0);
  });
});

describe('read', () => {
  /** At least one record; none beyond the one that reached `maxBytes`. */
  function expectByteLimit(out: StoredRecord[], maxBytes: number): void {
    expect(out.length).toBeGreaterThan(0);
    const beforeLast = out.slice(0, -1).reduce((n, r) => n + r.body.length, 0);
    expect(beforeLast).toBeLessThan(maxBytes);
  }

  it('serves recent records from the in-memory tail, honouring maxRecords and maxBytes', async () => {
    const j = await open();
    await appendAll(j, recs(0, 49));
    expectRecords(await read(j, 10, 5, BIG), 10, 14);
    expectRecords(await read(j, 0, 3, BIG), 1, 3);
    expectRecords(await read(j, 48, 100, BIG), 48, 50);
    expect(await read(j, 51, 100, BIG)).toEqual([]);

    const bodyLen = (await read(j, 1, 1, BIG))[0].body.length;
    const limited = await read(j, 1, 1000, bodyLen * 4 + 1);
    expectByteLimit(limited, bodyLen * 4 + 1);
    expect(limited.length).toBeLessThan(10);
    expectRecords(limited, 1, limited.length);
    expectRecords(await read(j, 7, 1000, 1), 7, 7);
    expect(await j.tsAt(20)).toBe(BASE_TS + 19);
    expect(await j.tsAt(51)).toBeUndefined();
  });

  it('reads from disk what the tail no longer holds, honouring maxRecords and maxBytes', async () => {
    const j = await open({ tailRecords: 4, groupCommit: { maxRecords: 8, maxDelayMs: 1 } });
    for (let i = 0; i < 60; i += 10) await appendAll(j, recs(i, i + 9));
    expect(j.lastCommittedSeq).toBe(60);
    const fromDisk = await read(j, 1, 20, BIG);
    expectRecords(fromDisk, 1, 20);
    // One allocation for the batch's bodies, not one per record (the journal's packBodies).
    expect(new Set(fromDisk.map((r) => r.body.buffer)).size).toBe(1);
    expectRecords(await read(j, 0, 1000, BIG), 1, 60);
    expectRecords(await read(j, 40, 1000, BIG), 40, 60);
    expectRecords(await read(j, 55, 3, BIG), 55, 57);

    const bodyLen = (await read(j, 60, 1, BIG))[0].body.length;
    const limited = await read(j, 2, 1000, bodyLen * 4 + 1);
    expectByteLimit(limited, bodyLen * 4 + 1);
    expect(limited.length).toBeLessThan(10);
    expectRecords(limited, 2, limited.length + 1);
    expectRecords(await read(j, 3, 1000, 1), 3, 3);
    expect(await j.tsAt(5)).toBe(BASE_TS + 4);
  });
});

describe('read: a reader walking a disk backlog', () => {
  /** Reads from `from` to the newest record the way a sink does, with limits that vary per read. */
  async function walk(j: Journal, from: number, bodyLen: number): Promise<StoredRecord[]> {
    const limits: [number, number][] = [
      [7, BIG],
      [50, bodyLen * 5 + 1],
      [1, BIG],
      [33, BIG],
      [1000, bodyLen * 12 + 1],
    ];
    const all: StoredRecord[] = [];
    for (let n = 0, next = from; next <= j.lastCommittedSeq; n++) {
      const [maxRecords, maxBytes] = limits[n % limits.length];
      const out = await read(j, next, maxRecords, maxBytes);
      expect(out.length).toBeGreaterThan(0);
      expect(out.length).toBeLessThanOrEqual(maxRecords);
      expect(out[0].seq).toBe(next);
      all.push(...out);
      next = out[out.length - 1].seq + 1;
    }
    return all;
  }

  it('gets every record once and in order while count and byte limits change between reads', async () => {
    const j = await open({ tailRecords: 4, groupCommit: { maxRecords: 64, maxDelayMs: 1 } });
    await appendAll(j, recs(0, 299));
    const bodyLen = (await read(j, 300, 1, BIG))[0].body.length;
    expectRecords(await walk(j, 1, bodyLen), 1, 300);
    // Two readers at other positions, interleaved, each continue where they were.
    const a = await read(j, 10, 20, BIG);
    const b = await read(j, 200, 20, BIG);
    expectRecords([...a, ...(await read(j, 30, 20, BIG))], 10, 49);
    expectRecords([...b, ...(await read(j, 220, 20, BIG))], 200, 239);
  });

  it('reads what was committed after its reader opened, and what a trim left', async () => {
    const j = await open({ tailRecords: 4, groupCommit: { maxRecords: 64, maxDelayMs: 1 } });
    await appendAll(j, recs(0, 49));
    const first = await read(j, 1, 20, BIG);
    await appendAll(j, recs(50, 149));
    // The reader's snapshot ends at 50; records 51.. come in later reads, none lost or repeated.
    const rest = await walk(j, 21, first[0].body.length);
    expectRecords([...first, ...rest], 1, 150);
    // A trim passes a reader's position: the next read starts at the oldest retained record.
    const mid = await read(j, 1, 10, BIG);
    expectRecords(mid, 1, 10);
    await j.openCursor('sink/x', 0);
    await j.commitCursor('sink/x', 60);
    await j.trim();
    expectRecords(await read(j, 11, 5, BIG), 61, 65);
  });

  it("a read that took the last record of its reader's snapshot still returns what was committed since", async () => {
    const j = await open({ tailRecords: 4, groupCommit: { maxRecords: 64, maxDelayMs: 1 } });
    await appendAll(j, recs(0, 49));
    // Exactly the 50 records the reader's snapshot holds: the iterator has not yet seen its end.
    expectRecords(await read(j, 1, 50, BIG), 1, 50);
    await appendAll(j, recs(50, 99));
    expectRecords(await read(j, 51, 50, BIG), 51, 100);
    await appendAll(j, recs(100, 109));
    const batch = await j.readBatch(101, 1000, BIG);
    expectRecords(batch.records, 101, 110);
    expect(batch.next).toBe(111);
    expect(await j.readBatch(111, 10, BIG)).toEqual({ records: [], next: 111 });
  });
});

describe('cursors', () => {
  it('opens a new cursor on a fresh journal at firstRetainedSeq - 1', async () => {
    const j = await open();
    expect(await j.openCursor('http')).toBe(0);
    expect(j.cursor('http')).toBe(0);
    expect(j.cursor('nope')).toBeUndefined();
    await appendAll(j, recs(0, 9));
    // Opening again returns the existing position.
    expect(await j.openCursor('http')).toBe(0);
    expect(await j.openCursor('grpc')).toBe(0);
    expect(j.cursorNames().sort()).toEqual(['grpc', 'http']);
  });

  it('persists commitCursor across close and reopen and never moves a cursor backwards', async () => {
    let j = await open();
    await appendAll(j, recs(0, 19));
    await j.openCursor('a');
    await j.openCursor('b');
    await j.commitCursor('a', 12);
    await j.commitCursor('a', 7);
    expect(j.cursor('a')).toBe(12);
    await j.commitCursor('b', 3);
    await j.close();

    j = await open();
    expect(j.cursor('a')).toBe(12);
    expect(j.cursor('b')).toBe(3);
    expect(j.cursorNames().sort()).toEqual(['a', 'b']);
    expect(await j.openCursor('a')).toBe(12);
    await j.commitCursor('a', 5);
    await j.close();

    j = await open();
    expect(j.cursor('a')).toBe(12);
  });

  it('opens a new cursor at an explicit initial position, clamped to [0, lastCommittedSeq]', async () => {
    const j = await open();
    await appendAll(j, recs(0, 19));
    expect(await j.openCursor('tail-only', 20)).toBe(20);
    expect(await j.openCursor('mid', 7)).toBe(7);
    expect(await j.openCursor('ahead', 500)).toBe(20);
    expect(await j.openCursor('negative', -5)).toBe(0);
    // An existing cursor keeps its position whatever `initial` says.
    expect(await j.openCursor('mid', 15)).toBe(7);
    await j.close();
    const again = await open();
    expect(again.cursor('tail-only')).toBe(20);
    expect(again.cursor('mid')).toBe(7);
    expect(again.cursor('ahead')).toBe(20);
    expect(again.cursor('negative')).toBe(0);
  });

  it('opens a new cursor before the oldest retained record after a trim', async () => {
    const j = await open();
    await appendAll(j, recs(0, 29));
    await j.openCursor('a');
    await j.commitCursor('a', 10);
    await j.trim();
    expect(j.firstRetainedSeq).toBe(11);
    expect(await j.openCursor('late')).toBe(10);
  });

  it('stops holding back trimming once removed, also after reopen', async () => {
    let j = await open();
    await appendAll(j, recs(0, 19));
    await j.openCursor('fast');
    await j.openCursor('slow');
    await j.commitCursor('fast', 15);
    await j.trim();
    expect(j.firstRetainedSeq).toBe(1);
    await j.removeCursor('slow');
    await j.trim();
    expect(j.firstRetainedSeq).toBe(16);
    await j.close();
    j = await open();
    expect(j.cursorNames()).toEqual(['fast']);
    expect(j.firstRetainedSeq).toBe(16);
  });
});

describe('trim', () => {
  it('deletes the records every cursor has passed', async () => {
    const j = await open({ tailRecords: 8 });
    const all = recs(0, 49);
    await appendAll(j, all);
    await j.openCursor('a');
    await j.openCursor('b');
    await j.commitCursor('a', 30);
    await j.commitCursor('b', 20);
    const before = j.bytes();
    await j.trim();
    expect(j.firstRetainedSeq).toBe(21);
    expect(j.lastCommittedSeq).toBe(50);
    expect(j.records).toBe(30);
    // One chunk, partly trimmed: its key and header count with its last record.
    expect(j.bytes()).toBe(chunkSize(all.slice(20)));
    expect(j.bytes()).toBeLessThan(before);
    expectRecords(await read(j, 1, 1000, BIG), 21, 50);
    expectRecords(await read(j, 15, 5, BIG), 21, 25);
    expect(await j.tsAt(20)).toBeUndefined();

    await j.commitCursor('b', 50);
    await j.trim();
    expect(j.firstRetainedSeq).toBe(31);
    expectRecords(await read(j, 1, 1000, BIG), 31, 50);

    await j.commitCursor('a', 50);
    await j.trim();
    expect(j.records).toBe(0);
    expect(j.bytes()).toBe(0);
    expect(j.firstRetainedSeq).toBe(51);
    expect(await read(j, 1, 1000, BIG)).toEqual([]);
  });

  it('trims by itself shortly after commitCursor', async () => {
    const j = await open();
    await appendAll(j, recs(0, 49));
    await j.openCursor('a');
    await j.commitCursor('a', 40);
    await vi.waitFor(
      () => {
        expect(j.firstRetainedSeq).toBe(41);
      },
      { timeout: 5000, interval: 20 },
    );
    expect(j.records).toBe(10);
    expectRecords(await read(j, 1, 1000, BIG), 41, 50);
  });

  it('trims nothing without cursors', async () => {
    const j = await open();
    await appendAll(j, recs(0, 19));
    const bytes = j.bytes();
    await j.trim();
    expect(j.firstRetainedSeq).toBe(1);
    expect(j.records).toBe(20);
    expect(j.bytes()).toBe(bytes);
    expectRecords(await read(j, 1, 100, BIG), 1, 20);
  });
});

describe('disk budget', () => {
  it('keeps LevelDB tables small: 1 MiB memtables, compaction tables sized by the disk budget', async () => {
    expect(tableBytesFor(64 * 1024 * 1024)).toBe(64 * 1024);
    expect(tableBytesFor(BIG)).toBe(256 * 1024);
    expect(tableBytesFor(100 * BIG)).toBe(2 * 1024 * 1024);
    expect(tableBytesFor(0)).toBe(64 * 1024);

    // 8 MB of incompressible records: 1 MiB memtables, each flushed as one table (the keys only
    // grow, so LevelDB moves each flush to a deeper level whole); its default 4 MiB memtables
    // would make two.
    const j = await open({ maxBytes: 64 * 1024 * 1024, groupCommit: { maxRecords: 500, maxDelayMs: 1 } });
    for (let i = 0; i < 8; i++) {
      const batch = Array.from({ length: 1000 }, (_, k) => ({
        ...rec(i * 1000 + k),
        payload: crypto.randomBytes(1000),
      }));
      await appendAll(j, batch);
    }
    const tables = () =>
      fs
        .readdirSync(j.path)
        .filter((n) => n.endsWith('.ldb'))
        .map((n) => fs.statSync(path.join(j.path, n)).size);
    await eventually(() => tables().length >= 6, 'memtables flushed');
    expect(Math.max(...tables())).toBeLessThan(1.5 * 1024 * 1024);
  });

  it("drops the oldest records with onFull 'drop-oldest'", async () => {
    const maxBytes = 20_000;
    const j = await open({ maxBytes, onFull: 'drop-oldest', groupCommit: { maxRecords: 10, maxDelayMs: 1 } });
    // Every group commit is one chunk of 10 records of the same size.
    const size = chunkSize(recs(0, 9, 200));
    expect(size).toBeGreaterThan(2000);
    const total = 300;
    for (let i = 0; i < total; i += 10) {
      const acks = await appendAll(j, recs(i, i + 9, 200));
      expect(acks.map((a) => a.err)).toEqual(new Array(10).fill(null));
      expect(j.bytes()).toBeLessThanOrEqual(maxBytes + size);
    }
    expect((total / 10) * size).toBeGreaterThan(2 * maxBytes);
    expect(j.lastCommittedSeq).toBe(total);
    expect(j.counters.droppedFull).toBeGreaterThan(0);
    expect(j.counters.rejected).toBe(0);
    // Nothing else trims here: every record below the first retained one was dropped for space.
    expect(j.counters.droppedFull).toBe(j.firstRetainedSeq - 1);
    expect(j.records).toBe(total - j.counters.droppedFull);
    // Whole chunks go: the oldest retained record starts one.
    expect(j.counters.droppedFull % 10).toBe(0);
    expect(j.bytes()).toBe((j.records / 10) * size);
    // Drops free what is needed plus a small chunk, not most of the journal.
    expect(j.bytes()).toBeGreaterThan(maxBytes / 2);

    const newest = await read(j, total - 9, 100, BIG);
    expect(newest.map((r) => r.seq)).toEqual(range(total - 9, total));
    for (const r of newest)
      expect(decodeRecord(r.body).payload.toString()).toBe(rec(r.seq - 1, 200).payload.toString());
    const retained = await readAll(j);
    expect(retained[0].seq).toBe(j.firstRetainedSeq);
    expect(retained).toHaveLength(j.records);
  });

  it("rejects what does not fit with onFull 'reject' and keeps what was committed", async () => {
    const maxBytes = 5000;
    const j = await open({ maxBytes, onFull: 'reject', groupCommit: { maxRecords: 10, maxDelayMs: 1 } });
    // Batches of 10, one chunk each: each chunk's key and header count as its records do.
    let room = maxBytes;
    let fit = 0;
    for (let b = 0; b < 4; b++) {
      room -= CHUNK_OVERHEAD_BYTES;
      for (let k = 0; k < 10 && room >= recordSize(rec(b * 10 + k, 200)); k++, fit++)
        room -= recordSize(rec(b * 10 + k, 200));
      if (fit < (b + 1) * 10) break;
    }
    expect(fit).toBeGreaterThan(10);
    expect(fit).toBeLessThan(20);
    const acks: Ack[] = [];
    for (let i = 0; i < 40; i += 10) acks.push(...(await appendAll(j, recs(i, i + 9, 200))));

    expect(acks.slice(0, fit)).toEqual(range(1, fit).map((seq) => ({ err: null, seq })));
    for (const a of acks.slice(fit)) {
      expect(a.err).toBeInstanceOf(JournalFullError);
      expect((a.err as JournalFullError).code).toBe('EF_JOURNAL_FULL');
      expect(a.seq).toBe(0);
    }
    expect(j.counters.rejected).toBe(40 - fit);
    expect(j.counters.appended).toBe(fit);
    expect(j.counters.droppedFull).toBe(0);
    expect(j.lastCommittedSeq).toBe(fit);
    expect(j.bytes()).toBeLessThanOrEqual(maxBytes);
    const kept = await read(j, 1, 1000, BIG);
    expect(kept.map((r) => r.seq)).toEqual(range(1, fit));
    for (const r of kept) expect(decodeRecord(r.body).payload.equals(rec(r.seq - 1, 200).payload)).toBe(true);

    // Room made by a cursor is usable again; rejected records consumed no seqs.
    await j.openCursor('a');
    await j.commitCursor('a', fit);
    await j.trim();
    const [again] = await appendAll(j, [rec(1000, 200)]);
    expect(again).toEqual({ err: null, seq: fit + 1 });
  });
});

describe('ttl', () => {
  it('drops records past their ttl once swept', async () => {
    const j = await open({ ttlMs: 300 });
    const now = Date.now();
    await appendAll(
      j,
      range(0, 19).map((i) => rec(i, 0, now + i)),
    );
    expect(j.records).toBe(20);
    await sleep(450);
    await j.sweepExpired();
    expect(j.counters.droppedTtl).toBe(20);
    expect(j.records).toBe(0);
    expect(j.bytes()).toBe(0);
    expect(j.lastCommittedSeq).toBe(20);
    expect(await read(j, 1, 100, BIG)).toEqual([]);
    expect(await j.tsAt(20)).toBeUndefined();
    const [next] = await appendAll(j, [rec(20, 0, Date.now())]);
    expect(next.seq).toBe(21);
  });

  it('drops only the expired prefix', async () => {
    const ttlMs = 60_000;
    const j = await open({ ttlMs, tailRecords: 4 });
    const now = Date.now();
    await appendAll(j, [
      ...range(0, 9).map((i) => rec(i, 0, now - 2 * ttlMs + i)),
      ...range(10, 19).map((i) => rec(i, 0, now + i)),
    ]);
    await j.sweepExpired();
    expect(j.counters.droppedTtl).toBe(10);
    expect(j.firstRetainedSeq).toBe(11);
    const kept = await read(j, 1, 100, BIG);
    expect(kept.map((r) => r.seq)).toEqual(range(11, 20));
    expect(await j.sweepExpired()).toBe(0);
    expect(j.records).toBe(10);
  });

  it('reports the expiry cutoff, and expires nothing without a ttl', async () => {
    const withTtl = await open({ ttlMs: 5000 });
    expect(withTtl.expiryCutoff(1_000_000)).toBe(995_000);
    const before = Date.now();
    const cutoff = withTtl.expiryCutoff();
    expect(cutoff).toBeGreaterThanOrEqual(before - 5000);
    expect(cutoff).toBeLessThanOrEqual(Date.now() - 5000);
    await withTtl.close();

    const j = await open();
    expect(j.expiryCutoff()).toBe(0);
    await appendAll(j, [rec(0, 0, 1)]);
    expect(await j.sweepExpired()).toBe(0);
    expect(j.records).toBe(1);
  });
});

describe('reopen', () => {
  it('continues the sequence after a clean close: same epoch, no gap, no reuse', async () => {
    let j = await open();
    const epoch = j.epoch;
    expect(epoch).toMatch(/^[0-9a-f]{12}$/);
    await appendAll(j, recs(0, 24));
    const bytes = j.bytes();
    await j.close();

    j = await open();
    expect(j.epoch).toBe(epoch);
    expect(j.lastCommittedSeq).toBe(25);
    expect(j.firstRetainedSeq).toBe(1);
    expect(j.records).toBe(25);
    expect(j.bytes()).toBe(bytes);
    const acks = await appendAll(j, recs(25, 29));
    expect(acks.map((a) => a.seq)).toEqual(range(26, 30));
    expectRecords(await readAll(j), 1, 30);
  });

  it('continues the sequence after everything was trimmed', async () => {
    let j = await open();
    await appendAll(j, recs(0, 9));
    await j.openCursor('a');
    await j.commitCursor('a', 10);
    await j.trim();
    expect(j.records).toBe(0);
    await j.close();

    j = await open();
    expect(j.lastCommittedSeq).toBe(10);
    expect(j.firstRetainedSeq).toBe(11);
    expect(j.records).toBe(0);
    expect(j.bytes()).toBe(0);
    expect(j.cursor('a')).toBe(10);
    const acks = await appendAll(j, recs(10, 12));
    expect(acks.map((a) => a.seq)).toEqual([11, 12, 13]);
    expect(j.bytes()).toBe(chunkSize(recs(10, 12)));
    expectRecords(await read(j, 0, 100, BIG), 11, 13);
  });

  // The dispatcher reads `cursor + 1` as soon as the daemon is back: the backlog must be there
  // before anything new is appended.
  it('serves the whole backlog right after reopen, before any new append', async () => {
    let j = await open();
    await appendAll(j, recs(0, 19));
    await j.close();
    j = await open();
    expect(j.lastCommittedSeq).toBe(20);
    expectRecords(await read(j, 1, 100, BIG), 1, 20);
    expect(await j.tsAt(1)).toBe(BASE_TS);
  });

  it('serves the records after a trim that follows a reopen', async () => {
    let j = await open();
    await appendAll(j, recs(0, 19));
    await j.openCursor('a');
    await j.close();
    j = await open();
    await j.commitCursor('a', 5);
    await j.trim();
    expect(j.firstRetainedSeq).toBe(6);
    expectRecords(await read(j, 6, 100, BIG), 6, 20);
  });

  it('keeps every cursor move whose promise resolved, in a process killed without closing', async () => {
    const child = runFixture('cursor-forever.ts', [journalPath]);
    await child.until((lines) => lines.filter((l) => l.length > 0).length >= 60);
    child.proc.kill('SIGKILL');
    await child.exited;
    const printed = child.lines.filter((l) => l.length > 0).map(Number);
    expect(printed).toEqual(range(1, printed.length));

    const j = await open({ lockWaitMs: 5000 });
    expect(j.cursor('c')).toBeGreaterThanOrEqual(printed.length);
  });

  it('keeps every acknowledged record of a process killed without closing', async () => {
    const child = runFixture('append-forever.ts', [journalPath]);
    const WANT = 400;
    await child.until((lines) => lines.length >= WANT);
    child.proc.kill('SIGKILL');
    const exit = await child.exited;
    expect(exit.signal).toBe('SIGKILL');

    const printed = child.lines
      .filter((l) => l.length > 0)
      .map((l) => {
        expect(l).toMatch(/^\d+ \d+$/);
        const [seq, index] = l.split(' ').map(Number);
        return { seq, index };
      });
    expect(printed.length).toBeGreaterThanOrEqual(WANT);
    const maxPrinted = Math.max(...printed.map((p) => p.seq));

    const j = await open({ lockWaitMs: 5000 });
    const last = j.lastCommittedSeq;
    expect(last).toBeGreaterThanOrEqual(maxPrinted);
    expect(j.firstRetainedSeq).toBe(1);
    expect(j.records).toBe(last);
    const [next] = await appendAll(j, [rec(999_999)]);
    expect(next).toEqual({ err: null, seq: last + 1 });

    const all = await readAll(j);
    expect(all.map((r) => r.seq)).toEqual(range(1, last + 1));
    for (const { seq, index } of printed) {
      // One writer appending in order to a fresh journal: seq n holds the record appended n-th.
      expect(seq).toBe(index + 1);
      const d = decodeRecord(all[seq - 1].body);
      expect(d.payload.toString()).toBe(`payload-${index}`);
      expect(d.topic).toBe(`crash/${index}`);
      expect(d.ts).toBe(BASE_TS + index);
      expect(all[seq - 1].ts).toBe(BASE_TS + index);
    }
  });
});

describe('dead letters', () => {
  it('keeps dead letters with reason and body, per sink, across reopen', async () => {
    let j = await open();
    await appendAll(j, recs(0, 4));
    const stored = await read(j, 1, 10, BIG);
    const t0 = Date.now();
    await j.deadLetter('http', stored.slice(0, 2), 'HTTP 400: schema violation');
    await j.deadLetter('http', [stored[3]], 'HTTP 422: ünprocessable');
    await j.deadLetter('http2', [stored[4]], 'other sink');
    await j.deadLetter('http', [], 'nothing');
    const t1 = Date.now();
    expect(j.counters.deadLettered).toBe(4);
    expect(await j.deadLetterCount('http')).toBe(3);
    expect(await j.deadLetterCount('http2')).toBe(1);
    expect(await j.deadLetterCount('none')).toBe(0);

    const list = await j.listDeadLetters('http', 100);
    expect(list.map((d) => ({ n: d.n, seq: d.seq, reason: d.reason }))).toEqual([
      { n: 1, seq: 1, reason: 'HTTP 400: schema violation' },
      { n: 2, seq: 2, reason: 'HTTP 400: schema violation' },
      { n: 3, seq: 4, reason: 'HTTP 422: ünprocessable' },
    ]);
    for (const d of list) {
      expect(d.body.equals(stored[d.seq - 1].body)).toBe(true);
      expect(decodeRecord(d.body).payload.toString()).toBe(`payload-${pad(d.seq - 1)}`);
      expect(d.at).toBeGreaterThanOrEqual(t0);
      expect(d.at).toBeLessThanOrEqual(t1);
    }
    expect((await j.listDeadLetters('http', 2)).map((d) => d.n)).toEqual([1, 2]);
    expect((await j.listDeadLetters('http2', 100)).map((d) => [d.n, d.seq, d.reason])).toEqual([
      [1, 5, 'other sink'],
    ]);
    expect(await j.listDeadLetters('none', 100)).toEqual([]);
    await j.close();

    j = await open();
    expect(await j.deadLetterCount('http')).toBe(3);
    expect(await j.deadLetterCount('http2')).toBe(1);
    expect((await j.listDeadLetters('http', 100)).map((d) => d.n)).toEqual([1, 2, 3]);
    await j.deadLetter('http', [stored[2]], 'later');
    expect(await j.deadLetterCount('http')).toBe(4);
    const after = await j.listDeadLetters('http', 100);
    expect(after.map((d) => [d.n, d.seq, d.reason])).toEqual([
      [1, 1, 'HTTP 400: schema violation'],
      [2, 2, 'HTTP 400: schema violation'],
      [3, 4, 'HTTP 422: ünprocessable'],
      [4, 3, 'later'],
    ]);
  });
});

describe('quarantine of an unopenable journal', () => {
  it.each([
    ['garbage in CURRENT', 'this is not a manifest name'],
    ['CURRENT naming a missing MANIFEST', 'MANIFEST-999999\n'],
  ])('moves it aside and starts a fresh one (%s)', async (_name, current) => {
    let j = await open();
    expect(j.counters.quarantined).toBe(0);
    await appendAll(j, recs(0, 9));
    const oldEpoch = j.epoch;
    await j.close();
    fs.writeFileSync(path.join(journalPath, 'CURRENT'), current);

    const log = recordingLog();
    j = await open({}, log);
    expect(j.counters.quarantined).toBe(1);
    expect(j.epoch).not.toBe(oldEpoch);
    expect(j.lastCommittedSeq).toBe(0);
    expect(j.records).toBe(0);

    // Inside the journal's directory, which may be a mount point (see the tmpfs test below).
    const aside = fs.readdirSync(journalPath).filter((n) => n.startsWith('corrupt-'));
    expect(aside).toHaveLength(1);
    const asidePath = path.join(journalPath, aside[0]);
    expect(fs.readFileSync(path.join(asidePath, 'CURRENT'), 'utf8')).toBe(current);
    const errors = log.lines.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0].obj).toMatchObject({ path: journalPath, movedTo: asidePath });

    const [ack] = await appendAll(j, [rec(0)]);
    expect(ack).toEqual({ err: null, seq: 1 });
    await j.close();
    j = await open();
    expect(j.counters.quarantined).toBe(0);
    expect(j.lastCommittedSeq).toBe(1);
    await j.close();

    // A second quarantine leaves the first where it is, beside its own.
    fs.writeFileSync(path.join(journalPath, 'CURRENT'), current);
    j = await open();
    expect(j.counters.quarantined).toBe(1);
    const both = fs.readdirSync(journalPath).filter((n) => n.startsWith('corrupt-'));
    expect(both).toHaveLength(2);
    expect(both).toContain(aside[0]);
    expect(fs.readdirSync(path.join(journalPath, aside[0]))).toContain('CURRENT');
    await j.close();
  });

  it.skipIf(!journalMount.mounted && !isCi())(
    `moves the contents when journal.path is a mount point${journalMount.mounted ? '' : ' (skipped: cannot mount a tmpfs here, needs root)'}`,
    async () => {
      // The usual Kubernetes layout: a volume mounted at journal.path. Renaming the directory
      // itself fails with EBUSY there, so the daemon crash-looped.
      expect(journalMount.mounted).toBe(true);
      const mountPath = journalMount.dir;
      let j = await open({ path: mountPath });
      await appendAll(j, recs(0, 4));
      await j.close();
      fs.writeFileSync(path.join(mountPath, 'CURRENT'), 'MANIFEST-999999\n');
      j = await open({ path: mountPath });
      expect(j.counters.quarantined).toBe(1);
      expect(j.records).toBe(0);
      const [ack] = await appendAll(j, [rec(0)]);
      expect(ack).toEqual({ err: null, seq: 1 });
      await j.close();
      const aside = fs.readdirSync(mountPath).filter((n) => n.startsWith('corrupt-'));
      expect(aside).toHaveLength(1);
      expect(fs.readdirSync(path.join(mountPath, aside[0]))).toContain('CURRENT');
    },
  );

  it('quarantines only on evidence of damage, not on any I/O error', () => {
    const io = (message: string) => ({ code: 'LEVEL_IO_ERROR', message });
    expect(isDamaged({ code: 'LEVEL_CORRUPTION', message: 'Corruption: bad block' })).toBe(true);
    expect(isDamaged(io('IO error: /data/journal/MANIFEST-000005: No such file or directory'))).toBe(true);
    expect(isDamaged(io('IO error: /data/journal/000012.ldb: No such file or directory'))).toBe(true);
    expect(isDamaged(io('Corruption: CURRENT file does not end with newline'))).toBe(true);
    // These say nothing about the files' contents: moving a backlog aside would hide it.
    expect(isDamaged(io('IO error: /data/journal/000012.ldb: Input/output error'))).toBe(false);
    expect(isDamaged(io('IO error: /data/journal/LOCK: Too many open files'))).toBe(false);
    expect(isDamaged(io('IO error: /data/journal/000003.log: No space left on device'))).toBe(false);
    expect(isDamaged(io('IO error: /data/journal/LOCK: Permission denied'))).toBe(false);
    expect(isDamaged(io('IO error: /data/journal/LOCK: Read-only file system'))).toBe(false);
    expect(isDamaged(io('IO error: /data/journal: No such file or directory'))).toBe(false);
    expect(isDamaged({ code: 'LEVEL_LOCKED', message: 'lock held' })).toBe(false);
    expect(isDamaged(undefined)).toBe(false);
  });
});

describe('lock wait', () => {
  it('fails after lockWaitMs while another process holds the journal', async () => {
    const holder = await open();
    await appendAll(holder, recs(0, 2));
    const child = runFixture('open-journal.ts', [journalPath, '500']);
    const exit = await child.exited;
    await child.until((l) => l.some((x) => x.startsWith('failed')));
    expect(exit.code).toBe(1);
    const failed = child.lines.find((x) => x.startsWith('failed'))!;
    expect(failed).toMatch(/locked/);
    expect(child.lines).toContain('waiting');
    expect(child.lines.some((x) => x.startsWith('opened'))).toBe(false);
    // The holder is unaffected.
    const [ack] = await appendAll(holder, [rec(3)]);
    expect(ack.seq).toBe(4);
  });

  it('opens once the holder closes within lockWaitMs', async () => {
    const holder = await open();
    await appendAll(holder, recs(0, 2));
    const child = runFixture('open-journal.ts', [journalPath, '5000']);
    await child.until((l) => l.includes('waiting'));
    await sleep(300);
    await holder.close();
    const exit = await child.exited;
    await child.until((l) => l.some((x) => x.startsWith('opened') || x.startsWith('failed')));
    expect(child.lines).toContain('opened 3');
    expect(exit.code).toBe(0);
  });
});
