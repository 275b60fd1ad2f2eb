// What the journal tests beyond journal.test.ts share: a journal in a fresh directory, records,
// and appends whose callbacks are collected.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../../src/core/logger.ts';
import type { RecordInput } from '../../src/core/record.ts';
import { Journal, type JournalOptions } from '../../src/journal/journal.ts';

const noop = (): void => {};

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string;
}

export function recordingLog(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: LogLine['level']) =>
    (obj: object, msg: string): void => {
      lines.push({ level, obj: obj as Record<string, unknown>, msg });
    };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export const quietLog: Logger = { debug: noop, info: noop, warn: noop, error: noop };

export function record(i: number, ts = 1_700_000_000_000 + i, payloadBytes = 16): RecordInput {
  return {
    ts,
    source: 'mqtt',
    device: `dev-${i % 10}`,
    topic: `t/${i}`,
    payload: Buffer.from(`p-${i}`.padEnd(payloadBytes, '.')),
  };
}

export interface Ack {
  err: Error | null;
  seq: number;
}

/** Appends all of `inputs` in one tick; resolves with every callback's outcome, in order. */
export function appendAll(journal: Journal, inputs: RecordInput[]): Promise<Ack[]> {
  return new Promise((resolve) => {
    const out: Ack[] = new Array(inputs.length);
    let left = inputs.length;
    if (left === 0) resolve(out);
    inputs.forEach((r, i) => {
      journal.append(
        r,
        (err, seq, idx: number) => {
          out[idx] = { err, seq };
          if (--left === 0) resolve(out);
        },
        i,
      );
    });
  });
}

/** A directory per test and the journals opened in it, closed and removed by `cleanup`. */
export class JournalKit {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeferry-journal-kit-'));
  readonly path = path.join(this.dir, 'journal');
  private readonly opened: Journal[] = [];

  options(over: Partial<JournalOptions> = {}): JournalOptions {
    return {
      path: this.path,
      maxBytes: 1024 * 1024 * 1024,
      onFull: 'reject',
      fsync: false,
      groupCommit: { maxRecords: 256, maxDelayMs: 0 },
      lockWaitMs: 0,
      ...over,
    };
  }

  async open(over: Partial<JournalOptions> = {}, log: Logger = quietLog): Promise<Journal> {
    const j = await Journal.open(this.options(over), log);
    this.opened.push(j);
    return j;
  }

  async cleanup(): Promise<void> {
    try {
      for (const j of this.opened.splice(0)) await j.close();
    } finally {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
